"""A run's evaluation splits and their memoised token ids, shared by every stage.

QA splits (``qa``), multiple-choice splits (``mcq``) and raw texts (``texts``) are encoded once
per run: prompt ids under a view (``eval.views``), prompt + answer rows for the gold, paraphrased
or perturbed answers, the rows scored for membership inference, multiple-choice prompts with
optional same-subject demonstrations. Every method takes the stage's input-attack ``PromptView``
(``attack``, None = the plain prompts); it changes only the splits it targets.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from unlearn_cli.data.encoding import EncodedQA, PromptFormat, bos_ids, encode_texts, render_mcq
from unlearn_cli.errors import UserError
from unlearn_cli.eval import views
from unlearn_cli.eval.views import PromptView


def fewshot_pool(split: str) -> str:
    """The multiple-choice split holding ``split``'s few-shot demonstrations (``mmlu`` -> ``mmlu_dev``)."""
    return f"{split}_dev"


def _key(attack: Optional[PromptView], split: str) -> Optional[str]:
    """The memo key part of an attack: its name where it changes ``split``'s prompts."""
    return attack.name if attack is not None and attack.applies_to(split) else None


class EvalInputs:
    """A run's evaluation splits and their memoised token ids (module docstring)."""

    def __init__(self, tokenizer, fmt: PromptFormat, qa: Dict[str, list], mcq: Optional[Dict[str, list]] = None,
                 texts: Optional[Dict[str, list]] = None, max_text_tokens: int = 512,
                 published: Optional[Dict[str, float]] = None):
        self.tokenizer = tokenizer
        self.published = dict(published or {})  # the benchmark's published constants (BenchmarkData.published)
        self.format = fmt  # the model's prompt layout (data.encoding.PromptFormat)
        self.qa = dict(qa)
        self.mcq = dict(mcq or {})
        self.texts = dict(texts or {})
        self.max_text_tokens = max_text_tokens
        self._memo: Dict[tuple, object] = {}

    def kind(self, split: str) -> Optional[str]:
        for kind, table in (("qa", self.qa), ("mcq", self.mcq), ("text", self.texts)):
            if split in table:
                return kind
        return None

    def known(self) -> List[str]:
        return sorted(set(self.qa) | set(self.mcq) | set(self.texts))

    def require(self, split: str, kind: str) -> None:
        if self.kind(split) != kind:
            names = {"qa": self.qa, "mcq": self.mcq, "text": self.texts}[kind]
            raise UserError(f"split '{split}' is not a {kind} split of this benchmark; "
                            f"{kind} splits: {', '.join(sorted(names)) or '(none)'}")

    def _cached(self, key: tuple, build):
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def token_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids of ``texts`` without special tokens."""
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def prompts(self, split: str, view: str = "question", attack: Optional[PromptView] = None) -> List[List[int]]:
        """Prompt ids of QA split ``split`` under ``view`` (``eval.views``)."""
        self.require(split, "qa")
        attack = attack if _key(attack, split) else None
        return self._cached(("prompts", split, view, _key(attack, split)),
                            lambda: views.render(self, self.qa[split], view, attack))

    def answers(self, split: str, field: str = "answer", view: str = "question",
                attack: Optional[PromptView] = None) -> Tuple[EncodedQA, int]:
        """(encoded prompt + answer rows, answers per item) for ``field``: ``answer``,
        ``paraphrased_answer`` (falls back to ``answer`` when an item has none) or ``perturbed``
        (all wrong answers, item-major, J per item)."""
        self.require(split, "qa")
        items = self.qa[split]

        def build():
            if field == "answer":
                texts, per = [it.answer for it in items], 1
            elif field == "paraphrased_answer":
                texts, per = [it.paraphrased_answer or it.answer for it in items], 1
            elif field == "perturbed":
                per = len(items[0].perturbed)
                if per == 0 or any(len(it.perturbed) != per for it in items):
                    raise UserError(f"split '{split}' has no (or unevenly many) perturbed answers")
                texts = [a for it in items for a in it.perturbed]
            else:
                raise UserError(f"unknown answer field '{field}'; known: answer, paraphrased_answer, perturbed")
            if views.parse(view)[0].templated and items[0].question:  # prompt + answer jointly, as trained
                attacked = attack if _key(attack, split) else None
                asked = views.questions(items, view, attacked)
                rows = self.format.encode(self.tokenizer, [asked[i // per] for i in range(len(texts))], texts)
                if attacked is not None:
                    rows = EncodedQA(attacked.token_rows(rows.prompts, bos_ids(self.tokenizer)), rows.answers)
                return rows, per
            prompts = self.prompts(split, view, attack)  # a raw prefix and its continuation, apart
            answer_ids = self.token_ids(texts)
            eos = [self.tokenizer.eos_token_id]
            rows = EncodedQA([list(prompts[i // per]) for i in range(len(texts))], [a + eos for a in answer_ids])
            return rows, per
        return self._cached(("answers", split, field, view, _key(attack, split)), build)

    def scored_texts(self, split: str, attack: Optional[PromptView] = None) -> Tuple[EncodedQA, List[str]]:
        """Rows whose supervised tokens are scored for membership inference, with the text each
        row stands for (zlib): a text split as ``<bos>`` + text (first ``max_text_tokens`` tokens),
        a QA split as its answer given the templated question (OpenUnlearning's TOFU MIA)."""
        def build():
            if self.kind(split) == "text":
                enc = encode_texts(self.tokenizer, self.texts[split])
                enc = EncodedQA(enc.prompts, [a[:self.max_text_tokens] for a in enc.answers])
                return enc, [self.tokenizer.decode(a) for a in enc.answers]
            if self.kind(split) == "qa":
                rows, _ = self.answers(split, attack=attack)
                return rows, [it.answer for it in self.qa[split]]
            raise UserError(f"split '{split}' is neither a text nor a QA split; known: {', '.join(self.known())}")
        return self._cached(("texts", split, _key(attack, split)), build)

    def mcq_texts(self, split: str, shots: int = 0, attack: Optional[PromptView] = None) -> List[str]:
        """Prompt texts of multiple-choice split ``split`` (``render_mcq``, the item's ``subject`` as
        header): zero-shot, or preceded by the first ``shots`` items of the same subject
        (``MCQItem.entity``) in the split's few-shot pool ``<split>_dev`` -- MMLU's five dev rows per
        subject, the classic 5-shot protocol. ``attack`` wraps the question, not the demonstrations."""
        self.require(split, "mcq")
        wrap = attack.question if _key(attack, split) else (lambda q: q)

        def build():
            demos = self._demonstrations(split, shots)
            return [render_mcq(wrap(it.question), it.choices, it.subject, demos(it)) for it in self.mcq[split]]
        return self._cached(("mcq_texts", split, shots, _key(attack, split)), build)

    def _demonstrations(self, split: str, shots: int):
        """``item -> [(question, choices, answer)]``: the item's few-shot demonstrations."""
        if shots == 0:
            return lambda item: ()
        pool = fewshot_pool(split)
        if pool not in self.mcq:
            raise UserError(f"mcq_acc.num_fewshot={shots}: split '{split}' has no few-shot pool '{pool}' "
                            f"(MMLU's is mmlu_dev); use num_fewshot 0 for it")
        by_subject: Dict[str, list] = {}
        for d in self.mcq[pool]:
            by_subject.setdefault(d.entity, []).append((d.question, d.choices, d.answer))

        def demos(item):
            found = by_subject.get(item.entity, [])
            if len(found) < shots:
                raise UserError(f"mcq_acc.num_fewshot={shots}: few-shot pool '{pool}' has {len(found)} items of "
                                f"subject '{item.entity}'; lower num_fewshot to at most {len(found)}")
            return found[:shots]
        return demos

    def mcq_prompts(self, split: str, shots: int = 0, attack: Optional[PromptView] = None) -> Tuple[List[List[int]], int]:
        """(prompt ids, number of choices) of multiple-choice split ``split`` (see ``mcq_texts``)."""
        self.require(split, "mcq")
        items = self.mcq[split]

        def build():
            n = len(items[0].choices)
            if any(len(it.choices) != n for it in items):
                raise UserError(f"split '{split}' mixes items with different numbers of choices")
            # the context as lm-evaluation-harness's HFLM encodes it: the tokenizer's own special tokens
            # (a <bos> where the tokenizer adds one by default, none where it does not)
            ids = self.tokenizer(list(self.mcq_texts(split, shots, attack)))["input_ids"]
            return (attack.token_rows(ids, bos_ids(self.tokenizer)) if _key(attack, split) else ids), n
        return self._cached(("mcq", split, shots, _key(attack, split)), build)
