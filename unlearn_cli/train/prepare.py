"""Prepare stage: the target model (trained on forget + retain) and the oracle (retain only).

For ``model.kind=tiny`` (trained from scratch on any benchmark with forget and retain data) and for a
pretrained base with ``prepare.finetune=true``; otherwise the run names its checkpoints. Artifacts are cached under ``<cache_dir>/prepared/<name>-<key>`` where
the key hashes everything that determines them (benchmark settings, model spec, recipe, seed,
role, recipe version); they are written to a temp dir, sealed with a manifest of every file's size and
checksum (``unlearn_cli.manifest``) and renamed into place, so a crash never leaves a half-written cache entry
and concurrent sweep jobs cannot corrupt each other's. An entry that no longer matches its manifest
(truncated, edited, half-deleted) is reported in one warning and rebuilt.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from unlearn_cli.data.encoding import encode_qa
from unlearn_cli.data.items import TextWindows
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.errors import UserError
from unlearn_cli import manifest
from unlearn_cli.files import atomic_write_json, stable_hash
from unlearn_cli.models import build as models
from unlearn_cli.train.sft import finetune

RECIPE_VERSION = 1
TOKENIZER_VERSION = 2  # 2: encoding with add_special_tokens=True prepends <bos>, as Llama's does

log = logging.getLogger("unlearn_cli")


def _entry(cache_dir: Path, name: str, key_obj: dict) -> Path:
    return Path(cache_dir).expanduser() / "prepared" / f"{name}-{stable_hash(key_obj, 12)}"


def _intact(final: Path) -> bool:
    """Whether the cache entry ``final`` exists and matches its manifest; a damaged one is reported in one
    warning line (the caller rebuilds it)."""
    if not final.exists():
        return False
    problem = manifest.damage(final)
    if problem is None:
        return True
    log.warning("cache entry %s is damaged (%s); rebuilding it", final, problem)
    return False


def tokenizer_for(cache_dir: Path, benchmark_key: dict, corpus, vocab_size: int) -> Path:
    """Cached BPE tokenizer trained on the benchmark's text."""
    key = {"v": RECIPE_VERSION, "tokenizer_version": TOKENIZER_VERSION, "benchmark": benchmark_key,
           "vocab_size": vocab_size}
    final = _entry(cache_dir, f"{benchmark_key['name']}-tokenizer", key)
    if not _intact(final):
        with manifest.building(final) as tmp:
            train_bpe_tokenizer(corpus, vocab_size).save_pretrained(tmp)
            atomic_write_json(tmp / "prepared.json", key)
    return final


def load_tokenizer(path: Path):
    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    tok.padding_side = "left"
    return tok


def prepared_model(role: str, train_items: Dict[str, list], *, cache_dir: Path, benchmark_key: dict,
                   spec: models.ModelSpec, base: Callable, recipe: dict, train_settings, optimizer_spec,
                   seed: int, log: Callable, device, windows: TextWindows = TextWindows()) -> Path:
    """Path of the cached ``role`` model (target / oracle): ``base()`` -> (model, tokenizer) fine-tuned on
    ``train_items`` with ``train_settings`` and ``optimizer_spec``, built first if absent."""
    key = {"v": RECIPE_VERSION, "role": role, "benchmark": benchmark_key, "model": asdict(spec),
           "recipe": recipe, "seed": seed, "splits": sorted(train_items)}
    final = _entry(cache_dir, f"{benchmark_key['name']}-{role}", key)
    if _intact(final):
        return final
    model, tok = base()
    model.to(device)
    items = [it for split in sorted(train_items) for it in train_items[split]]
    encoded = encode_qa(tok, items, models.prompt_format(spec, tok), windows=windows.capped(models.context_length(model)))
    start = time.perf_counter()
    last = finetune(model, {"train": encoded}, train_settings, optimizer_spec, seed=seed,
                    pad_id=tok.pad_token_id, stage=f"prepare {role}", log=log, device=device)
    with manifest.building(final) as tmp:
        models.save(model.cpu().to(models.DTYPES[spec.dtype]), tok, tmp)  # in the dtype the run loads
        atomic_write_json(tmp / "prepared.json", {"key": key, "final_train": last,
                                                  "seconds": round(time.perf_counter() - start, 2)})
    return final


