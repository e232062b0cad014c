"""Greedy Coordinate Gradient (GCG) attack: a universal discrete adversarial prefix found by token-gradient search."""

from __future__ import annotations

from typing import List, Optional

import torch

from unlearn_cli.attacks._adversarial import check_attacker_data, frozen, prompt_search, special_ids, view_name
from unlearn_cli.bounds import Fraction, NonNegativeInt, PositiveInt
from unlearn_cli.contracts import Attack
from unlearn_cli.eval.views import PromptView
from unlearn_cli.models.adversarial_tokens import EmbeddingOverride
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import ATTACKS


@ATTACKS.register("gcg")
class GCG(Attack):
    """Universal GCG (Zou et al. 2023, arXiv 2307.15043, Alg. 2 "universal prompt optimisation" with all prompts
    at once): ``tokens`` discrete tokens ``x`` after the ``<bos>`` of every prompt, searched to minimise the
    forget answers' NLL ``L(x) = E_(q,y)~D_f [ -1/|y| log p(y | x, q) ]`` on the attacker's forget sample.

    Each of ``steps`` iterations draws ``batch_size`` items (seeded), takes the token gradient
    ``G = -(dL/de_i) E^T`` (the one-hot gradient of the paper, through the input embeddings ``e_i`` of the
    ``tokens`` positions), keeps the ``topk`` tokens per position, evaluates ``search_width`` candidates that
    each replace one random position by one of its top-k tokens (forward only, in chunks of
    ``candidate_batch`` candidates) and moves to the best. The prefix with the lowest loss on the whole sample
    (checked every ``eval_every`` steps and at the end) is the stage's prompt view; special tokens are never
    proposed. Deviations: a prefix after ``<bos>`` instead of a suffix (the same position in every prompt
    representation the scorer builds, scored as the exact ids searched, without re-tokenisation); the paper's
    incremental addition of prompts is not used (all sampled items from the start).

    Written here rather than taken from ``nanogcg``: that library optimises one prompt/target pair through its own
    chat-template string, while this attack needs one prefix shared by the whole forget sample in the run's
    prompt format."""

    changes_weights = False
    optimises_prompt = True

    def __init__(self, tokens: PositiveInt = 10, steps: PositiveInt = 30, search_width: PositiveInt = 64,
                 topk: PositiveInt = 32, batch_size: PositiveInt = 16, candidate_batch: PositiveInt = 8,
                 eval_every: PositiveInt = 5, fraction: Fraction = 0.5, num_samples: Optional[PositiveInt] = None,
                 splits: Optional[List[str]] = None, seed_offset: NonNegativeInt = 5000):
        self.tokens, self.steps, self.search_width, self.topk = tokens, steps, search_width, topk
        self.batch_size, self.candidate_batch, self.eval_every = batch_size, candidate_batch, eval_every
        self.fraction, self.num_samples, self.splits, self.seed_offset = fraction, num_samples, splits, seed_offset

    @staticmethod
    def _losses(model, batch: dict, at: int, candidates: torch.Tensor, chunk: int) -> torch.Tensor:
        """Mean answer NLL of ``batch`` with each candidate prefix (rows of ``candidates``) at columns ``at..``."""
        out, k, n = [], candidates.shape[1], batch["input_ids"].shape[0]
        for group in candidates.split(chunk):
            ids = batch["input_ids"].repeat(len(group), 1)
            ids[:, at:at + k] = group.repeat_interleave(n, dim=0)
            fwd = answer_forward(model, {"input_ids": ids, "attention_mask": batch["attention_mask"].repeat(len(group), 1),
                                         "labels": batch["labels"].repeat(len(group), 1)})
            nll, mask = fwd.token_nll()
            summed = nll.sum(-1).view(len(group), n).sum(-1)
            out.append(summed / mask.sum(-1).view(len(group), n).sum(-1).clamp_min(1))
        return torch.cat(out)

    def check_data(self, data, forget_splits) -> None:
        check_attacker_data(data, forget_splits, self)

    def apply(self, ctx, model):
        s = prompt_search(ctx, self, model)
        placeholder, bos, rows, splits = s.placeholder, s.bos, s.rows, s.splits
        embed = model.get_input_embeddings()
        vocab = embed.num_embeddings
        blocked = special_ids(ctx.tokenizer, vocab).to(embed.weight.device)
        gen = torch.Generator().manual_seed(ctx.seed + self.seed_offset)
        x = s.start.to(embed.weight.device)
        everything = {k: v.to(ctx.device) for k, v in rows.batch(range(len(rows)), ctx.pad_id).items()}
        at = len(bos)
        with frozen(model):
            best_x, best = x.clone(), float(self._losses(model, everything, at, x[None], self.candidate_batch)[0])
            for step in range(self.steps):
                pick = torch.randperm(len(rows), generator=gen)[:self.batch_size].tolist()
                batch = {k: v.to(ctx.device) for k, v in rows.batch(pick, ctx.pad_id).items()}
                vectors = embed(x).detach().requires_grad_(True)
                with torch.enable_grad(), EmbeddingOverride(model, vectors, placeholder, bos):
                    loss = answer_forward(model, batch).mean_nll()
                    grad, = torch.autograd.grad(loss, vectors)
                scores = -(grad.float() @ embed.weight.float().T)          # (tokens, vocab): first-order gain
                scores[:, blocked] = -float("inf")
                top = scores.topk(min(self.topk, vocab), dim=1).indices
                where = torch.randint(self.tokens, (self.search_width,), generator=gen).to(x.device)
                choice = torch.randint(top.shape[1], (self.search_width,), generator=gen).to(x.device)
                candidates = x.repeat(self.search_width, 1)
                candidates[torch.arange(self.search_width, device=x.device), where] = top[where, choice]
                with torch.no_grad():
                    losses = self._losses(model, batch, at, candidates, self.candidate_batch)
                x = candidates[int(losses.argmin())]
                values = {"loss": float(loss.detach()), "candidate_loss": float(losses.min())}
                if (step + 1) % self.eval_every == 0 or step == self.steps - 1:
                    with torch.no_grad():
                        full = float(self._losses(model, everything, at, x[None], self.candidate_batch)[0])
                    values["sample_loss"] = full
                    if full < best:
                        best_x, best = x.clone(), full
                ctx.log(ctx.stage, step, values)
        tokens = tuple(int(t) for t in best_x.tolist())
        return model, PromptView(view_name(self, repr((tokens, splits)).encode()), splits, tokens=tokens)
