"""Integrity manifests of cached directories (prepared models, tokenizers) and of stored stage results.

``MANIFEST.json`` lists every other file of a directory with its size and sha256 and is written last, so a
directory whose manifest is present was written completely. :func:`damage` says, in words, what no longer
matches (a missing or truncated file, a changed checksum, no manifest at all); :func:`publish` seals a fully
written temp directory and moves it into place under a lock, replacing a damaged copy and keeping an intact
one another process published first -- safe for sweep jobs sharing one cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Optional

from unlearn_cli.files import atomic_write_json, replace_dir

NAME = "MANIFEST.json"
VERSION = 1
CHUNK = 8 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def entries(directory: Path, names: Optional[Iterable[str]] = None) -> Dict[str, dict]:
    """``{relative path: {"size", "mtime_ns", "sha256"}}`` of the files below ``directory`` (or of ``names`` in it)."""
    directory = Path(directory)
    files = [directory / n for n in names] if names is not None else \
        sorted(p for p in directory.rglob("*") if p.is_file() and p.name != NAME)
    out = {}
    for p in files:
        st = p.stat()
        out[str(p.relative_to(directory))] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256(p)}
    return out


def write(directory: Path, names: Optional[Iterable[str]] = None) -> None:
    """Write ``directory``'s manifest (after every file it lists is complete)."""
    atomic_write_json(Path(directory) / NAME, {"version": VERSION, "files": entries(directory, names)})


def check(directory: Path, files: Dict[str, dict]) -> Optional[str]:
    """None when every file of ``files`` (``entries``' form) is present below ``directory`` with its size and
    checksum; otherwise what is wrong, in words. Sizes are compared first; a file whose modification time is
    still the one recorded is taken as written (so loading a multi-GB cached checkpoint costs a ``stat``, not a
    full read, on every run); any other file is checksummed."""
    directory = Path(directory)
    stats = {}
    for rel, want in files.items():
        file = directory / rel
        if not file.is_file():
            return f"{rel} is missing"
        stats[rel] = file.stat()
        if stats[rel].st_size != want["size"]:
            return f"{rel} has {stats[rel].st_size} bytes, {want['size']} expected"
    for rel, want in files.items():
        if stats[rel].st_mtime_ns != want.get("mtime_ns") and sha256(directory / rel) != want["sha256"]:
            return f"{rel} does not match its checksum"
    return None


def damage(directory: Path) -> Optional[str]:
    """None when ``directory`` matches its manifest; otherwise what is wrong, in words."""
    path = Path(directory) / NAME
    if not path.is_file():
        return f"{NAME} is missing (written incompletely or by an older version)"
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{NAME} is unreadable"
    return check(directory, files)


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_dir(parent: Path) -> Path:
    """A new temp directory in ``parent`` named after this host and process (``.tmp-<host>-<pid>-...``)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{_owner()}-", dir=parent))


def sweep_stale(parent: Path) -> None:
    """Remove the temp and set-aside directories in ``parent`` that processes of this host left when they were
    killed (their process no longer exists); other hosts' are left alone."""
    host = socket.gethostname()
    for path in Path(parent).glob(".*"):
        for marker in (".tmp-", ".damaged-"):
            _, found, rest = path.name.partition(marker)
            if found and rest.startswith(f"{host}-"):
                pid = rest[len(host) + 1:].split("-", 1)[0]
                if pid.isdigit() and not _alive(int(pid)):
                    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def locked(final: Path):
    """An exclusive advisory lock on ``final`` (a sibling ``.<name>.lock`` file), released when the holder exits or dies."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def building(final: Path):
    """Build the entry ``final`` in a fresh temp directory (yielded); when the block succeeds it is sealed and
    published (:func:`publish`); the temp directory never outlives the block, and leftovers of dead builders on
    this host are swept first."""
    sweep_stale(final.parent)
    tmp = temp_dir(final.parent)
    try:
        yield tmp
        publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, final: Path) -> Path:
    """Seal ``tmp`` (write its manifest) and move it to ``final``: an intact ``final`` published meanwhile by
    another process is kept (``tmp`` is dropped), a damaged one is replaced."""
    write(tmp)
    with locked(final):
        if final.exists() and damage(final) is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return final
        replace_dir(tmp, final, aside=f".{final.name}.damaged-{_owner()}")
    return final
