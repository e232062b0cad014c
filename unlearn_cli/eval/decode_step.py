"""One decode step of a Llama-family decoder without transformers' per-call plumbing.

A decode step feeds one token per row. On a small model most of ``model(...)``'s time then goes to work
around the arithmetic: keyword plumbing and deprecation wrappers on every layer, output capture, the mask
builder, the attention-function lookup and a module call per projection (measured on the 0.66 M-parameter
tiny Llama at 64 rows: 13-21 % of a step; on the 57 M stand-in, whose step is bound by its matmuls, about
nothing). ``decode_step(model)`` returns a step that runs the same operations in the same order on the
model's own weights -- RMSNorm as transformers writes it, the model's rotary module, its
``apply_rotary_pos_emb``, transformers' own SDPA attention function (so grouped-query attention takes the
same path) -- so its logits are bit-identical to ``model(...)``'s (tested for Llama, Mistral and Qwen2, with
and without padding, GQA and biases).

It is used only where that equality is guaranteed by construction: a ``LlamaForCausalLM``,
``MistralForCausalLM`` or ``Qwen2ForCausalLM`` whose modules are exactly transformers' classes (plain
``nn.Linear`` projections: no LoRA wrapper, no quantised layer), with SDPA attention, no forward hook on any
module (an attack's embedding override, DeepSpeed ZeRO-3 and accelerate's offloading all hook modules) and
no instance-level ``forward`` override. Anything else gets ``None`` and is run through ``model(...)``.
"""

from __future__ import annotations

import importlib
from typing import Callable, Optional

import torch
import torch.nn.functional as F

# model class -> (decoder layer, attention, MLP, RMSNorm) class names of the same family
FAMILIES = {
    "LlamaForCausalLM": ("LlamaDecoderLayer", "LlamaAttention", "LlamaMLP", "LlamaRMSNorm"),
    "MistralForCausalLM": ("MistralDecoderLayer", "MistralAttention", "MistralMLP", "MistralRMSNorm"),
    "Qwen2ForCausalLM": ("Qwen2DecoderLayer", "Qwen2Attention", "Qwen2MLP", "Qwen2RMSNorm"),
}


def rms_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """transformers' Llama/Mistral/Qwen2 RMSNorm: ``w * (x / sqrt(mean(x^2) + eps))``, computed in float32."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


def linear(layer, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


def _plain(model, family) -> bool:
    """Whether no module of ``model`` is hooked or has its ``forward`` replaced, and the modules the step reads are
    the family's own classes (by name), plain ``nn.Linear`` projections (no LoRA, quantised or otherwise
    wrapped layer) and a plain ``nn.Embedding``."""
    layer_cls, attn_cls, mlp_cls, norm_cls = family
    if any(m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__ for m in model.modules()):
        return False
    inner = model.model
    if type(inner.embed_tokens) is not torch.nn.Embedding or inner.embed_tokens.max_norm is not None:
        return False
    if type(model.lm_head) is not torch.nn.Linear:
        return False
    if type(inner.norm).__name__ != norm_cls:
        return False
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        names = (type(layer).__name__, type(attn).__name__, type(mlp).__name__,
                 type(layer.input_layernorm).__name__, type(layer.post_attention_layernorm).__name__)
        if names != (layer_cls, attn_cls, mlp_cls, norm_cls, norm_cls):
            return False
        projections = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        if any(type(p) is not torch.nn.Linear for p in projections):
            return False
    return True


def decode_step(model) -> Optional[Callable]:
    """``step(input_ids, attention_mask, position_ids, cache) -> (rows, vocabulary)`` last-position logits, equal
    to ``model(input_ids=..., attention_mask=..., position_ids=..., cache=..., use_cache=True,
    logits_to_keep=1).logits[:, -1]`` for ``input_ids`` of shape (rows, 1), a boolean ``(rows, 1, 1, columns)``
    mask of the cached positions each row sees, and a transformers ``Cache``; ``None`` where the model is not
    one it reproduces exactly (see the module docstring)."""
    family = FAMILIES.get(type(model).__name__)
    config = model.config
    if family is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return None
    if model.training and getattr(config, "attention_dropout", 0.0):
        return None
    if not _plain(model, family):
        return None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    rotary_apply = importlib.import_module(type(model).__module__).apply_rotary_pos_emb
    inner, head = model.model, model.lm_head
    layers = list(inner.layers[:config.num_hidden_layers])

    def step(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
             cache) -> torch.Tensor:
        x = F.embedding(input_ids, inner.embed_tokens.weight, inner.embed_tokens.padding_idx)
        cos, sin = inner.rotary_emb(x, position_ids=position_ids)
        rows, length = input_ids.shape
        for index, layer in enumerate(layers):
            attn, mlp = layer.self_attn, layer.mlp
            h = rms_norm(layer.input_layernorm, x)
            shape = (rows, length, -1, attn.head_dim)
            q = linear(attn.q_proj, h).view(shape).transpose(1, 2)
            k = linear(attn.k_proj, h).view(shape).transpose(1, 2)
            v = linear(attn.v_proj, h).view(shape).transpose(1, 2)
            q, k = rotary_apply(q, k, cos, sin)
            k, v = cache.update(k, v, index)
            out, _ = sdpa_attention_forward(attn, q, k, v, attention_mask, dropout=0.0, scaling=attn.scaling)
            x = x + linear(attn.o_proj, out.reshape(rows, length, -1).contiguous())
            h = rms_norm(layer.post_attention_layernorm, x)
            x = x + linear(mlp.down_proj, mlp.act_fn(linear(mlp.gate_proj, h)) * linear(mlp.up_proj, h))
        return linear(head, rms_norm(inner.norm, x[:, -1:]))[:, -1]
    return step