def load_prepared(path: Path, spec: models.ModelSpec):
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=models.DTYPES[spec.dtype], use_safetensors=True)
    return model, load_tokenizer(path)


def describe(path: Path) -> dict:
    return json.loads((Path(path) / "prepared.json").read_text())


def target_and_oracle(data, spec: models.ModelSpec, benchmark, prepare, cache_dir: Path, want_oracle: bool,
                      log: Callable, device) -> Tuple[object, Optional[Path]]:
    """(target path or hub id, oracle path or None) of a run.

    ``model.kind=tiny`` builds (or finds cached) a tokenizer trained on the benchmark's text, the
    target trained from scratch on its ``forget`` + ``retain`` training splits and, when ``want_oracle``,
    the oracle on ``retain`` only (``prepare.train``; ``prepare``: ``components.PrepareSpec``).
    ``model.kind=pretrained`` names its checkpoint in ``model.path`` and its oracle in
    ``model.oracle_path``, or, with ``prepare.finetune``, fine-tunes ``model.path`` into both with the
    benchmark's fine-tuning recipe (``prepare.finetune_train``, ``prepare.finetune_optimizer``; TOFU: 5
    epochs, lr 1e-5, effective batch 32), cached like the tiny ones.
    """
    if spec.kind not in ("tiny", "pretrained"):
        raise UserError(f"model.kind must be 'tiny' or 'pretrained', got '{spec.kind}'")
    if spec.kind == "pretrained" and not prepare.finetune:
        if not spec.path:
            raise UserError("model.kind=pretrained needs model.path (a local directory or a Hugging Face id)")
        return spec.path, (spec.oracle_path if want_oracle else None)
    if spec.oracle_path:
        raise UserError("model.oracle_path names a given oracle; model.kind=tiny and prepare.finetune=true train "
                        "their own on the benchmark's retain split (drop one of the two)")
    for split in ("forget", "retain"):
        if split not in data.train:
            reason = data.missing.get(split) or f"it has {', '.join(sorted(data.train)) or 'no training split'}"
            raise UserError(f"{'model=tiny' if spec.kind == 'tiny' else 'prepare.finetune'} trains its target on the "
                            f"benchmark's forget + retain training splits (the oracle on retain); benchmark "
                            f"'{data.name}' has no '{split}' split: {reason}")
    key = benchmark.cache_key()
    if spec.kind == "tiny":
        tok_dir = tokenizer_for(cache_dir, key, data.corpus, spec.vocab_size)

        def base():
            tok = load_tokenizer(tok_dir)
            return models.build_tiny(spec, len(tok), tok, prepare.seed), tok
        recipe = dict(train_settings=prepare.train, optimizer_spec=prepare.optimizer)
    else:
        def base():
            return models.load_pretrained(spec.path, spec)
        recipe = dict(train_settings=prepare.finetune_train, optimizer_spec=prepare.finetune_optimizer)
    common = dict(cache_dir=cache_dir, benchmark_key=key, spec=spec, base=base, recipe=prepare.recipe,
                  seed=prepare.seed, log=log, device=device, windows=data.windows, **recipe)
    target = prepared_model("target", data.train, **common)
    oracle = prepared_model("oracle", {"retain": data.train["retain"]}, **common) if want_oracle else None
    return target, oracle


def load_model(path, spec: models.ModelSpec, device, key: str = "model.path"):
    """(model on ``device`` in eval mode, tokenizer) of a prepared tiny model or of a pretrained (or
    prepared pretrained) checkpoint (``key``: the setting that named it, for error messages)."""
    model, tok = load_prepared(path, spec) if spec.kind == "tiny" else models.load_pretrained(path, spec, key)
    model.to(device).eval()
    return model, tok


def load_oracle(path, spec: models.ModelSpec, target, device):
    """The oracle model at ``path``, scored with the target's tokenizer: UserError unless the vocabularies match."""
    oracle, _ = load_model(path, spec, device, "model.oracle_path")
    mine, theirs = oracle.get_input_embeddings().num_embeddings, target.get_input_embeddings().num_embeddings
    if mine != theirs:
        raise UserError(f"model.oracle_path '{path}' has a {mine}-token vocabulary, the target {theirs}; "
                        f"the oracle must share the target's tokenizer")
    return oracle
