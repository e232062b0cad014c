"""Batched model operations of the scoring core: answer NLLs, prefix-shared perturbed-answer NLLs,
per-token log-probs with Min-K%++ moments, multiple-choice letter log-likelihoods.

Each takes encoded rows and returns CPU tensors / arrays in the rows' order; batches are
length-bucketed, so batching changes compute, not results (up to float rounding of padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from unlearn_cli.data.encoding import IGNORE, EncodedQA, MCQ_LETTERS, left_pad
from unlearn_cli.errors import UserError
from unlearn_cli.models.forward import answer_forward, answer_logits, supervised_positions
from unlearn_cli.eval.decode import fit_prompts, left_pad_positions, length_buckets, model_device
from unlearn_cli.models.build import context_length
from unlearn_cli.eval.stats import logp_moments
from unlearn_cli.losses import sequence_nll


def fit_rows(rows: EncodedQA, context: Optional[int]) -> EncodedQA:
    """Scored rows cut to the model's context: each answer keeps its first tokens (the prompt part
    is a ``<bos>`` or a short question)."""
    if not context or all(len(p) + len(a) <= context for p, a in zip(rows.prompts, rows.answers)):
        return rows
    return EncodedQA(rows.prompts, [a[:max(1, context - len(p))] for p, a in zip(rows.prompts, rows.answers)])


@torch.no_grad()
def answer_nll(model, encoded: EncodedQA, pad_id: int, batch_size: int, autocast):
    """(summed answer NLL, answer token count) per example, as float tensors on CPU."""
    dev = model_device(model)
    sums, counts = torch.zeros(len(encoded)), torch.zeros(len(encoded))
    for idx in length_buckets([len(p) + len(a) for p, a in zip(encoded.prompts, encoded.answers)], batch_size):
        batch = {k: v.to(dev) for k, v in encoded.batch(idx, pad_id).items()}
        with autocast():
            s, c = answer_forward(model, batch).sequence_nll()  # logits at the answer positions only
        sums[idx] = s.float().cpu()
        counts[idx] = c.float().cpu()
    return sums, counts


@torch.no_grad()
def shared_prefix_nll(model, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[Sequence[int]]],
                      pad_id: int, batch_size: int, autocast) -> Tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL, token count), each (N, M), of M answers per prompt (TOFU's perturbed answers),
    encoding each prompt ONCE: a left-padded prompt forward fills the KV cache, the cache is
    repeated M times and one forward scores all M right-padded continuations against it. Equal to
    scoring every ``prompt + answer`` row on its own (``answer_nll``) up to float rounding, with the
    prompt's compute divided by M. ``batch_size`` bounds continuation rows per forward."""
    dev = model_device(model)
    n, m = len(prompts), len(answers[0]) if answers else 0
    sums, counts = torch.zeros(n, m), torch.zeros(n, m)
    per_call = max(1, batch_size // max(m, 1))
    lengths = [len(p) + max(len(a) for a in answers[i]) for i, p in enumerate(prompts)]
    for idx in length_buckets(lengths, per_call):
        batch = left_pad([prompts[i] for i in idx], pad_id)
        prompt_mask = batch["attention_mask"].to(dev)
        with autocast():
            out = model(input_ids=batch["input_ids"].to(dev), attention_mask=prompt_mask,
                        position_ids=left_pad_positions(prompt_mask), use_cache=True)
        last = out.logits[:, -1:].repeat_interleave(m, dim=0)  # predicts each continuation's first token
        cache = out.cache
        cache.batch_repeat_interleave(m)
        rows = [list(a) for i in idx for a in answers[i]]
        cont = EncodedQA([[] for _ in rows], rows).batch(range(len(rows)), pad_id)  # right-padded, all supervised
        ids, mask = cont["input_ids"].to(dev), cont["attention_mask"].to(dev)
        start = prompt_mask.sum(-1).repeat_interleave(m).unsqueeze(-1)
        with autocast():
            logits = model(input_ids=ids, attention_mask=torch.cat([prompt_mask.repeat_interleave(m, dim=0), mask], -1),
                           position_ids=start + torch.arange(ids.shape[1], device=dev), cache=cache,
                           use_cache=False).logits
        # position 0 = the prompt's last logits; sequence_nll's shift then pairs logits t with token t
        labels = torch.cat([torch.full((len(rows), 1), IGNORE), cont["labels"]], 1).to(dev)
        s, c = sequence_nll(torch.cat([last, logits], 1), labels)
        sums[idx] = s.float().view(len(idx), m).cpu()
        counts[idx] = c.float().view(len(idx), m).cpu()
    return sums, counts


@dataclass
class TokenStats:
    """Per supervised token of one sequence: ``logp`` = log p(x_t | x_<t); ``mu`` / ``sigma`` =
    mean / std of log p(v) under the next-token distribution at that position (Min-K%++); ``top`` =
    whether x_t is that distribution's argmax (teacher-forced greedy prediction: memorization metrics)."""

    logp: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    top: np.ndarray


@torch.no_grad()
def token_stats(model, encoded: EncodedQA, pad_id: int, batch_size: int, autocast,
                min_var: float = 1e-6, chunk_tokens: int = 4096) -> List[TokenStats]:
    """Per-token log-probs of every row's answer tokens with their Min-K%++ moments, one forward
    per right-padded batch. The log-softmax and moments are taken in float32 over the supervised
    positions only, ``chunk_tokens`` positions at a time (bounded memory at large vocabularies)."""
    dev = model_device(model)
    out: List[Optional[TokenStats]] = [None] * len(encoded)
    for idx in length_buckets([len(p) + len(a) for p, a in zip(encoded.prompts, encoded.answers)], batch_size):
        batch = encoded.batch(idx, pad_id)
        labels = batch["labels"][:, 1:].to(dev)
        mask = labels != -100
        with autocast():  # (supervised tokens, vocab): gathered before the LM head
            picked = answer_logits(model, batch["input_ids"].to(dev), batch["attention_mask"].to(dev),
                                   supervised_positions(batch["labels"]).to(dev))
        targets = labels[mask]
        parts = []
        for start in range(0, picked.shape[0], chunk_tokens):
            logp_all = torch.log_softmax(picked[start:start + chunk_tokens].float(), dim=-1)
            gold = targets[start:start + chunk_tokens]
            lp = logp_all.gather(-1, gold.unsqueeze(-1)).squeeze(-1)
            parts.append((lp, *logp_moments(logp_all, min_var), (logp_all.argmax(-1) == gold).double()))
        lp, mu, sigma, top = (torch.cat(t).double().cpu().numpy() for t in zip(*parts)) if parts else \
            (np.zeros(0),) * 4
        start = 0
        for row, (i, count) in enumerate(zip(idx, mask.sum(-1).tolist())):
            sl = slice(start, start + count)
            out[i] = TokenStats(lp[sl], mu[sl], sigma[sl], top[sl].astype(bool))
            start += count
    return out


@torch.no_grad()
def mcq_logprobs(model, tokenizer, prompts: Sequence[Sequence[int]], num_choices: int, batch_size: int,
                 autocast, fast_path: bool = True, desc: str = "mcq") -> torch.Tensor:
    """(N, C) log-likelihoods of the continuations ``" A"``, ``" B"``, ... after each prompt.

    Single-token letters (the usual case): one left-padded forward per batch, the letters read off
    the next-token log-softmax at the prompt's last position. Otherwise each (prompt, letter) pair
    is scored as a sequence (``answer_nll``), C rows per prompt (also when ``fast_path`` is off).
    Prompts longer than the model's context keep their last tokens (as lm-evaluation-harness
    truncates: context + letter fit the context)."""
    letters = tokenizer([" " + c for c in MCQ_LETTERS[:num_choices]], add_special_tokens=False)["input_ids"]
    dev = model_device(model)
    out = torch.zeros(len(prompts), num_choices)
    fast = fast_path and all(len(ids) == 1 for ids in letters)
    prompts = fit_prompts(prompts, context_length(model), 0 if fast else max(len(ids) for ids in letters), desc)
    if fast:
        letter_ids = torch.tensor([ids[0] for ids in letters], device=dev)
        for idx in length_buckets([len(p) for p in prompts], batch_size):
            batch = left_pad([prompts[i] for i in idx], tokenizer.pad_token_id)
            mask = batch["attention_mask"].to(dev)
            with autocast():
                logits = model(input_ids=batch["input_ids"].to(dev), attention_mask=mask,
                               position_ids=left_pad_positions(mask)).logits
            logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
            out[idx] = logp[:, letter_ids].cpu()
        return out
    pairs = EncodedQA([list(p) for p in prompts for _ in range(num_choices)],
                      [list(letters[c]) for _ in prompts for c in range(num_choices)])
    sums, _ = answer_nll(model, pairs, tokenizer.pad_token_id, batch_size, autocast)
    return (-sums).view(len(prompts), num_choices)


def grad_norms(model, encoded: EncodedQA, pad_id: int, autocast, p: float = 2.0) -> np.ndarray:
    """Per row: the mean over parameter tensors of the ``p``-norm of the gradient of the row's mean answer-token
    NLL (the GradNorm membership attack, arXiv 2402.17012; OpenUnlearning's form). One backward per row through
    ``torch.autograd.grad`` -- parameters' ``.grad`` are left alone."""
    dev = model_device(model)
    params = list(model.parameters())  # every weight, frozen or not: the same attack at every stage
    flags = [q.requires_grad for q in params]
    for q in params:
        q.requires_grad_(True)
    out = np.zeros(len(encoded))
    try:
        with torch.enable_grad():
            for i in range(len(encoded)):
                batch = encoded.batch([i], pad_id)
                with autocast():
                    nll, count = answer_forward(model, {k: v.to(dev) for k, v in batch.items()}).sequence_nll()
                grads = torch.autograd.grad((nll / count.clamp_min(1)).sum(), params, allow_unused=True)
                norms = [g.detach().float().norm(p=p) for g in grads if g is not None]
                out[i] = float(torch.stack(norms).mean())
    finally:
        for q, flag in zip(params, flags):
            q.requires_grad_(flag)
    return out



@torch.no_grad()
def prompt_activations(model, prompts: Sequence[Sequence[int]], pad_id: int, batch_size: int, autocast,
                       layer: int = -1) -> np.ndarray:
    """(N, hidden) float64: the hidden state of layer ``layer`` (``hidden_states`` index: 0 = embeddings, -1 = last)
    averaged over each prompt's tokens (right-padded batches, padding masked out)."""
    dev = model_device(model)
    out: List[Optional[np.ndarray]] = [None] * len(prompts)
    for idx in length_buckets([len(p) for p in prompts], batch_size):
        rows = EncodedQA([list(prompts[i]) for i in idx], [[] for _ in idx]).batch(range(len(idx)), pad_id)
        mask = rows["attention_mask"].to(dev)
        with autocast():
            states = model(input_ids=rows["input_ids"].to(dev), attention_mask=mask,
                           output_hidden_states=True).hidden_states
        if not -len(states) <= layer < len(states):
            raise UserError(f"layer={layer} is out of range: this model has hidden states 0..{len(states) - 1} "
                            f"(0 = embeddings, -1 = the last layer)")
        hidden = states[layer]
        pooled = (hidden.float() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        for row, i in enumerate(idx):
            out[i] = pooled[row].double().cpu().numpy()
    return np.stack(out) if out else np.zeros((0, 0))
