"""What every optimizer wrapper shares: the base optimizer owns the state and parameter groups, so the scheduler's
learning rate, SalUn's state zeroing and checkpoints reach it through the wrapper."""

from __future__ import annotations

from typing import List

import torch

from unlearn_cli.errors import UserError

def first_order_names() -> str:
    """The registered first-order optimizers, comma-separated (for error messages; read from the registry so the
    list never goes stale)."""
    from unlearn_cli.registry import OPTIMIZERS  # at call time: the registry imports this package

    return ", ".join(n for n in OPTIMIZERS.names() if OPTIMIZERS.get(n).first_order)


def gradient_base(spec, wrapper: str):
    """``spec`` if it is a first-order optimizer (it steps on the gradients it is handed); a one-line UserError
    otherwise."""
    if not spec.first_order:
        raise UserError(f"optimizer '{wrapper}' sets the gradient its base steps on, so its base must be first "
                        f"order, not '{spec.registry_name}' (first order: {first_order_names()})")
    return spec


class Wrapper(torch.optim.Optimizer):
    """A torch optimizer around ``base``; ``state_dict`` is the base's plus :meth:`own_state`."""

    def __init__(self, params, base: torch.optim.Optimizer, defaults: dict):
        self.base = base
        super().__init__(params, defaults)
        self.state = base.state
        self.param_groups = base.param_groups

    @property
    def params(self) -> List[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def own_state(self) -> dict:
        """The wrapper's own state (step counters, running averages); empty for stateless wrappers."""
        return {}

    def load_own_state(self, state: dict) -> None:
        """Restore :meth:`own_state`."""

    def state_dict(self):
        own = self.own_state()
        return {"base": self.base.state_dict(), **({"wrapper": own} if own else {})}

    def load_state_dict(self, state_dict):
        self.base.load_state_dict(state_dict["base"])
        self.load_own_state(state_dict.get("wrapper", {}))
        self.state, self.param_groups = self.base.state, self.base.param_groups
