"""Generator of the embedded fictional-facts benchmark.

Fictitious people, each with six attributes drawn from prefix-free pools, rendered as QA pairs
from templates. Everything is derived from one seeded ``random.Random`` over ordered lists, so
the same seed gives the same benchmark in every process (no ``set`` iteration, no hashing).

Per person and attribute there are three question templates: two are trained, the third is held
out as that person's *paraphrase* question (its wording is trained for other people). A fourth
*novel* wording is never trained. People are split into forget / retain / holdout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Tuple

from unlearn_cli.data.items import BenchmarkData, MCQItem, QAItem

SYLLABLES = [
    "mar", "ro", "vel", "dra", "ki", "lo", "sen", "tha", "qui", "bor", "el", "fen", "ly", "nor",
    "ash", "ten", "wyn", "cal", "dor", "mi", "ra", "zel", "bri", "ost", "pel", "un", "ga", "tor",
    "sa", "ve", "hul", "ember", "ix", "oda", "fa", "ren", "gul", "tis", "ya", "mo",
]
PLACE_SUFFIXES = ["ford", "wick", "mere", "haven", "gate", "stead", "holm", "thorpe", "bury", "moor"]
FIRM_SUFFIXES = ["Foundry", "Mills", "Press", "Shipping", "Textiles", "Brewery", "Instruments",
                 "Ceramics", "Ropeworks", "Cartage"]
PROFESSIONS = [
    "cartographer", "glassblower", "beekeeper", "locksmith", "astronomer", "violinist", "botanist",
    "tailor", "blacksmith", "archivist", "surveyor", "potter", "falconer", "clockmaker",
    "lighthouse keeper", "ferryman", "bookbinder", "cooper", "engraver", "chandler", "weaver",
    "stonemason", "apothecary", "shipwright", "saddler", "tanner", "miller", "fletcher",
    "perfumer", "harpist",
]
COLOURS = [
    "crimson", "teal", "amber", "indigo", "ochre", "magenta", "olive", "scarlet", "turquoise",
    "lavender", "maroon", "saffron", "cobalt", "ivory", "charcoal", "coral", "emerald", "mustard",
    "periwinkle", "vermilion",
]


@dataclass(frozen=True)
class Attribute:
    """One attribute: its question templates (3 rotating + 1 novel) and answer template."""

    key: str
    questions: Tuple[str, str, str]
    novel: str
    answer: str


ATTRIBUTES = [
    Attribute("city", ("Where was {n} born?", "In which city was {n} born?",
                       "What is the birthplace of {n}?"),
              "Which town is the place of birth of {n}?", "{n} was born in {v}."),
    Attribute("profession", ("What does {n} do for a living?", "What is the profession of {n}?",
                             "What is the occupation of {n}?"),
              "How does {n} earn a living?", "{n} works as {a} {v}."),
    Attribute("colour", ("What is the favourite colour of {n}?", "Which colour does {n} like best?",
                         "What colour does {n} prefer?"),
              "Name the colour that {n} loves most.", "The favourite colour of {n} is {v}."),
    Attribute("pet", ("What is the name of the pet of {n}?", "What is the pet of {n} called?",
                      "What name does the pet of {n} have?"),
              "How is the pet of {n} named?", "The pet of {n} is named {v}."),
    Attribute("year", ("When was {n} born?", "In what year was {n} born?",
                       "What is the birth year of {n}?"),
              "Which year saw the birth of {n}?", "{n} was born in the year {v}."),
    Attribute("employer", ("Where does {n} work?", "Which company employs {n}?",
                           "Who is the employer of {n}?"),
              "For which firm does {n} work?", "{n} is employed by {v}."),
]


def _prefix_free_add(pool: List[str], candidate: str) -> bool:
    low = candidate.lower()
    if any(low.startswith(p.lower()) or p.lower().startswith(low) for p in pool):
        return False
    pool.append(candidate)
    return True


def _word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(lo, hi))).capitalize()


def _generated_pool(rng: random.Random, size: int, make) -> List[str]:
    pool: List[str] = []
    while len(pool) < size:
        _prefix_free_add(pool, make())
    return pool


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def build_pools(rng: random.Random) -> Dict[str, List[str]]:
    """Value pools per attribute; every pool is prefix-free (no value starts another)."""
    for fixed in (PROFESSIONS, COLOURS):
        check: List[str] = []
        if not all(_prefix_free_add(check, v) for v in fixed):
            raise RuntimeError("built-in value pool is not prefix-free")
    return {
        "city": _generated_pool(rng, 40, lambda: _word(rng, 1, 2) + rng.choice(PLACE_SUFFIXES)),
        "profession": list(PROFESSIONS),
        "colour": list(COLOURS),
        "pet": _generated_pool(rng, 40, lambda: _word(rng, 2, 2)),
        "year": [str(y) for y in range(1900, 2000)],
        "employer": _generated_pool(rng, 30, lambda: f"{_word(rng, 2, 2)} {rng.choice(FIRM_SUFFIXES)}"),
    }


def _answer(attr: Attribute, name: str, value: str) -> str:
    return attr.answer.format(n=name, v=value, a=_article(value))


def _person_names(rng: random.Random, n: int) -> List[str]:
    names: List[str] = []
    seen_first: List[str] = []
    while len(names) < n:
        first = _word(rng, 2, 2)
        last = _word(rng, 2, 3)
        full = f"{first} {last}"
        # a name must not contain another as prefix, and first names stay distinct
        if first in seen_first or not _prefix_free_add(names, full):
            continue
        seen_first.append(first)
    return names


def generate(num_people: int = 100, forget_fraction: float = 0.1, holdout_fraction: float = 0.1,
             num_perturbed: int = 3, seed: int = 0) -> BenchmarkData:
    """Build the benchmark. Splits are by person: the first ``forget`` share of a seeded shuffle
    is forgotten, the last ``holdout`` share is never trained, the rest is retained."""
    rng = random.Random(seed)
    pools = build_pools(rng)
    names = _person_names(rng, num_people)
    people = []
    for name in names:
        people.append({"name": name, **{a.key: rng.choice(pools[a.key]) for a in ATTRIBUTES}})
    order = list(range(num_people))
    rng.shuffle(order)
    n_forget = max(1, round(forget_fraction * num_people))
    n_holdout = max(1, round(holdout_fraction * num_people))
    if n_forget + n_holdout >= num_people:
        raise ValueError("forget + holdout fractions leave no retain people")
    roles = {}
    for rank, idx in enumerate(order):
        roles[idx] = "forget" if rank < n_forget else ("holdout" if rank >= num_people - n_holdout else "retain")

    qa: Dict[str, List[QAItem]] = {k: [] for k in (
        "forget", "retain", "holdout", "forget_paraphrase", "retain_paraphrase", "forget_novel", "retain_novel")}
    mcq: Dict[str, List[MCQItem]] = {"forget_mcq": [], "retain_mcq": [], "holdout_mcq": []}
    bios: Dict[str, List[str]] = {"forget_bios": [], "retain_bios": [], "holdout_bios": []}
    corpus: List[str] = []
    for idx, person in enumerate(people):
        role, name = roles[idx], person["name"]
        sentences = []
        for a_idx, attr in enumerate(ATTRIBUTES):
            value = person[attr.key]
            answer = _answer(attr, name, value)
            sentences.append(answer)
            wrong = [v for v in pools[attr.key] if v != value]
            perturbed = tuple(_answer(attr, name, v) for v in rng.sample(wrong, num_perturbed))
            held_out = (idx + a_idx) % 3
            for t_idx, template in enumerate(attr.questions):
                item = QAItem(template.format(n=name), answer, value, name, perturbed)
                corpus.append(item.question)
                if role == "holdout":
                    if t_idx != held_out:
                        qa["holdout"].append(item)
                elif t_idx == held_out:
                    qa[f"{role}_paraphrase"].append(item)
                else:
                    qa[role].append(item)
            novel = QAItem(attr.novel.format(n=name), answer, value, name, perturbed)
            corpus.append(novel.question)
            if role != "holdout":
                qa[f"{role}_novel"].append(novel)
            choices = [value] + rng.sample(wrong, 3)
            rng.shuffle(choices)
            mcq[f"{role}_mcq"].append(MCQItem(attr.questions[0].format(n=name), tuple(choices),
                                              choices.index(value), name))
            corpus.extend(perturbed)
        bio = " ".join(sentences)
        bios[f"{role}_bios"].append(bio)
        corpus.append(bio)
    return BenchmarkData(
        name="fictional",
        train={"forget": qa["forget"], "retain": qa["retain"]},
        qa=qa, mcq=mcq, texts=bios, corpus=corpus,
    )
