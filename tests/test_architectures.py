"""Tiny stand-ins of the three decoder families the real-model presets use (Llama, Mistral, Qwen2):
each builds locally, trains, generates with left padding, and works with the hidden-state layers."""

import pytest
import torch

from unlearn_cli.models import layers
from unlearn_cli.data.encoding import encode_qa, left_pad
from unlearn_cli.data.fictional import generate
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.losses import mean_token_nll
from unlearn_cli.methods.rmu import RMU
from unlearn_cli.models.build import ModelSpec, build_tiny, prompt_format
from unlearn_cli.train.loop import sum_terms
from unlearn_cli.train.reference import Reference


@pytest.fixture(scope="module")
def data():
    d = generate(num_people=20)
    return d, train_bpe_tokenizer(d.corpus, 512)


@pytest.mark.parametrize("arch,cls", [("llama", "LlamaForCausalLM"), ("mistral", "MistralForCausalLM"),
                                      ("qwen2", "Qwen2ForCausalLM")])
def test_tiny_stand_in_builds_trains_generates_and_hooks(arch, cls, data):
    d, tok = data
    spec = ModelSpec(architecture=arch, hidden_size=64, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=128)
    torch.manual_seed(0)
    model = build_tiny(spec, len(tok), tok, seed=0)
    assert type(model).__name__ == cls and len(layers.decoder_layers(model)) == 3
    enc = encode_qa(tok, d.train["forget"][:8], prompt_format(spec, tok))
    batch = enc.batch(range(8), tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = mean_token_nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                              batch["labels"])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    prompts = left_pad(enc.prompts[:4], tok.pad_token_id)
    out = model.generate(**prompts, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (4, prompts["input_ids"].shape[1] + 4)

    # RMU on the family's layer layout: only layer 1's down_proj may change
    retain = encode_qa(tok, d.train["retain"][:8], prompt_format(spec, tok)).batch(range(8), tok.pad_token_id)
    rmu = RMU(layer=1, trainable_layers=[1], steering_coeff=5.0, alpha=1.0)
    ref = Reference(build_tiny(spec, len(tok), tok, seed=0).eval(), tok.pad_token_id)
    ref.model.load_state_dict(model.state_dict())
    rmu.check_model(model)
    rmu.setup(model, ref)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    terms, _ = rmu.loss(model, {"forget": batch, "retain": retain}, ref)
    sum_terms(terms).backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"model.layers.1.mlp.down_proj.weight"}


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
def test_prefix_shared_answer_scoring_equals_scoring_each_row(arch, data):
    """The KV-cache path of TOFU's perturbed answers (prompt once, M continuations) gives the
    same NLLs as M independent right-padded forwards, with prompts of different lengths."""
    from unlearn_cli.data.encoding import EncodedQA
    from unlearn_cli.eval.ops import answer_nll, shared_prefix_nll
    import contextlib
    d, tok = data
    spec = ModelSpec(architecture=arch, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128)
    torch.manual_seed(0)
    model = build_tiny(spec, len(tok), tok, seed=0).eval()
    items = d.qa["forget"][:5]
    enc = encode_qa(tok, items, prompt_format(spec, tok))
    answers = [[tok(" " + t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in it.perturbed]
               for it in items]
    m = len(answers[0])
    sums, counts = shared_prefix_nll(model, enc.prompts, answers, tok.pad_token_id, 2 * m, contextlib.nullcontext)
    flat = EncodedQA([p for p in enc.prompts for _ in range(m)], [a for row in answers for a in row])
    want_s, want_c = answer_nll(model, flat, tok.pad_token_id, 3, contextlib.nullcontext)
    torch.testing.assert_close(sums, want_s.view(-1, m), atol=1e-3, rtol=1e-4)
    assert torch.equal(counts, want_c.view(-1, m))
