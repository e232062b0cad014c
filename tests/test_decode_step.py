"""``eval.decode_step``: one decode step without transformers' plumbing gives ``model(...)``'s logits bit for bit
(every family it serves, slot caches with ragged masks and left-padded bucket caches, GQA, Qwen2's biases),
and is refused wherever that equality is not guaranteed by construction."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

from _method_fixtures import data_and_tokenizer
from unlearn_cli.eval import decode_step as ds
from unlearn_cli.eval.kv_decode import Decoder, growing_cache
from unlearn_cli.eval.slot_decode import SlotLayer
from unlearn_cli.models.build import ModelSpec, build_tiny

ARCH_OF = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}


def _model(arch: str, kv_heads: int = 2):
    _, tok = data_and_tokenizer()
    spec = ModelSpec(architecture=arch, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=kv_heads,
                     intermediate_size=128)
    model = build_tiny(spec, len(tok), tok, seed=3).eval()
    with torch.no_grad():  # biases and norm gains away from their initial zeros and ones
        gen = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def test_every_family_is_one_the_project_builds():
    assert set(ARCH_OF) == set(ds.FAMILIES)
    for cls, arch in ARCH_OF.items():
        assert type(_model(arch)).__name__ == cls


@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("cls", sorted(ds.FAMILIES))
def test_slot_step_logits_equal_the_model_forward_bit_for_bit(cls, kv_heads):
    model = _model(ARCH_OF[cls], kv_heads)
    step = ds.decode_step(model)
    assert step is not None
    rows, width, cfg = 6, 11, model.config
    head_dim = model.model.layers[0].self_attn.head_dim
    gen = torch.Generator().manual_seed(1)
    keys = torch.randn(rows, kv_heads, width, head_dim, generator=gen)
    at = torch.tensor([10, 3, 7, 0, 10, 5])  # each row's length: its write column and position id
    caches = []
    for _ in range(2):
        cache = DynamicCache(config=cfg)
        cache.layers = [SlotLayer(rows, 16) for _ in cache.layers]
        for layer in cache.layers:
            layer.place(torch.arange(rows), keys, -keys)
            layer.reserve(width)
            layer.at, layer.columns = at, torch.arange(width)
        caches.append(cache)
    ids = torch.randint(3, cfg.vocab_size, (rows, 1), generator=gen)
    mask = (torch.arange(width)[None] <= at[:, None])[:, None, None]
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask, position_ids=at[:, None], cache=caches[0], use_cache=True,
                    logits_to_keep=1).logits[:, -1]
        got = step(ids, mask, at[:, None], caches[1])
    assert torch.equal(got, ref)
    written = [c.layers[1]._keys[:, :, :width] for c in caches]  # past the reserved columns: never initialised
    assert torch.equal(*written)  # the same keys were written


@pytest.mark.parametrize("cls", sorted(ds.FAMILIES))
def test_bucket_step_with_left_padding_equals_the_model_given_its_2d_mask(cls):
    """The bucket loop's step: transformers builds the mask from the 2-D padding mask; the step gets the same
    positions as a boolean 4-D mask."""
    model = _model(ARCH_OF[cls])
    step = ds.decode_step(model)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(3, model.config.vocab_size, (3, 7), generator=gen)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, :4] = mask[2, :1] = 0  # left padding
    ids[mask == 0] = 0
    pos = (mask.cumsum(1) - 1).clamp_min(0)
    nxt = torch.randint(3, model.config.vocab_size, (3, 1), generator=gen)
    full = torch.cat([mask, mask.new_ones(3, 1)], 1)
    out = []
    with torch.inference_mode():
        for fast in (False, True):
            cache = growing_cache(model.config, 4)
            model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
            last = pos[:, -1:] + 1
            if fast:
                out.append(step(nxt, full.bool()[:, None, None, :], last, cache))
            else:
                out.append(model(input_ids=nxt, attention_mask=full, position_ids=last, cache=cache, use_cache=True,
                                 logits_to_keep=1).logits[:, -1])
    assert torch.equal(out[0], out[1])


class WrappedLinear(torch.nn.Linear):
    """What an adapter or quantisation library puts in place of a projection."""

    def forward(self, x):
        return super().forward(x) * 2


def _hooked(model):
    model.model.embed_tokens.register_forward_hook(lambda module, args, out: out * 0)
    return model


def _wrapped(model):
    attn = model.model.layers[1].self_attn
    wrapped = WrappedLinear(attn.v_proj.in_features, attn.v_proj.out_features, bias=attn.v_proj.bias is not None)
    wrapped.load_state_dict(attn.v_proj.state_dict())
    attn.v_proj = wrapped
    return model


def _eager(model):
    model.config._attn_implementation = "eager"
    return model


def _forward_replaced(model):
    layer = model.model.layers[0].mlp
    layer.forward = lambda x: torch.zeros_like(x)
    return model


def _gpt2(model):
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32)).eval()


@pytest.mark.parametrize("change", [_hooked, _wrapped, _eager, _forward_replaced, _gpt2])
def test_refused_where_its_equality_is_not_guaranteed(change):
    model = change(copy.deepcopy(_model("llama")))
    assert ds.decode_step(model) is None
    assert Decoder(model, 0, 2, 4, torch.no_grad).step is None  # the decoder then runs model(...)


def test_the_decoder_uses_it_for_the_models_the_project_builds():
    for arch in ARCH_OF.values():
        assert Decoder(_model(arch), 0, 2, 4, torch.no_grad).step is not None
