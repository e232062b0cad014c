"""Logits at the answer positions only: on a stand-in with a 128 k vocabulary, the gathered forward (hidden states
picked before the LM head) gives the full forward's per-token NLL, losses and gradients, for every architecture the
project builds; the reference cache built from length-sorted batches equals per-example NLLs; a method that reads
theta_0 only through the cache releases the frozen copy."""

from __future__ import annotations

import pytest
import torch

from _method_fixtures import Harness, data_and_tokenizer, encode
from unlearn_cli.losses import forward_kl
from unlearn_cli.methods.npo import NPO
from unlearn_cli.models.build import ARCHITECTURES, ModelSpec, build_tiny
from unlearn_cli.models.forward import answer_forward, gathers_answer_logits
from unlearn_cli.train.reference import Reference


def _stand_in(architecture: str, vocab: int = 128_000):
    _, tok = data_and_tokenizer()
    spec = ModelSpec(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, architecture=architecture)
    return build_tiny(spec, vocab, tok, seed=0)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_gathered_logits_give_the_full_forwards_losses_and_gradients(architecture):
    data, tok = data_and_tokenizer()
    model = _stand_in(architecture)
    assert gathers_answer_logits(model)
    batch = encode(data.train["forget"][:6]).batch(range(6), tok.pad_token_id)
    full, gathered = answer_forward(model, batch, full_logits=True), answer_forward(model, batch)
    assert gathered.answer_logits().shape == (int((batch["labels"][:, 1:] != -100).sum()), 128_000)
    assert torch.allclose(full.answer_logits(), gathered.answer_logits(), atol=1e-6)
    for a, b in zip(full.token_nll(), gathered.token_nll()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
    grads = []
    for fwd in (lambda: answer_forward(model, batch, full_logits=True), lambda: answer_forward(model, batch)):
        model.zero_grad(set_to_none=True)
        out = fwd()
        (out.mean_nll() + out.sequence_nll()[0].sum() * 1e-2).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g_full, g_gathered in zip(*grads):
        assert torch.allclose(g_full, g_gathered, rtol=1e-4, atol=1e-7)
    ref_logits = full.answer_logits().detach() + 0.1
    assert float(forward_kl(ref_logits, gathered.answer_logits()).detach()) == pytest.approx(
        float(forward_kl(ref_logits, full.answer_logits()).detach()), rel=1e-5)
    with pytest.raises(RuntimeError, match="full_logits=True"):
        gathered.logits


def test_the_reference_cache_from_sorted_batches_equals_one_example_at_a_time():
    data, tok = data_and_tokenizer()
    model = _stand_in("llama", vocab=len(tok))
    forget = encode(data.train["forget"])
    ref = Reference(model, tok.pad_token_id, batch_size=5)
    ref.precompute("forget", forget)
    for i in range(len(forget)):
        with torch.no_grad():
            alone, _ = answer_forward(model, forget.batch([i], tok.pad_token_id)).sequence_nll()
        assert float(ref._seq_nll["forget"][i]) == pytest.approx(float(alone), rel=1e-5)


@pytest.mark.parametrize("retain_loss,released", [("nll", True), ("kl", False)])
def test_npo_releases_theta0_when_it_reads_only_the_cache(retain_loss, released):
    h = Harness(NPO(retain_weight=1.0, retain_loss=retain_loss))
    assert (h.reference.model is None) is released
    loss, _ = h.step()
    assert loss == loss
