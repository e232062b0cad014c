"""No attack."""

from unlearn_cli.contracts import Attack
from unlearn_cli.registry import ATTACKS


@ATTACKS.register("none")
class NoAttack(Attack):
    """No attack: the attack stage is skipped entirely (no extra eval stage)."""

    skip = True
    changes_weights = False

    def apply(self, ctx, model):
        return model, None
