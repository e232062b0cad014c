"""Scoring core shared by every metric of a stage.

``EvalInputs`` holds a run's evaluation splits (QA, multiple-choice, raw text) and memoises their
token ids, so every stage reuses one encoding. ``StageScorer`` holds one model at one stage and
computes, at most once per (split, view, settings) key:

* greedy generations (``generations``) and sampled generations with ``num_return_sequences``
  (``samples``): length-bucketed, left-padded batches, KV cache (``model.generate``);
* answer NLLs for the gold answer or any per-item answer list (paraphrased, perturbed answers):
  one forward per right-padded batch (``answer_nll`` / ``mean_nll``);
* per-token log-probs of texts or answers, optionally with the per-position mean / std of
  ``log p`` over the vocabulary (Min-K%++), computed in the same forward (``token_stats``);
* multiple-choice letter log-likelihoods (``mcq_logprobs``): one forward per batch when every
  letter continuation is a single token (the next-token log-softmax at ``"Answer:"``), otherwise
  one scored sequence per choice.

Metrics ask the scorer for what they need, so two metrics on the same split share one pass.
``exports`` collects per-stage values other stages need (the oracle's truth ratios and MIA AUC),
``reference`` holds the oracle's exports for the current stage, ``artifacts`` collects curves
that the pipeline saves and plots.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from unlearn_cli import progress
from unlearn_cli.data.encoding import (IGNORE, EncodedQA, MCQ_LETTERS, encode_qa, encode_texts, left_pad, render_icl,
                                       render_mcq)
from unlearn_cli.errors import UserError
from unlearn_cli.losses import sequence_nll
from unlearn_cli.eval.stats import logp_moments

log = logging.getLogger("unlearn_cli")


@dataclass
class DecodeSettings:
    """Decoding settings shared by every generation metric (``eval.decode``).

    Greedy metrics use ``max_new_tokens``; sampling metrics (leak@k) use ``temperature``,
    ``top_p``, ``top_k`` (0 = off) unless they sweep their own grid, seeded by ``seed``.
    ``batch_size`` counts sequences per forward/generate call (prompts x samples).
    ``max_text_tokens`` truncates raw texts scored for membership inference."""

    max_new_tokens: int = 24
    batch_size: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    max_text_tokens: int = 512

    def __post_init__(self):
        for key in ("max_new_tokens", "batch_size", "max_text_tokens"):
            if int(getattr(self, key)) < 1:
                raise UserError(f"eval.decode.{key} must be >= 1, got {getattr(self, key)}")
        check_sampling(self.temperature, self.top_p, self.top_k, "eval.decode")


def check_sampling(temperature: float, top_p: float, top_k: int, where: str) -> None:
    """One-line errors for an invalid sampling policy."""
    if not temperature > 0:
        raise UserError(f"{where}.temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise UserError(f"{where}.top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise UserError(f"{where}.top_k must be >= 0 (0 = off), got {top_k}")


@dataclass(frozen=True)
class Sampling:
    """A sampling policy: ``n`` samples per prompt at ``temperature`` / ``top_p`` / ``top_k``."""

    n: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0


def context_length(model) -> Optional[int]:
    """The model's maximum sequence length (``max_position_embeddings``), if it declares one."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


_WARNED: set = set()


def fit_prompts(prompts: Sequence[Sequence[int]], context: Optional[int], max_new_tokens: int,
                what: str) -> Sequence[Sequence[int]]:
    """Prompts whose length plus ``max_new_tokens`` exceeds ``context`` keep their LAST tokens (the
    continuation depends on the end of the prefix; positions past the context are untrained), with
    one warning naming how many were cut."""
    if not context:
        return prompts
    room = context - max_new_tokens
    if room < 1:
        raise UserError(f"{what}: {max_new_tokens} continuation tokens (max_new_tokens) leave no room for a "
                        f"prompt in the model's {context}-token context; lower max_new_tokens")
    cut = sum(len(p) > room for p in prompts)
    if not cut:
        return prompts
    what = what.split(":")[-1]  # "eval target:forget" -> "forget": one warning per split and run
    if (what, cut, room) not in _WARNED:
        _WARNED.add((what, cut, room))
        log.warning("%s: %d of %d prompts exceed the %d tokens left in the model's %d-token context after %d "
                    "continuation tokens; keeping their last %d tokens", what, cut, len(prompts), room, context,
                    max_new_tokens, room)
    return [list(p[-room:]) if len(p) > room else p for p in prompts]


