"""Model construction, loading and saving (safetensors, no remote code unless asked)."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
from safetensors import SafetensorError
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from unlearn_cli.bounds import PositiveInt
from unlearn_cli.data.encoding import PromptFormat
from unlearn_cli.errors import UserError, check_local_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelSpec:
    """The ``model`` config group.

    ``kind: tiny`` builds a small model of ``architecture`` (llama, mistral or qwen2: the layouts
    of the real models the presets name) from the fields below, with a tokenizer trained on the
    benchmark's text; ``kind: pretrained`` loads ``path`` (a local dir or a Hugging Face id) and,
    when given, the retain-only ``oracle_path`` (e.g. TOFU's ``retain90`` checkpoint; same vocabulary),
    evaluated as stage ``oracle``. Prompts: ``prompt_template`` (the answer follows it directly, so it
    carries its separator), or the tokenizer's chat template with ``chat_template: on`` (``auto``: when
    the tokenizer has one), a ``system_prompt`` and the ``date_string`` the model was fine-tuned with;
    ``answer_boundary`` decides where the supervised answer starts (``data.encoding``).
    """

    kind: str = "tiny"
    path: Optional[str] = None
    oracle_path: Optional[str] = None
    tokenizer_path: Optional[str] = None
    architecture: str = "llama"
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 2
    num_heads: PositiveInt = 4
    num_kv_heads: Optional[PositiveInt] = None
    intermediate_size: PositiveInt = 512
    vocab_size: PositiveInt = 1024
    max_positions: PositiveInt = 256
    dtype: str = "float32"
    prompt_template: str = "Question: {question}\nAnswer: "
    chat_template: Literal["off", "auto", "on"] = "off"
    system_prompt: Optional[str] = None
    date_string: Optional[str] = None
    answer_boundary: Literal["offsets", "prompt_length"] = "offsets"
    trust_remote_code: bool = False
    attn_implementation: Optional[str] = None

    def __post_init__(self):
        if self.kind == "tiny" and self.hidden_size % self.num_heads:
            raise UserError(f"model.hidden_size={self.hidden_size} must be a multiple of model.num_heads={self.num_heads}")
        if self.kind == "tiny" and self.num_kv_heads and self.num_heads % self.num_kv_heads:
            raise UserError(f"model.num_heads={self.num_heads} must be a multiple of model.num_kv_heads="
                            f"{self.num_kv_heads}")



def check_paths(spec: ModelSpec) -> None:
    """A local ``model.path``, ``model.oracle_path`` or ``model.tokenizer_path`` that does not exist is one
    UserError naming it (the CLI checks this before any run starts; hub ids are left to the loader)."""
    for key in ("path", "oracle_path", "tokenizer_path"):
        check_local_path(f"model.{key}", getattr(spec, key))


def prompt_format(spec: ModelSpec, tokenizer) -> PromptFormat:
    """The model's prompt layout; UserError for ``chat_template: on`` with a tokenizer that has none."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if spec.chat_template == "on" and not has_chat:
        raise UserError("model.chat_template=on but the tokenizer has no chat template; use model.chat_template=off "
                        "with a model.prompt_template")
    chat = spec.chat_template == "on" or (spec.chat_template == "auto" and has_chat)
    return PromptFormat(spec.prompt_template, chat, spec.system_prompt, spec.date_string, spec.answer_boundary)


def context_length(model) -> Optional[int]:
    """The model's maximum sequence length (``max_position_embeddings``), if it declares one."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def device() -> torch.device:
    """CUDA when available, else CPU (the LOCAL_RANK device under torchrun)."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


ARCHITECTURES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}


def build_tiny(spec: ModelSpec, vocab: int, tokenizer, seed: int):
    """A freshly initialised small decoder of ``spec.architecture`` sized to the tokenizer."""
    if spec.architecture not in ARCHITECTURES:
        raise UserError(f"model.architecture '{spec.architecture}' cannot be built locally; "
                        f"valid: {', '.join(ARCHITECTURES)}")
    config_cls, model_cls = ARCHITECTURES[spec.architecture]
    cfg = config_cls(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads or spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(cfg)
    return model.to(DTYPES[spec.dtype])


def load_pretrained(path: str, spec: ModelSpec, key: str = "model.path"):
    """Load model + tokenizer from a directory or hub id (safetensors only by default); a missing directory or
    unreadable (truncated, damaged) weights are one UserError naming ``key`` and the path."""
    check_local_path(key, path)
    kwargs = dict(dtype=DTYPES[spec.dtype], trust_remote_code=spec.trust_remote_code, use_safetensors=True)
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, SafetensorError) as err:
        detail = " ".join(str(err).split())
        raise UserError(f"{key} '{path}': its weights cannot be loaded ({detail[:300]}); replace the damaged files "
                        f"(a given checkpoint is not rebuilt)") from None
    tok = AutoTokenizer.from_pretrained(spec.tokenizer_path or path, trust_remote_code=spec.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model, tok


def save(model, tokenizer, directory: Path) -> None:
    """HF format with safetensors weights."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


def frozen_copy(model):
    """A detached, eval-mode, no-grad copy (the reference model theta_0)."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def unwrap(model):
    """The HF model inside a DDP / DeepSpeed wrapper."""
    from transformers import PreTrainedModel

    while not isinstance(model, PreTrainedModel) and isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model
