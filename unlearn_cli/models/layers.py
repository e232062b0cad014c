"""Decoder-layer access for representation methods: find the blocks, capture their outputs.

Llama, Mistral and Qwen2 causal LMs keep their decoder blocks in ``model.model.layers``. A block's
output hidden state ``h_l`` (B, T, d) is captured with a forward hook (the first element when the
block returns a tuple). Layer indices are 0-based; an out-of-range index is a one-line UserError.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional, Sequence

import torch

from unlearn_cli.models.build import unwrap
from unlearn_cli.errors import UserError


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder blocks of a Llama/Mistral/Qwen2-style model (``model.model.layers``), also
    inside a DDP or DeepSpeed wrapper."""
    model = unwrap(model)
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise UserError(f"cannot find decoder layers (model.model.layers) in {type(model).__name__}; "
                        f"representation methods support Llama, Mistral and Qwen2 models")
    return layers


def check_layers(model, indices: Sequence[int], key: str) -> None:
    """Raise a UserError naming ``key`` and the valid range when an index is out of range."""
    n = len(decoder_layers(model))
    for i in indices:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n:
            raise UserError(f"{key}={i!r} is out of range for this {n}-layer model; valid layer indices: 0..{n - 1}")


@contextlib.contextmanager
def capture(model, indices: Sequence[int]) -> Iterator[Dict[int, torch.Tensor]]:
    """Within the block, every forward of ``model`` stores block ``i``'s output in ``out[i]``."""
    layers = decoder_layers(model)
    check_layers(model, list(indices), "layer")
    out: Dict[int, torch.Tensor] = {}
    handles = []
    for i in indices:
        def hook(module, args, output, i=i):
            out[i] = output[0] if isinstance(output, (tuple, list)) else output
        handles.append(layers[i].register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


class _Enough(Exception):
    """Raised inside a hook to end a forward once the deepest requested block has run."""


def hidden_states(model, batch, indices: Sequence[int], grad: bool = True) -> Dict[int, torch.Tensor]:
    """Run ``model`` on ``batch`` and return the output hidden state of each block in ``indices``.

    The forward stops right after the deepest requested block (later blocks and the LM head are
    not computed), which is all representation losses need.
    """
    layers = decoder_layers(model)
    check_layers(model, list(indices), "layer")
    deepest = max(indices)

    def stop(module, args, output):
        raise _Enough

    ctx = contextlib.nullcontext() if grad else torch.no_grad()
    with ctx, capture(model, indices) as out:
        handle = layers[deepest].register_forward_hook(stop)
        try:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        except _Enough:
            pass
        finally:
            handle.remove()
    return dict(out)


def freeze_except(model, layers: Optional[Sequence[int]], param_name: str, key: str = "method.trainable_layers") -> list:
    """Make only ``layers[i].<param_name>`` trainable (all parameters when ``layers`` is None).

    Returns the names of the trainable parameters. Raises a UserError for a bad index or a
    parameter name that the block does not have.
    """
    if layers is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return [n for n, _ in model.named_parameters()]
    check_trainable(model, layers, param_name, key)
    blocks = decoder_layers(model)
    for p in model.parameters():
        p.requires_grad_(False)
    names = []
    for i in layers:
        dict(blocks[i].named_parameters())[param_name].requires_grad_(True)
        names.append(f"model.layers.{i}.{param_name}")
    return names


def check_trainable(model, layers: Optional[Sequence[int]], param_name: str,
                    key: str = "method.trainable_layers") -> None:
    """UserError unless every ``layers[i]`` exists and has a parameter ``param_name``."""
    if layers is None:
        return
    check_layers(model, list(layers), key)
    blocks = decoder_layers(model)
    for i in layers:
        params = dict(blocks[i].named_parameters())
        if param_name not in params:
            raise UserError(f"method.param_name='{param_name}' is not a parameter of decoder layer {i}; "
                            f"e.g. {', '.join(sorted(params)[:6])}")