def fit_rows(rows: EncodedQA, context: Optional[int]) -> EncodedQA:
    """Scored rows cut to the model's context: each answer keeps its first tokens (the prompt part
    is a ``<bos>`` or a short question)."""
    if not context or all(len(p) + len(a) <= context for p, a in zip(rows.prompts, rows.answers)):
        return rows
    return EncodedQA(rows.prompts, [a[:max(1, context - len(p))] for p, a in zip(rows.prompts, rows.answers)])


def _length_buckets(lengths: Sequence[int], batch_size: int) -> List[List[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding (as ``generate`` computes them)."""
    return (mask.cumsum(-1) - 1).clamp_min(0)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed torch's RNG for the block without disturbing the caller's RNG state."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int, batch_size: int,
             autocast, sampling: Optional[Sampling] = None, seed: int = 0,
             desc: str = "generate") -> List[List[str]]:
    """Continuations of ``prompts`` (decoded, special tokens stripped), one list per prompt:
    one greedy string, or ``sampling.n`` samples drawn with ``num_return_sequences``. Prompts are
    length-bucketed and left-padded; ``batch_size`` bounds prompts x samples per call."""
    dev = _device(model)
    n = sampling.n if sampling else 1
    prompts = fit_prompts(prompts, context_length(model), max_new_tokens, desc)
    out: List[List[str]] = [[] for _ in prompts]
    per_call = max(1, batch_size // n)
    kwargs = dict(do_sample=False)
    if sampling:
        kwargs = dict(do_sample=True, num_return_sequences=n, temperature=sampling.temperature,
                      top_p=sampling.top_p, top_k=sampling.top_k)
    rng = _seeded(seed, dev) if sampling else contextlib.nullcontext()
    with rng, progress.bar(desc, len(prompts)) as advance:
        for idx in _length_buckets([len(p) for p in prompts], per_call):
            batch = left_pad([prompts[i] for i in idx], tokenizer.pad_token_id)
            with autocast():
                gen = model.generate(input_ids=batch["input_ids"].to(dev),
                                     attention_mask=batch["attention_mask"].to(dev),
                                     max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id, **kwargs)
            texts = tokenizer.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for row, i in enumerate(idx):
                out[i] = [t.strip() for t in texts[row * n:(row + 1) * n]]
            advance(len(idx))
    return out


def generate_greedy(model, tokenizer, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
                    autocast, desc: str = "generate") -> List[str]:
    """Greedy continuations, in the order of ``prompts``."""
    return [g[0] for g in generate(model, tokenizer, prompts, settings.max_new_tokens, settings.batch_size,
                                   autocast, desc=desc)]


@torch.no_grad()
def answer_nll(model, encoded: EncodedQA, pad_id: int, batch_size: int, autocast):
    """(summed answer NLL, answer token count) per example, as float tensors on CPU."""
    dev = _device(model)
    sums, counts = torch.zeros(len(encoded)), torch.zeros(len(encoded))
    for idx in _length_buckets([len(p) + len(a) for p, a in zip(encoded.prompts, encoded.answers)], batch_size):
        batch = encoded.batch(idx, pad_id)
        with autocast():
            logits = model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev)).logits
        s, c = sequence_nll(logits, batch["labels"].to(dev))
        sums[idx] = s.float().cpu()
        counts[idx] = c.float().cpu()
    return sums, counts


@torch.no_grad()
def shared_prefix_nll(model, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[Sequence[int]]],
                      pad_id: int, batch_size: int, autocast) -> Tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL, token count), each (N, M), of M answers per prompt (TOFU's perturbed answers),
    encoding each prompt ONCE: a left-padded prompt forward fills the KV cache, the cache is
    repeated M times and one forward scores all M right-padded continuations against it. Equal to
    scoring every ``prompt + answer`` row on its own (``answer_nll``) up to float rounding, with the
    prompt's compute divided by M. ``batch_size`` bounds continuation rows per forward."""
    dev = _device(model)
    n, m = len(prompts), len(answers[0]) if answers else 0
    sums, counts = torch.zeros(n, m), torch.zeros(n, m)
    per_call = max(1, batch_size // max(m, 1))
    lengths = [len(p) + max(len(a) for a in answers[i]) for i, p in enumerate(prompts)]
    for idx in _length_buckets(lengths, per_call):
        batch = left_pad([prompts[i] for i in idx], pad_id)
        prompt_mask = batch["attention_mask"].to(dev)
        with autocast():
            out = model(input_ids=batch["input_ids"].to(dev), attention_mask=prompt_mask,
                        position_ids=_positions(prompt_mask), use_cache=True)
        last = out.logits[:, -1:].repeat_interleave(m, dim=0)  # predicts each continuation's first token
        cache = out.past_key_values
        cache.batch_repeat_interleave(m)
        rows = [list(a) for i in idx for a in answers[i]]
        cont = EncodedQA([[] for _ in rows], rows).batch(range(len(rows)), pad_id)  # right-padded, all supervised
        ids, mask = cont["input_ids"].to(dev), cont["attention_mask"].to(dev)
        start = prompt_mask.sum(-1).repeat_interleave(m).unsqueeze(-1)
        with autocast():
            logits = model(input_ids=ids, attention_mask=torch.cat([prompt_mask.repeat_interleave(m, dim=0), mask], -1),
                           position_ids=start + torch.arange(ids.shape[1], device=dev), past_key_values=cache,
                           use_cache=False).logits
        # position 0 = the prompt's last logits; sequence_nll's shift then pairs logits t with token t
        labels = torch.cat([torch.full((len(rows), 1), IGNORE), cont["labels"]], 1).to(dev)
        s, c = sequence_nll(torch.cat([last, logits], 1), labels)
        sums[idx] = s.float().view(len(idx), m).cpu()
        counts[idx] = c.float().view(len(idx), m).cpu()
    return sums, counts


@dataclass
class TokenStats:
    """Per supervised token of one sequence: ``logp`` = log p(x_t | x_<t); ``mu`` / ``sigma`` =
    mean / std of log p(v) under the next-token distribution at that position (Min-K%++)."""

    logp: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


@torch.no_grad()
def token_stats(model, encoded: EncodedQA, pad_id: int, batch_size: int, autocast,
                min_var: float = 1e-6, chunk_tokens: int = 4096) -> List[TokenStats]:
    """Per-token log-probs of every row's answer tokens with their Min-K%++ moments, one forward
    per right-padded batch. The log-softmax and moments are taken in float32 over the supervised
    positions only, ``chunk_tokens`` positions at a time (bounded memory at large vocabularies)."""
    dev = _device(model)
    out: List[Optional[TokenStats]] = [None] * len(encoded)
    for idx in _length_buckets([len(p) + len(a) for p, a in zip(encoded.prompts, encoded.answers)], batch_size):
        batch = encoded.batch(idx, pad_id)
        with autocast():
            logits = model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev)).logits
        labels = batch["labels"][:, 1:].to(dev)
        mask = labels != -100
        picked = logits[:, :-1][mask]  # (supervised tokens, vocab)
        targets = labels[mask]
        del logits
        parts = []
        for start in range(0, picked.shape[0], chunk_tokens):
            logp_all = torch.log_softmax(picked[start:start + chunk_tokens].float(), dim=-1)
            lp = logp_all.gather(-1, targets[start:start + chunk_tokens].unsqueeze(-1)).squeeze(-1)
            parts.append((lp, *logp_moments(logp_all, min_var)))
        lp, mu, sigma = (torch.cat(t).double().cpu().numpy() for t in zip(*parts)) if parts else \
            (np.zeros(0),) * 3
        start = 0
        for row, (i, count) in enumerate(zip(idx, mask.sum(-1).tolist())):
            sl = slice(start, start + count)
            out[i] = TokenStats(lp[sl], mu[sl], sigma[sl])
            start += count
    return out


@torch.no_grad()
def mcq_logprobs(model, tokenizer, prompts: Sequence[Sequence[int]], num_choices: int, batch_size: int,
                 autocast, fast_path: bool = True, desc: str = "mcq") -> torch.Tensor:
    """(N, C) log-likelihoods of the continuations ``" A"``, ``" B"``, ... after each prompt.

    Single-token letters (the usual case): one left-padded forward per batch, the letters read off
    the next-token log-softmax at the prompt's last position. Otherwise each (prompt, letter) pair
    is scored as a sequence (``answer_nll``), C rows per prompt (also when ``fast_path`` is off).
    Prompts longer than the model's context keep their last tokens (as lm-evaluation-harness
    truncates: context + letter fit the context)."""
    letters = tokenizer([" " + c for c in MCQ_LETTERS[:num_choices]], add_special_tokens=False)["input_ids"]
    dev = _device(model)
    out = torch.zeros(len(prompts), num_choices)
    fast = fast_path and all(len(ids) == 1 for ids in letters)
    prompts = fit_prompts(prompts, context_length(model), 0 if fast else max(len(ids) for ids in letters), desc)
    if fast:
        letter_ids = torch.tensor([ids[0] for ids in letters], device=dev)
        for idx in _length_buckets([len(p) for p in prompts], batch_size):
            batch = left_pad([prompts[i] for i in idx], tokenizer.pad_token_id)
            mask = batch["attention_mask"].to(dev)
            with autocast():
                logits = model(input_ids=batch["input_ids"].to(dev), attention_mask=mask,
                               position_ids=_positions(mask)).logits
            logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
            out[idx] = logp[:, letter_ids].cpu()
        return out
    pairs = EncodedQA([list(p) for p in prompts for _ in range(num_choices)],
                      [list(letters[c]) for _ in prompts for c in range(num_choices)])
    sums, _ = answer_nll(model, pairs, tokenizer.pad_token_id, batch_size, autocast)
    return (-sums).view(len(prompts), num_choices)


# ---------------------------------------------------------------------------------------------
# Evaluation inputs (per run) and the per-stage scorer

MCQ_SUBJECTS = {"wmdp_bio": "biology", "wmdp_chem": "chemistry", "wmdp_cyber": "cybersecurity"}


def mcq_subject(split: str, entity: str) -> Optional[str]:
    """The header subject of the lm-evaluation-harness template: WMDP splits by name, MMLU items by
    their subject (``entity``, underscores as spaces); none for other benchmarks."""
    from unlearn_cli.data.benchmarks.mmlu import SUBJECTS
    if split in MCQ_SUBJECTS:
        return MCQ_SUBJECTS[split]
    if entity in SUBJECTS:
        return entity.replace("_", " ")
    return None


class EvalInputs:
    """A run's evaluation splits and their memoised token ids (shared by every stage).

    QA splits: ``qa``; multiple-choice: ``mcq``; raw texts: ``texts``. Views of a QA split:
    ``question`` (templated prompt), ``paraphrased_question``, ``raw`` (``<bos>`` + question, no
    template: MUSE VerbMem prefixes) and ``icl:<split>`` (MUSE KnowMem few-shot prompt built from
    the demonstrations in QA split ``<split>``)."""

    def __init__(self, tokenizer, template: str, qa: Dict[str, list], mcq: Optional[Dict[str, list]] = None,
                 texts: Optional[Dict[str, list]] = None, max_text_tokens: int = 512):
        self.tokenizer = tokenizer
        self.template = template
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

    @property
    def _bos(self) -> List[int]:
        bos = self.tokenizer.bos_token_id
        return [bos] if bos is not None else []

    def _ids(self, texts: Sequence[str]) -> List[List[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def prompts(self, split: str, view: str = "question") -> List[List[int]]:
        """Prompt ids of QA split ``split`` under ``view`` (see the class docstring)."""
        self.require(split, "qa")
        items = self.qa[split]

        def build():
            if view == "question":
                return encode_qa(self.tokenizer, items, self.template).prompts if items[0].question else \
                    [list(self._bos) for _ in items]
            if view == "paraphrased_question":
                return encode_qa(self.tokenizer, [_with_question(it, it.paraphrased_question or it.question)
                                                  for it in items], self.template).prompts
            if view == "raw":
                return [self._bos + ids for ids in self._ids([it.question for it in items])]
            if view.startswith("icl:"):
                demo_split = view[4:]
                self.require(demo_split, "qa")
                demos = [(d.question, d.answer) for d in self.qa[demo_split]]
                return [self._bos + ids for ids in self._ids([render_icl(demos, it.question) for it in items])]
            raise UserError(f"unknown prompt view '{view}'; known: question, paraphrased_question, raw, icl:<split>")
        return self._cached(("prompts", split, view), build)

    def answers(self, split: str, field: str = "answer", view: str = "question") -> Tuple[EncodedQA, int]:
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
            prompts = self.prompts(split, view)
            answer_ids = self._ids([" " + t for t in texts])
            eos = [self.tokenizer.eos_token_id]
            rows = EncodedQA([list(prompts[i // per]) for i in range(len(texts))], [a + eos for a in answer_ids])
            return rows, per
        return self._cached(("answers", split, field, view), build)

    def scored_texts(self, split: str) -> Tuple[EncodedQA, List[str]]:
        """Rows whose supervised tokens are scored for membership inference, with the text each
        row stands for (zlib): a text split as ``<bos>`` + text (first ``max_text_tokens`` tokens),
        a QA split as its answer given the templated question (OpenUnlearning's TOFU MIA)."""
        def build():
            if self.kind(split) == "text":
                enc = encode_texts(self.tokenizer, self.texts[split], chunk=None, add_eos=False)
                enc = EncodedQA(enc.prompts, [a[:self.max_text_tokens] for a in enc.answers])
                return enc, [self.tokenizer.decode(a) for a in enc.answers]
            if self.kind(split) == "qa":
                rows, _ = self.answers(split)
                return rows, [it.answer for it in self.qa[split]]
            raise UserError(f"split '{split}' is neither a text nor a QA split; known: {', '.join(self.known())}")
        return self._cached(("texts", split), build)

    def mcq_texts(self, split: str, shots: int = 0) -> List[str]:
        """Prompt texts of multiple-choice split ``split`` (``render_mcq``): zero-shot, or preceded
        by the first ``shots`` items of the same subject (``MCQItem.entity``) in the split's few-shot
        pool ``<split>_dev`` -- MMLU's five dev rows per subject, the classic 5-shot protocol."""
        self.require(split, "mcq")

        def build():
            demos = self._demonstrations(split, shots)
            return [render_mcq(it.question, it.choices, mcq_subject(split, it.entity), demos(it))
                    for it in self.mcq[split]]
        return self._cached(("mcq_texts", split, shots), build)

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

    def mcq_prompts(self, split: str, shots: int = 0) -> Tuple[List[List[int]], int]:
        """(prompt ids, number of choices) of multiple-choice split ``split`` (see ``mcq_texts``)."""
        self.require(split, "mcq")
        items = self.mcq[split]

        def build():
            n = len(items[0].choices)
            if any(len(it.choices) != n for it in items):
                raise UserError(f"split '{split}' mixes items with different numbers of choices")
            return [self._bos + ids for ids in self._ids(self.mcq_texts(split, shots))], n
        return self._cached(("mcq", split, shots), build)


def fewshot_pool(split: str) -> str:
    """The multiple-choice split holding ``split``'s few-shot demonstrations (``mmlu`` -> ``mmlu_dev``)."""
    return f"{split}_dev"


def _with_question(item, question: str):
    from dataclasses import replace
    return replace(item, question=question)


def _sums_and_counts(stats: List[TokenStats]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL, token count) per row from per-token log-probs."""
    sums = torch.tensor([-float(st.logp.sum()) for st in stats], dtype=torch.float32)
    counts = torch.tensor([len(st.logp) for st in stats], dtype=torch.float32)
    return sums, counts


class StageScorer:
    """Memoised generations, answer NLLs, token statistics and MCQ scores of one model at one stage."""

    def __init__(self, model, inputs: EvalInputs, decode: DecodeSettings, autocast, stage: str,
                 reference: Optional[dict] = None):
        self.model = model
        self.inputs = inputs
        self.tokenizer = inputs.tokenizer
        self.items = inputs.qa
        self.mcq = inputs.mcq
        self.texts = inputs.texts
        self.decode = decode
        self.autocast = autocast
        self.stage = stage
        self.reference = dict(reference or {})
        self.exports: Dict[str, object] = {}
        self.artifacts: Dict[str, object] = {}
        self._memo: Dict[tuple, object] = {}

    def _cached(self, key: tuple, build):
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    # -- generation -------------------------------------------------------------------------------
    def prefetch(self, metrics) -> None:
        """Generate, in pooled batches, the greedy answers that ``metrics`` will ask for.

        Each metric may list its greedy requests as ``generation_requests() -> [(split, view,
        max_new_tokens or None)]``. Requests with the same ``max_new_tokens`` that are not yet
        memoised are pooled into ONE length-bucketed ``generate`` call, so the splits of a stage fill
        batches together instead of one partly filled batch (and one decoding loop) per split.
        Greedy decoding is per row, so pooling changes batch composition only, not the answers
        (up to float rounding of differently padded batches). Requests a metric does not declare
        are generated on first use, as before."""
        pending: Dict[int, List[tuple]] = {}
        for metric in metrics:
            for split, view, mnt in getattr(metric, "generation_requests", lambda: [])():
                key = ("gen", split, view, mnt or self.decode.max_new_tokens)
                if key not in self._memo and key not in pending.setdefault(key[3], []):
                    pending[key[3]].append(key)
        for mnt, keys in pending.items():
            prompts = [self.inputs.prompts(split, view) for _, split, view, _ in keys]
            splits = "+".join(split for _, split, _, _ in keys)
            gens = generate(self.model, self.tokenizer, [p for ps in prompts for p in ps], mnt,
                            self.decode.batch_size, self.autocast, desc=f"eval {self.stage}:{splits}")
            start = 0
            for key, ps in zip(keys, prompts):
                self._memo[key] = [g[0] for g in gens[start:start + len(ps)]]
                start += len(ps)

    def generations(self, split: str, view: str = "question", max_new_tokens: Optional[int] = None) -> List[str]:
        """Greedy answers of QA split ``split`` (one per item)."""
        mnt = max_new_tokens or self.decode.max_new_tokens
        return self._cached(("gen", split, view, mnt), lambda: [g[0] for g in generate(
            self.model, self.tokenizer, self.inputs.prompts(split, view), mnt, self.decode.batch_size,
            self.autocast, desc=f"eval {self.stage}:{split}")])

    def samples(self, split: str, sampling: Sampling, view: str = "question",
                max_new_tokens: Optional[int] = None, limit: Optional[int] = None) -> List[List[str]]:
        """``sampling.n`` sampled answers per item of QA split ``split`` (first ``limit`` items)."""
        mnt = max_new_tokens or self.decode.max_new_tokens
        prompts = self.inputs.prompts(split, view)[:limit]
        return self._cached(("sample", split, view, mnt, sampling, limit), lambda: generate(
            self.model, self.tokenizer, prompts, mnt, self.decode.batch_size, self.autocast, sampling=sampling,
            seed=self.decode.seed, desc=f"sample {self.stage}:{split} T={sampling.temperature} p={sampling.top_p}"))

    # -- likelihoods --------------------------------------------------------------------------------
    def answer_nll(self, split: str, field: str = "answer", view: str = "question"):
        """(summed NLL, token count) per answer row: shape (N,) for single answers, (N, J) for
        ``field='perturbed'``. The gold answers under the templated question are the rows that
        membership inference scores, so they come from the same forward as ``token_stats``; a
        ``paraphrased_answer`` request on a split without paraphrases is the gold-answer one."""
        if field == "paraphrased_answer" and not any(it.paraphrased_answer for it in self.items[split]):
            field = "answer"
        if field == "answer" and view == "question":
            return self._cached(("nll", split, field, view), lambda: _sums_and_counts(self.token_stats(split)))

        def build():
            rows, per = self.inputs.answers(split, field, view)
            if field == "perturbed":  # J answers per prompt: encode each prompt once
                prompts = rows.prompts[::per]
                answers = [rows.answers[i * per:(i + 1) * per] for i in range(len(prompts))]
                return shared_prefix_nll(self.model, prompts, answers, self.pad_id, self.decode.batch_size,
                                         self.autocast)
            return answer_nll(self.model, rows, self.pad_id, self.decode.batch_size, self.autocast)
        return self._cached(("nll", split, field, view), build)

    def mean_nll(self, split: str, field: str = "answer", view: str = "question") -> np.ndarray:
        """Length-normalised answer NLLs ``l_bar`` (float64 numpy)."""
        sums, counts = self.answer_nll(split, field, view)
        return (sums / counts.clamp_min(1)).double().numpy()

    def token_stats(self, split: str) -> List[TokenStats]:
        """Per-token log-probs and Min-K%++ moments of a text split, or of a QA split's gold
        answers given the templated question (one forward serves every MIA attack and the
        split's answer NLLs)."""
        rows, _ = self._scored(split)
        return self._cached(("tok", split), lambda: token_stats(
            self.model, rows, self.pad_id, self.decode.batch_size, self.autocast))

    def _scored(self, split: str) -> Tuple[EncodedQA, List[str]]:
        """``EvalInputs.scored_texts`` cut to this model's context; a cut text split's texts are
        re-decoded so zlib sees exactly the scored tokens."""
        def build():
            rows, texts = self.inputs.scored_texts(split)
            fitted = fit_rows(rows, context_length(self.model))
            if fitted is not rows and self.inputs.kind(split) == "text":
                texts = [self.tokenizer.decode(a) for a in fitted.answers]
            return fitted, texts
        return self._cached(("scored", split), build)

    def text_of(self, split: str) -> List[str]:
        """The text each scored row stands for (zlib attack)."""
        return self._scored(split)[1]

    def zlib_lengths(self, split: str) -> np.ndarray:
        return self._cached(("zlib", split), lambda: np.array(
            [len(zlib.compress(t.encode("utf-8"))) for t in self.text_of(split)], dtype=np.float64))

    def mcq_logprobs(self, split: str, shots: int = 0) -> torch.Tensor:
        """(N, C) letter log-likelihoods of multiple-choice split ``split`` with ``shots``
        demonstrations per prompt; prompts longer than the context keep their last tokens."""
        def build():
            prompts, n = self.inputs.mcq_prompts(split, shots)
            return mcq_logprobs(self.model, self.tokenizer, prompts, n, self.decode.batch_size, self.autocast,
                                desc=f"mcq {self.stage}:{split}")
        return self._cached(("mcq", split, shots), build)
