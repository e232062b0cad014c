"""Atomic file writes, config hashing and secret redaction."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

# a key is secret when it ends in "token" (hf_token, access_token; not max_new_tokens) or names a key,
# secret, password or credential
SECRET = re.compile(r"(token$|api[_-]?key|secret|password|passwd|credential)", re.IGNORECASE)
REDACTED = "<redacted>"


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def replace_dir(tmp: Path, final: Path, aside: Optional[str] = None) -> Path:
    """Replace ``final`` by ``tmp`` (the old copy, renamed ``aside`` (default ``<name>.old``) meanwhile, is removed
    only after the new one is in place)."""
    if final.exists():
        old = final.with_name(aside or final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


def redact(obj: Any) -> Any:
    """A copy with values of secret-looking keys (token, api_key, password, ...) replaced."""
    if isinstance(obj, dict):
        return {k: (REDACTED if SECRET.search(str(k)) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def redact_overrides(args: Iterable[str]) -> list:
    """Command-line ``key=value`` overrides with the values of secret-looking keys replaced."""
    return [_scrub(str(a)) for a in args]


_INLINE_SECRET = re.compile(r"([\w.+~]*(?:token|api[_-]?key\w*|secret\w*|password|passwd|credentials?))=([^,\s\]]+)",
                            re.IGNORECASE)


def _scrub(obj: Any) -> Any:
    if isinstance(obj, str):
        return _INLINE_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", obj)
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


def redact_yaml_file(path: Path) -> None:
    """Rewrite a YAML file (e.g. Hydra's multirun.yaml) with secrets redacted, atomically: secret
    keys, and ``key=value`` overrides embedded in strings (override lists, override_dirname)."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(_scrub(redact(data)))))


def stable_hash(obj: Any, length: int = 10) -> str:
    """Short sha256 of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def without(d: dict, keys: Iterable[str]) -> dict:
    return {k: v for k, v in d.items() if k not in set(keys)}
