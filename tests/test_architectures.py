"""Tiny stand-ins of the three decoder families the real-model presets use (Llama, Mistral, Qwen2):
each builds locally, trains, generates with left padding, and works with the hidden-state hooks."""

import pytest
import torch

from unlearn_cli import hooks
from unlearn_cli.data.encoding import encode_qa, left_pad
from unlearn_cli.data.fictional import generate
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.losses import mean_token_nll
from unlearn_cli.methods.rmu import RMU
from unlearn_cli.models import ModelSpec, build_tiny
from unlearn_cli.reference import Reference


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
    assert type(model).__name__ == cls and len(hooks.decoder_layers(model)) == 3
    enc = encode_qa(tok, d.train["forget"][:8], spec.prompt_template)
    batch = enc.batch(range(8), tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = mean_token_nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                              batch["labels"])
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    prompts = left_pad(enc.prompts[:4], tok.pad_token_id)
    out = model.generate(**prompts, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (4, prompts["input_ids"].shape[1] + 4)

    # RMU on the family's layer layout: only layer 1's down_proj may change
    retain = encode_qa(tok, d.train["retain"][:8], spec.prompt_template).batch(range(8), tok.pad_token_id)
    rmu = RMU(layer=1, trainable_layers=[1], steering_coeff=5.0, alpha=1.0)
    ref = Reference(build_tiny(spec, len(tok), tok, seed=0).eval(), tok.pad_token_id)
    ref.model.load_state_dict(model.state_dict())
    rmu.check_model(model)
    rmu.setup(model, ref)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss, _ = rmu.loss(model, {"forget": batch, "retain": retain}, ref)
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"model.layers.1.mlp.down_proj.weight"}
