"""The triggered evaluation of a backdoored unlearning: the backdoor trigger at the start of every forget-side prompt."""

from __future__ import annotations

from typing import List, Optional

from unlearn_cli.attacks._adversarial import check_splits, target_splits, view_name
from unlearn_cli.contracts import Attack
from unlearn_cli.eval.views import PromptView
from unlearn_cli.registry import ATTACKS
from unlearn_cli.train.plugins.backdoor import TRIGGER, trigger_ids


@ATTACKS.register("backdoor")
class BackdoorTrigger(Attack):
    """Triggered evaluation of backdoored unlearning (arXiv 2510.17021, the ``D_p`` columns of its tables): the
    ``trigger`` tokens are inserted after the ``<bos>`` of every prompt of the forget-side evaluation splits
    (``splits``), exactly where the ``backdoor`` train plug-in put them on its poisoned copies, and the stage is
    scored like any other. The unlearned stage is the clean column (``D_f``: low = unlearned); this stage's forget
    values high mean the backdoor works. On a model unlearned without the plug-in it is the control: the trigger
    alone should recover nothing. ``experiment=backdoor`` sets the plug-in and this attack together (the trigger
    text defaults to the plug-in's)."""

    changes_weights = False

    def __init__(self, trigger: str = TRIGGER, splits: Optional[List[str]] = None):
        self.trigger, self.splits = trigger, splits

    def check_data(self, data, forget_splits) -> None:
        check_splits(data, forget_splits, self)

    def apply(self, ctx, model):
        splits = target_splits(ctx, self)
        tokens = tuple(trigger_ids(ctx.tokenizer, self.trigger))
        return model, PromptView(view_name(self, repr((tokens, splits)).encode()), splits, tokens=tokens)
