"""The per-stage scorer shared by every metric of a stage, and the baselines later stages compare with.

``StageScorer`` holds one model at one stage and computes, at most once per (split, view, settings):

* greedy generations (``generations``; a stage's declared requests pooled by ``prefetch``) and
  sampled generations with ``num_return_sequences`` (``samples``): ``eval.decode.generate``;
* answer NLLs for the gold answer or any per-item answer list (paraphrased, perturbed answers):
  ``eval.ops.answer_nll`` / ``shared_prefix_nll``;
* per-token log-probs of texts or answers with the Min-K%++ moments of the same forward
  (``token_stats``), and from them every membership-inference score (``mia_scores``, ``mia_auc``);
* TOFU truth ratios (``truth_ratios``) from the paraphrased and perturbed answers' NLLs;
* multiple-choice letter log-likelihoods (``mcq_logprobs``);
* mean prompt hidden states of a layer (``activations``).

Metrics ask the scorer for what they need, so two metrics on the same split share one pass.
A metric that compares with another stage reads that stage's memoised values through
``scorer.baseline("oracle")`` / ``("target")``: a frozen ``StageScorer`` of that stage (the stage
itself when it is the one being evaluated, None when the run has no such stage). ``artifacts``
collects curves that the pipeline saves and plots; ``records`` the per-item judgements metrics report
(``record``), which ``eval.examples`` writes beside what the scorer memoised. An input attack's ``PromptView`` (``attack``)
changes the prompts of the splits it targets for every request of the stage.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from unlearn_cli.data.encoding import EncodedQA
from unlearn_cli.eval import stats
from unlearn_cli.eval.decode import DecodeSettings, Sampling, generate
from unlearn_cli.models.build import context_length
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.errors import UserError, check_local_path
from unlearn_cli.eval.ops import (TokenStats, answer_nll, fit_rows, grad_norms, mcq_logprobs, prompt_activations,
                                  shared_prefix_nll, token_stats)
from unlearn_cli.eval.views import PromptView

MIA_ATTACKS = ("loss", "zlib", "min_k", "min_k_pp", "gradnorm", "calibration")
MIA_DEFAULT = ("loss", "zlib", "min_k", "min_k_pp")  # the attacks a suite runs without further settings


@functools.lru_cache(maxsize=2)
def calibration_model(path: str, dtype, device_type: str):
    """The membership attack's calibration model (loaded once per run; safetensors, no remote code)."""
    from transformers import AutoModelForCausalLM
    check_local_path("mia calibration_model", path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    return model.to(device_type).eval()


def _sums_and_counts(per_token: List[TokenStats]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL, token count) per row from per-token log-probs."""
    sums = torch.tensor([-float(st.logp.sum()) for st in per_token], dtype=torch.float32)
    counts = torch.tensor([len(st.logp) for st in per_token], dtype=torch.float32)
    return sums, counts


class Baselines:
    """Frozen scorers of the stages later stages compare with: ``oracle`` (the retain-only model,
    evaluated first) and ``target`` (the model before unlearning)."""

    NAMES = ("oracle", "target")

    def __init__(self):
        self._stages: Dict[str, "StageScorer"] = {}

    def add(self, scorer: "StageScorer") -> None:
        """Keep ``scorer``'s memoised values (its model is released)."""
        if scorer.stage in self.NAMES:
            self._stages[scorer.stage] = scorer.freeze()

    def add_stored(self, stored) -> None:
        """An earlier run's stage read back from its per-example rows (``eval.stored.StoredStage``)."""
        self._stages[stored.stage] = stored

    def get(self, name: str):
        """The frozen scorer (or stored stage) ``name``; None when the run has none."""
        if name not in self.NAMES:
            raise ValueError(f"unknown baseline '{name}'; known: {', '.join(self.NAMES)}")
        return self._stages.get(name)


class StageScorer:
    """Memoised generations, answer NLLs, token statistics and MCQ scores of one model at one stage."""

    def __init__(self, model, inputs: EvalInputs, decode: DecodeSettings, autocast, stage: str,
                 baselines: Optional[Baselines] = None, attack: Optional[PromptView] = None):
        self.model = model
        self.inputs = inputs
        self.tokenizer = inputs.tokenizer
        self.items = inputs.qa
        self.mcq = inputs.mcq
        self.texts = inputs.texts
        self.decode = decode
        self.autocast = autocast
        self.stage = stage
        self.baselines = baselines or Baselines()
        self.attack = attack
        self.artifacts: Dict[str, object] = {}
        self.records: Dict[str, Dict[str, list]] = {}
        self.record_prefix = ""  # set by the suite: "<id>/" for a metric instance whose id is not its name
        self._memo: Dict[tuple, object] = {}
        self._frozen = False

    def _cached(self, key: tuple, build):
        if key not in self._memo:
            if self._frozen:
                raise RuntimeError(f"baseline stage '{self.stage}' did not compute {key}; a metric that reads a "
                                   f"baseline must compute the same quantity at that stage")
            self._memo[key] = build()
        return self._memo[key]

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def record(self, split: str, name: str, values) -> None:
        """Per-item values a metric computed on ``split`` (one per item, in item order) for ``examples/<stage>.jsonl``."""
        self.records.setdefault(split, {})[self.record_prefix + name] = list(values)

    # -- baselines ----------------------------------------------------------------------------------
    def baseline(self, name: str) -> Optional["StageScorer"]:
        """The memoised values of stage ``name`` (``oracle``, ``target``): this scorer at that stage,
        the run's frozen scorer of it otherwise, None when the run has none."""
        return self if name == self.stage else self.baselines.get(name)

    def freeze(self) -> "StageScorer":
        """Release the model; from now on only memoised values can be read."""
        self.model = None
        self._frozen = True
        return self

    # -- generation ---------------------------------------------------------------------------------
    def prompts(self, split: str, view: str = "question") -> List[List[int]]:
        """Prompt ids of QA split ``split`` under ``view`` at this stage (attacked where the stage's view applies)."""
        return self.inputs.prompts(split, view, self.attack)

    def prefetch(self, metrics) -> None:
        """Generate, in pooled batches, the greedy answers that ``metrics`` will ask for.

        Each metric lists its greedy requests as ``generation_requests() -> [(split, view,
        max_new_tokens or None)]``. Requests with the same ``max_new_tokens`` that are not yet
        memoised are pooled into ONE length-bucketed ``generate`` call, so the splits of a stage fill
        batches together instead of one partly filled batch (and one decoding loop) per split.
        Greedy decoding is per row, so pooling changes batch composition only, not the answers
        (up to float rounding of differently padded batches). Requests a metric does not declare
        are generated on first use."""
        pending: Dict[int, List[tuple]] = {}
        for metric in metrics:
            for split, view, mnt in metric.generation_requests():
                key = ("gen", split, view, mnt or self.decode.max_new_tokens)
                if key not in self._memo and key not in pending.setdefault(key[3], []):
                    pending[key[3]].append(key)
        for mnt, keys in pending.items():
            prompts = [self.prompts(split, view) for _, split, view, _ in keys]
            splits = "+".join(split for _, split, _, _ in keys)
            gens = generate(self.model, self.tokenizer, [p for ps in prompts for p in ps], mnt,
                            self.decode.batch_size, self.autocast, desc=f"eval {self.stage}:{splits}",
                            engine=self.decode.engine)
            start = 0
            for key, ps in zip(keys, prompts):
                self._memo[key] = [g[0] for g in gens[start:start + len(ps)]]
                start += len(ps)

    def generations(self, split: str, view: str = "question", max_new_tokens: Optional[int] = None) -> List[str]:
        """Greedy answers of QA split ``split`` (one per item)."""
        mnt = max_new_tokens or self.decode.max_new_tokens
        return self._cached(("gen", split, view, mnt), lambda: [g[0] for g in generate(
            self.model, self.tokenizer, self.prompts(split, view), mnt, self.decode.batch_size,
            self.autocast, desc=f"eval {self.stage}:{split}", engine=self.decode.engine)])

    def samples(self, split: str, sampling: Sampling, view: str = "question",
                max_new_tokens: Optional[int] = None, limit: Optional[int] = None) -> List[List[str]]:
        """``sampling.n`` sampled answers per item of QA split ``split`` (first ``limit`` items)."""
        mnt = max_new_tokens or self.decode.max_new_tokens
        return self._cached(("sample", split, view, mnt, sampling, limit), lambda: generate(
            self.model, self.tokenizer, self.prompts(split, view)[:limit], mnt, self.decode.batch_size,
            self.autocast, sampling=sampling, seed=self.decode.seed, engine=self.decode.engine,
            sampling_rng=self.decode.sampling_rng,
            desc=f"sample {self.stage}:{split} T={sampling.temperature} p={sampling.top_p}"))

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
            rows, per = self.inputs.answers(split, field, view, self.attack)
            prompts = rows.prompts[::per]
            if field == "perturbed" and all(p == prompts[i // per] for i, p in enumerate(rows.prompts)):
                # J answers per prompt: encode each prompt once
                answers = [rows.answers[i * per:(i + 1) * per] for i in range(len(prompts))]
                return shared_prefix_nll(self.model, prompts, answers, self.pad_id, self.decode.batch_size,
                                         self.autocast)
            sums, counts = answer_nll(self.model, rows, self.pad_id, self.decode.batch_size, self.autocast)
            # (a joint tokenisation may end one item's prompt differently before different answers)
            return (sums.view(-1, per), counts.view(-1, per)) if field == "perturbed" else (sums, counts)
        return self._cached(("nll", split, field, view), build)

    def mean_nll(self, split: str, field: str = "answer", view: str = "question") -> np.ndarray:
        """Length-normalised answer NLLs ``l_bar`` (float64 numpy)."""
        sums, counts = self.answer_nll(split, field, view)
        return (sums / counts.clamp_min(1)).double().numpy()

    def truth_ratios(self, split: str) -> np.ndarray:
        """Per-item TOFU truth ratio ``R = exp(l_base - mean_j l_pert_j)`` (``stats.truth_ratio``) with
        the paraphrased answer as base (the answer itself where the split has no paraphrase, RA/WF)."""
        def build():
            base = self.mean_nll(split, "paraphrased_answer")
            sums, counts = self.answer_nll(split, "perturbed")
            return stats.truth_ratio(base, (sums / counts.clamp_min(1)).double().numpy())
        return self._cached(("truth_ratio", split), build)

    def normalised_probs(self, split: str) -> np.ndarray:
        """Per-item TOFU normalised probability ``P(a) / (P(a) + sum_j P(a~_j))`` on length-normalised NLLs
        (``stats.normalised_prob``; real authors / world facts)."""
        def build():
            sums, counts = self.answer_nll(split, "perturbed")
            return stats.normalised_prob(self.mean_nll(split), (sums / counts.clamp_min(1)).double().numpy())
        return self._cached(("norm_prob", split), build)

    def token_stats(self, split: str) -> List[TokenStats]:
        """Per-token log-probs and Min-K%++ moments of a text split, or of a QA split's gold
        answers given the templated question (one forward serves every MIA attack and the
        split's answer NLLs)."""
        return self._cached(("tok", split), lambda: token_stats(
            self.model, self._scored(split)[0], self.pad_id, self.decode.batch_size, self.autocast))

    def _scored(self, split: str) -> Tuple[EncodedQA, List[str]]:
        """``EvalInputs.scored_texts`` cut to this model's context; a cut text split's texts are
        re-decoded so zlib sees exactly the scored tokens."""
        def build():
            rows, texts = self.inputs.scored_texts(split, self.attack)
            fitted = fit_rows(rows, context_length(self.model))
            if fitted is not rows and self.inputs.kind(split) == "text":
                texts = [self.tokenizer.decode(a) for a in fitted.answers]
            return fitted, texts
        return self._cached(("scored", split), build)

    def text_of(self, split: str) -> List[str]:
        """The text each scored row stands for (zlib attack)."""
        return self._scored(split)[1]

    def mia_scores(self, split: str, attack: str, k: float = 0.4, option=None) -> np.ndarray:
        """Per-row membership-inference score of ``split`` (high = non-member): ``loss``
        (``stats.loss_score``), ``zlib`` (``stats.zlib_score`` of the row's text), ``min_k`` and
        ``min_k_pp`` (lowest ``k`` fraction) -- all from the split's one ``token_stats`` pass --,
        ``gradnorm`` (``ops.grad_norms`` with ``option`` = p, one backward per row) and ``calibration``
        (this model's mean answer NLL minus that of the calibration model at path ``option``, the same
        rows: OpenUnlearning's reference-model attack)."""
        if attack not in MIA_ATTACKS:
            raise ValueError(f"unknown MIA attack '{attack}'; known: {', '.join(MIA_ATTACKS)}")

        def build():
            if attack == "gradnorm":
                return grad_norms(self.model, self._scored(split)[0], self.pad_id, self.autocast, float(option))
            per_token = self.token_stats(split)
            if attack == "loss":
                return np.array([stats.loss_score(s.logp) for s in per_token])
            if attack == "zlib":
                return np.array([stats.zlib_score(s.logp, t) for s, t in zip(per_token, self.text_of(split))])
            if attack == "min_k":
                return np.array([stats.min_k_score(s.logp, k) for s in per_token])
            if attack == "calibration":
                return np.array([stats.loss_score(s.logp) for s in per_token]) - self._calibration_losses(split, option)
            return np.array([stats.min_k_plus_plus_score(s.logp, s.mu, s.sigma, k) for s in per_token])
        return self._cached(("mia", split, attack, float(k), option), build)

    def _calibration_losses(self, split: str, path: str) -> np.ndarray:
        """The calibration model's mean answer NLL of every scored row of ``split`` (the same for every stage)."""
        rows = self._scored(split)[0]
        param = next(self.model.parameters())
        calib = calibration_model(str(path), param.dtype, param.device.type)
        if calib.get_input_embeddings().num_embeddings != self.model.get_input_embeddings().num_embeddings:
            raise UserError(f"mia calibration_model '{path}' has another vocabulary than the evaluated model")
        sums, counts = answer_nll(calib, rows, self.pad_id, self.decode.batch_size, self.autocast)
        return (sums / counts.clamp_min(1)).double().numpy()

    def mia_auc(self, members: str, nonmembers: str, attack: str, k: float = 0.4, option=None) -> float:
        """ROC-AUC of ``members`` (positives) vs ``nonmembers`` under ``attack`` (``stats.roc_auc``)."""
        return self._cached(("mia_auc", members, nonmembers, attack, float(k), option), lambda: stats.roc_auc(
            self.mia_scores(members, attack, k, option), self.mia_scores(nonmembers, attack, k, option)))

    def memorization(self, split: str, kind: str) -> np.ndarray:
        """Per-row ``exact_memorization`` or ``extraction_strength`` of ``split``'s gold answers
        (``stats``), from the teacher-forced greedy predictions of the ``token_stats`` pass."""
        score = {"exact_memorization": stats.exact_memorization, "extraction_strength": stats.extraction_strength}[kind]
        return self._cached((kind, split), lambda: np.array([score(s.top) for s in self.token_stats(split)]))

    def activations(self, split: str, layer: int = -1, view: str = "question") -> np.ndarray:
        """(N, hidden) mean hidden state of layer ``layer`` over each prompt of QA split ``split`` (trace detection's
        activation probe)."""
        return self._cached(("act", split, layer, view), lambda: prompt_activations(
            self.model, self.prompts(split, view), self.pad_id, self.decode.batch_size, self.autocast, layer))

    # -- multiple choice ----------------------------------------------------------------------------
    def mcq_texts(self, split: str, shots: int = 0) -> List[str]:
        """Prompt texts of multiple-choice split ``split`` at this stage (``EvalInputs.mcq_texts``)."""
        return self.inputs.mcq_texts(split, shots, self.attack)

    def mcq_logprobs(self, split: str, shots: int = 0) -> torch.Tensor:
        """(N, C) letter log-likelihoods of multiple-choice split ``split`` with ``shots``
        demonstrations per prompt; prompts longer than the context keep their last tokens."""
        def build():
            prompts, n = self.inputs.mcq_prompts(split, shots, self.attack)
            return mcq_logprobs(self.model, self.tokenizer, prompts, n, self.decode.batch_size, self.autocast,
                                desc=f"mcq {self.stage}:{split}")
        return self._cached(("mcq", split, shots), build)
