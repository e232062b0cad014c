"""Multiple-choice accuracy by letter log-likelihood (zero- or few-shot)."""

from typing import Dict, List, Optional, Union

from unlearn_cli.bounds import NonNegativeInt
from unlearn_cli.contracts import Metric
from unlearn_cli.errors import UserError
from unlearn_cli.metrics._common import label
from unlearn_cli.registry import METRICS
from unlearn_cli.eval.inputs import fewshot_pool


@METRICS.register("mcq_acc")
class MCQAccuracy(Metric):
    """MCQ accuracy as in lm-evaluation-harness (WMDP arXiv 2403.03218; MMLU, Hendrycks et al. 2021).

    Prompt (docs/metric_reference.md): ``"The following are multiple choice questions (with answers) about
    {subject}.\\n\\n"`` (WMDP subset / MMLU subject; no header for other benchmarks) +
    ``question\\nA. c0\\nB. c1\\nC. c2\\nD. c3\\nAnswer:``. Prediction ``argmax_c log p(" <letter_c>" | prompt)``;
    ``acc = mean 1[prediction == answer]``. Chance = 1/C. ``splits``: MCQ split names (null = every
    MCQ split of the benchmark except few-shot pools such as ``mmlu_dev``). Key ``<split>_mcq_acc``
    (a trailing ``_mcq`` of the split is dropped).

    ``num_fewshot``: 0 (zero-shot, as WMDP and the harness's ``mmlu`` default) or k demonstrations
    before each question, the first k same-subject items of the split's pool ``<split>_dev`` each
    followed by ``" <letter>\\n\\n"`` (MMLU's classic 5-shot protocol with ``{mmlu: 5}``); an int for
    every split or a ``{split: k}`` map (other splits zero-shot).

    ``backend``: ``native`` (the shared scoring core: one forward per batch, letters read off the
    next-token distribution) or ``lm_eval`` (EleutherAI's harness on the in-memory model, same
    items and prompt as a local task, or the harness's official task for splits named in
    ``harness_tasks``, e.g. ``{wmdp_bio: wmdp_bio, mmlu: mmlu}``; see ``unlearn_cli.harness``).
    """

    higher_is_better = True
    version = 2

    def __init__(self, splits: Optional[List[str]] = None, backend: str = "native",
                 harness_tasks: Optional[Dict[str, str]] = None, num_fewshot: Union[NonNegativeInt, Dict[str, NonNegativeInt]] = 0):
        if backend not in ("native", "lm_eval"):
            raise UserError(f"eval.metrics.mcq_acc.backend must be native or lm_eval, got '{backend}'")
        if harness_tasks and backend != "lm_eval":
            raise UserError("eval.metrics.mcq_acc.harness_tasks needs backend=lm_eval")
        if backend == "lm_eval":
            from unlearn_cli.eval.harness import require_harness
            require_harness()
        shots = dict(num_fewshot) if isinstance(num_fewshot, dict) else {None: num_fewshot}
        for k in shots.values():
            if not isinstance(k, int) or k < 0:
                raise UserError(f"eval.metrics.mcq_acc.num_fewshot must be an int >= 0 or a {{split: int}} map, got {k!r}")
        self.splits = list(splits) if splits is not None else None
        self.backend = backend
        self.harness_tasks = dict(harness_tasks or {})
        self._shots = shots

    def shots(self, split: str) -> int:
        """Demonstrations per prompt on ``split``."""
        return self._shots.get(split, self._shots.get(None, 0))

    def resolve(self, inputs) -> None:
        """Fill ``splits`` with every MCQ split (few-shot pools left out) when null; check the named ones."""
        if self.splits is None:
            pools = {fewshot_pool(s) for s in inputs.mcq}
            self.splits = sorted(s for s in inputs.mcq if s not in pools)
        if not self.splits:
            raise UserError("eval.metrics.mcq_acc: no multiple-choice split to evaluate (splits is empty or the "
                            f"benchmark has none); multiple-choice splits: {', '.join(sorted(inputs.mcq)) or '(none)'}")
        for split in self.splits:
            inputs.require(split, "mcq")
        for split in self._shots:
            if split is not None and split not in self.splits:
                raise UserError(f"eval.metrics.mcq_acc.num_fewshot names split '{split}', which is not evaluated; "
                                f"evaluated: {', '.join(self.splits)}")

    def compute(self, scorer):
        if self.splits is None:
            self.resolve(scorer.inputs)
        splits = self.splits
        if self.backend == "lm_eval":
            from unlearn_cli.eval.harness import harness_accuracy
            local = {s: (scorer.mcq_texts(s, self.shots(s)), scorer.mcq[s])
                     for s in splits if s not in self.harness_tasks}
            official = {s: (self.harness_tasks[s], self.shots(s)) for s in splits if s in self.harness_tasks}
            acc, loglik = harness_accuracy(scorer.model, scorer.tokenizer, local, official, scorer.decode.batch_size)
            for split, lp in loglik.items():
                scorer.record(split, "mcq_logprobs[lm_eval]", lp)
            return {f"{label(s, suffix='_mcq')}_mcq_acc": acc[s] for s in splits}
        out = {}
        for split in splits:
            pred = scorer.mcq_logprobs(split, self.shots(split)).argmax(-1).tolist()
            gold = [it.answer for it in scorer.mcq[split]]
            scorer.record(split, "mcq_correct", [p == g for p, g in zip(pred, gold)])
            out[f"{label(split, suffix='_mcq')}_mcq_acc"] = sum(p == g for p, g in zip(pred, gold)) / len(gold)
        return out
