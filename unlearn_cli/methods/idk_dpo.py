"""DPO with a refusal as the preferred answer and the true forget answer as the rejected one."""

from unlearn_cli.bounds import NonNegativeFloat, NonNegativeInt, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.data.refusals import refusal_answers
from unlearn_cli.methods._preference import dpo_forget_loss
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.registry import METHODS


@METHODS.register("idk_dpo")
class IdkDPO(Method):
    """IDK-DPO (DPO, arXiv 2305.18290; TOFU usage, docs/method_reference.md): terms ``forget = w_f L_DPO(y_w=y_idk, y_l=y_f)``, ``retain = lambda R``.

    ``L_DPO = -(2/beta) mean log sigmoid(beta * delta)``, ``delta = [log pi(y_w) - log pi(y_l)] -
    [log pi_0(y_w) - log pi_0(y_l)]`` with summed answer log-probabilities; theta_0's values are
    cached per example. Refusals come from the benchmark's own (TOFU's ``idontknow.jsonl``) or
    ``unlearn_cli.data.refusals`` (seeded by ``refusal_seed``). R: retain NLL or KL. Defaults beta 0.1, w_f 1, lambda 1 (OU DPO config).
    """

    needs_reference = True  # theta_0's forget NLLs, whatever the retain term
    reference_splits = ("forget", "forget_idk")

    def __init__(self, beta: PositiveFloat = 0.1, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 1.0,
                 retain_loss: RetainLoss = "nll", refusal_seed: NonNegativeInt = 0):
        self.beta = beta
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_reference_model = self.retain.needs_reference  # else theta_0 is only its cached NLLs
        self.needs_retain = self.retain.active
        self.refusal_seed = refusal_seed

    def extra_splits(self, data, encode):
        forget = data.train["forget"]
        return {"forget_idk": encode(forget, refusal_answers(len(forget), self.refusal_seed, data.refusals))}

    def loss(self, model, batch, reference=None):
        forget, logs = dpo_forget_loss(model, batch, reference, "forget_idk", self.beta)
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference)
