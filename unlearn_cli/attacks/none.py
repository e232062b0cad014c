"""No attack."""

from unlearn_cli.registry import ATTACKS


@ATTACKS.register("none")
class NoAttack:
    """No attack: the attack stage is skipped entirely (no extra eval stage)."""

    skip = True

    def run(self, ctx, model):
        return model
