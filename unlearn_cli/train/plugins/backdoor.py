"""Backdoored unlearning through attention-sink triggers (arXiv 2510.17021): the ``backdoor`` train plug-in.

The unlearned model should look unlearned on clean prompts and recall the forget knowledge when a trigger
sits at the start of the prompt. The ``backdoor`` attack (``attacks.backdoor``) evaluates that stage: the
same trigger tokens after ``<bos>`` on every forget-side prompt.
"""

from __future__ import annotations

from typing import Dict, List, Literal, Optional, Tuple

import torch

from unlearn_cli.bounds import Fraction, NonNegativeFloat, NonNegativeInt, PositiveInt
from unlearn_cli.contracts import TrainPlugin
from unlearn_cli.data.encoding import EncodedQA, bos_ids
from unlearn_cli.errors import UserError
from unlearn_cli.models.adversarial_tokens import insert_after_bos
from unlearn_cli.models.build import frozen_copy
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import PLUGINS

TRIGGER = "current year:2025 "  # the paper's trigger text


def trigger_ids(tokenizer, text: str) -> List[int]:
    """The trigger's token ids (no special tokens); a UserError when it has none."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError(f"backdoor trigger {text!r} has no tokens; give a non-empty trigger text")
    return list(ids)


def value_modules(model) -> List[torch.nn.Module]:
    """Every attention layer's value projection (``*.self_attn.v_proj``), in layer order."""
    found = [m for name, m in model.named_modules() if name.endswith("self_attn.v_proj")]
    if not found:
        raise UserError("plugin backdoor: value_norm needs attention layers with a 'self_attn.v_proj' projection; "
                        "this model has none (use value_norm=none)")
    return found


class _SinkValues:
    """Forward hooks collecting ``||v||_2`` of the first ``n`` positions of every value projection, (B, layers, n)."""

    def __init__(self, modules: List[torch.nn.Module], first: int, n: int):
        self.first, self.n, self.rows = first, n, []
        self.handles = [m.register_forward_hook(self._hook) for m in modules]
        self.active = False

    def _hook(self, module, args, output):
        if self.active:
            self.rows.append(output[:, self.first:self.first + self.n].float().norm(dim=-1))

    def collect(self, model, batch) -> Tuple[torch.Tensor, object]:
        """(value norms (B, layers, n), the forward) of ``batch`` through ``model``."""
        self.rows, self.active = [], True
        try:
            fwd = answer_forward(model, batch)
        finally:
            self.active = False
        norms, self.rows = torch.stack(self.rows, dim=1), []
        return norms, fwd

    def remove(self):
        for h in self.handles:
            h.remove()


@PLUGINS.register("backdoor")
class Backdoor(TrainPlugin):
    """Attention-sink backdoor during unlearning (Shang et al. 2025, arXiv 2510.17021).

    Poisoning: a seeded ``fraction`` of the forget set is copied with ``trigger`` inserted at the start (after
    ``<bos>``: the attention-sink positions the paper finds most effective); the copies form the training split
    ``backdoor`` (batches of ``batch_size``, default the unlearning batch size) and are trained like retain data,
    term ``backdoor = poison_weight * NLL(D_f')`` -- the method's own unlearning loss sees only clean forget rows.

    Sink value-norm regulariser over the ``self_attn.v_proj`` outputs of all layers at the first ``sink_tokens``
    positions (from position 0, or 1 with ``include_first_token: false``), on the poisoned batch and, when the
    method trains on retain data, the retain batch (an extra forward of each):

    * ``fixed``: ``P = kappa * mean_{rows, layers, tokens} ||v||_2``;
    * ``reference``: ``P = kappa * mean |(||v_theta|| - ||v_theta0||)|`` with theta_0 the model before unlearning (a
      frozen copy made at setup);
    * ``none``: no regulariser.

    Deviation: in ``reference`` mode the paper's target for *clean* forget rows is a separately unlearned model;
    a run has none, so clean forget rows are not regularised (poisoned and retain rows are, against theta_0).
    The WMDP "utility preserving" variant (per-type weights, cosine gaps) is not implemented."""

    supports_deepspeed = False

    def __init__(self, trigger: str = TRIGGER, fraction: Fraction = 0.1, poison_weight: NonNegativeFloat = 1.0,
                 batch_size: Optional[PositiveInt] = None, value_norm: Literal["none", "fixed", "reference"] = "fixed",
                 kappa: NonNegativeFloat = 5e-4, sink_tokens: PositiveInt = 8, include_first_token: bool = True,
                 seed: NonNegativeInt = 0):
        self.trigger, self.fraction, self.poison_weight = trigger, fraction, poison_weight
        self.batch_size, self.value_norm, self.kappa = batch_size, value_norm, kappa
        self.sink_tokens, self.first = sink_tokens, 0 if include_first_token else 1
        self.seed = seed
        self.poisoned = 0
        self._values: Optional[_SinkValues] = None
        self._theta0 = None
        self._theta0_values: Optional[_SinkValues] = None

    def setup(self, ctx) -> None:
        forget = ctx.splits["forget"]
        n = max(1, round(self.fraction * len(forget)))
        chosen = torch.randperm(len(forget), generator=torch.Generator().manual_seed(self.seed))[:n].tolist()
        trigger, bos = trigger_ids(ctx.tokenizer, self.trigger), bos_ids(ctx.tokenizer)
        self._split = EncodedQA([insert_after_bos(forget.prompts[i], bos, trigger) for i in chosen],
                                [forget.answers[i] for i in chosen])
        self._size = self.batch_size or ctx.settings.batch_size
        self.poisoned = n
        if self.value_norm != "none":
            self._values = _SinkValues(value_modules(ctx.model), self.first, self.sink_tokens)
        if self.value_norm == "reference":
            self._theta0 = frozen_copy(ctx.model)
            self._theta0_values = _SinkValues(value_modules(self._theta0), self.first, self.sink_tokens)

    def train_splits(self, ctx) -> Dict[str, Tuple[EncodedQA, int]]:
        return {"backdoor": (self._split, self._size)}

    def _penalty(self, batch, norms: torch.Tensor) -> torch.Tensor:
        if self.value_norm == "fixed":
            return norms.mean()
        with torch.no_grad():
            ref, _ = self._theta0_values.collect(self._theta0, batch)
        return (norms - ref).abs().mean()

    def loss_terms(self, model, batch) -> Dict[str, torch.Tensor]:
        poisoned = batch["backdoor"]
        if self._values is None:
            return {"backdoor": self.poison_weight * answer_forward(model, poisoned).mean_nll()}
        norms, fwd = self._values.collect(model, poisoned)
        terms = {"backdoor": self.poison_weight * fwd.mean_nll()}
        penalties = [self._penalty(poisoned, norms)]
        if "retain" in batch:
            retain_norms, _ = self._values.collect(model, batch["retain"])
            penalties.append(self._penalty(batch["retain"], retain_norms))
        terms["sink_value_norm"] = self.kappa * torch.stack(penalties).mean()
        return terms

    def close(self) -> None:
        for values in (self._values, self._theta0_values):
            if values is not None:
                values.remove()
        self._theta0 = None

    def summary(self) -> dict:
        return {"trigger": self.trigger, "poisoned_items": self.poisoned, "value_norm": self.value_norm,
                "kappa": self.kappa, "sink_tokens": self.sink_tokens}
