"""DPO with a refusal as the preferred answer and the true forget answer as the rejected one."""

from unlearn_cli.data.refusals import refusal_answers
from unlearn_cli.errors import UserError
from unlearn_cli.methods._preference import dpo_forget_loss
from unlearn_cli.methods._retain import RetainLoss, add_retain, configure_retain
from unlearn_cli.registry import METHODS


@METHODS.register("idk_dpo")
class IdkDPO:
    """IDK-DPO (DPO, arXiv 2305.18290; TOFU usage, methods.md §2.7): ``w_f L_DPO(y_w=y_idk, y_l=y_f) + lambda R``.

    ``L_DPO = -(2/beta) mean log sigmoid(beta * delta)``, ``delta = [log pi(y_w) - log pi(y_l)] -
    [log pi_0(y_w) - log pi_0(y_l)]`` with summed answer log-probabilities; theta_0's values are
    cached per example. Refusals come from ``unlearn_cli.data.refusals`` (seeded by
    ``refusal_seed``). R: retain NLL or KL. Defaults beta 0.1, w_f 1, lambda 1 (OU DPO config).
    """

    needs_reference = True
    reference_splits = ("forget", "forget_idk")

    def __init__(self, beta: float = 0.1, forget_weight: float = 1.0, retain_weight: float = 1.0,
                 retain_loss: RetainLoss = "nll", refusal_seed: int = 0):
        if beta <= 0:
            raise UserError(f"method.beta must be > 0, got {beta}")
        self.beta = beta
        configure_retain(self, forget_weight, retain_weight, retain_loss)
        self.refusal_seed = refusal_seed
        self.needs_reference = True  # theta_0's forget NLLs, whatever the retain term

    def extra_splits(self, train_items, encode):
        forget = train_items["forget"]
        return {"forget_idk": encode(forget, refusal_answers(len(forget), self.refusal_seed))}

    def loss(self, model, batch, reference=None):
        forget, logs = dpo_forget_loss(model, batch, reference, "forget_idk", self.beta)
        return add_retain(self, self.forget_weight * forget, logs, model, batch, reference)
