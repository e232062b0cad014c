"""IDK fine-tuning: supervised training on refusals to the forget questions."""

from unlearn_cli.data.refusals import refusal_answers
from unlearn_cli.losses import mean_token_nll
from unlearn_cli.methods._retain import RetainLoss, add_retain
from unlearn_cli.registry import METHODS


@METHODS.register("idk_nll")
class IdkNLL:
    """IDK (TOFU, arXiv 2401.06121; methods.md §2.6): ``w_f * NLL_tok(x_f, y_idk) + lambda R``.

    Each forget question gets one refusal ``y_idk`` drawn from ``unlearn_cli.data.refusals``
    (seeded by ``refusal_seed``, fixed for the run), and the model is fine-tuned on it; R is the
    retain NLL (or KL to theta_0). Defaults w_f 1, lambda 1. Deviation: our own 42-sentence bank,
    not TOFU's 100, and one refusal per item for the whole run (not resampled per epoch).
    """

    def __init__(self, forget_weight: float = 1.0, retain_weight: float = 1.0, retain_loss: RetainLoss = "nll",
                 refusal_seed: int = 0):
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight
        self.retain_loss = retain_loss
        self.refusal_seed = refusal_seed
        self.needs_retain = retain_weight > 0
        self.needs_reference = self.needs_retain and retain_loss == "kl"
        self.reference_splits = ()

    def extra_splits(self, train_items, encode):
        forget = train_items["forget"]
        return {"forget_idk": encode(forget, refusal_answers(len(forget), self.refusal_seed))}

    def loss(self, model, batch, reference=None):
        f = batch["forget_idk"]
        logits = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
        idk = mean_token_nll(logits, f["labels"])
        logs = {"forget_loss": idk.detach()}
        return add_retain(self, self.forget_weight * idk, logs, model, batch, reference)
