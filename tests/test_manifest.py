"""Cache manifests: what :func:`manifest.damage` reports, how :func:`manifest.publish` treats an intact, a damaged
and a concurrently published entry, and which leftovers :func:`manifest.sweep_stale` removes."""

import json
import multiprocessing
import os
import socket
import subprocess
import sys

from unlearn_cli import manifest


def _entry(directory, weights=b"w" * 100, extra=b"{}"):
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "sub").mkdir()
    (directory / "sub" / "config.json").write_bytes(extra)
    return directory


def test_damage_names_what_no_longer_matches(tmp_path):
    d = _entry(tmp_path / "e")
    assert manifest.damage(d) == "MANIFEST.json is missing (written incompletely or by an older version)"
    manifest.write(d)
    files = json.loads((d / manifest.NAME).read_text())["files"]
    assert files["model.safetensors"]["size"] == 100 and set(files) == {"model.safetensors", "sub/config.json"}
    assert manifest.damage(d) is None
    (d / "model.safetensors").write_bytes(b"w" * 50)
    assert manifest.damage(d) == "model.safetensors has 50 bytes, 100 expected"
    (d / "model.safetensors").write_bytes(b"x" * 100)  # same size, other bytes
    assert manifest.damage(d) == "model.safetensors does not match its checksum"
    (d / "sub" / "config.json").unlink()
    assert manifest.damage(d) == "sub/config.json is missing"
    (d / manifest.NAME).write_text("{not json")
    assert manifest.damage(d) == "MANIFEST.json is unreadable"


def test_publish_keeps_an_intact_entry_and_replaces_a_damaged_one(tmp_path):
    final = tmp_path / "cache" / "entry"
    first = _entry(tmp_path / "first", weights=b"a" * 10)
    manifest.publish(first, final)
    assert (final / "model.safetensors").read_bytes() == b"a" * 10 and not first.exists()

    second = _entry(tmp_path / "second", weights=b"b" * 10)
    manifest.publish(second, final)  # another process got there first: its entry stays
    assert (final / "model.safetensors").read_bytes() == b"a" * 10 and not second.exists()

    (final / "model.safetensors").write_bytes(b"a")  # truncated
    third = _entry(tmp_path / "third", weights=b"c" * 10)
    manifest.publish(third, final)
    assert (final / "model.safetensors").read_bytes() == b"c" * 10 and manifest.damage(final) is None
    assert sorted(p.name for p in final.parent.iterdir()) == [".entry.lock", "entry"]  # nothing set aside is left


def _publish_from_child(args):
    root, tag = args
    final = manifest.Path(root) / "entry"
    tmp = manifest.temp_dir(final.parent)
    (tmp / "model.safetensors").write_bytes(tag.encode() * 1000)
    manifest.publish(tmp, final)
    return (final / "model.safetensors").read_bytes()[:1].decode()


def test_concurrent_publishers_agree_on_one_intact_entry(tmp_path):
    """Eight processes (no torch) build the same entry at once: all end up reading one complete copy."""
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        seen = pool.map(_publish_from_child, [(str(tmp_path), t) for t in "abcdefgh"])
    final = tmp_path / "entry"
    assert manifest.damage(final) is None
    assert set(seen) == {(final / "model.safetensors").read_bytes()[:1].decode()}
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".*damaged*"))


def test_sweep_stale_removes_only_dead_processes_leftovers_of_this_host(tmp_path):
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    names = [f".tmp-{host}-{dead}-abc", f".entry.damaged-{host}-{dead}", f".tmp-{host}-{os.getpid()}-def",
             f".tmp-otherhost-{dead}-ghi", "entry"]
    for name in names:
        (tmp_path / name).mkdir()
    manifest.sweep_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_an_untouched_entry_is_checked_without_reading_it_and_a_touched_one_is_checksummed(tmp_path, monkeypatch):
    d = _entry(tmp_path / "e")
    manifest.write(d)
    real = manifest.sha256
    read = []
    monkeypatch.setattr(manifest, "sha256", lambda p: read.append(p.name) or real(p))
    assert manifest.damage(d) is None and read == []  # sizes and modification times as recorded: a stat each
    os.utime(d / "model.safetensors", ns=(1, 1))  # touched, same bytes: checksummed, still intact
    assert manifest.damage(d) is None and read == ["model.safetensors"]
    (d / "model.safetensors").write_bytes(b"v" * 100)
    assert manifest.damage(d) == "model.safetensors does not match its checksum"
