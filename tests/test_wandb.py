"""``logger=wandb``: how the mode is chosen, what an offline run records, and no network.

The offline run is read back from its ``.wandb`` transaction log (wandb writes no
``wandb-summary.json`` for offline runs): a LevelDB-style log of protobuf ``Record`` messages.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_results
from unlearn_cli.loggers.wandb import resolve_mode

FAST = ["skip=[eval_target,attack,eval_oracle]", "progress=false", "unlearn.steps=3",
        "~eval.metrics.answer_prob", "~eval.metrics.rouge_l", "eval.metrics.qa_acc.splits=[forget]"]
SECRET = "hf_wandbsecret7"


# -- resolve_mode -------------------------------------------------------------------------------
@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    """No W&B variables, and a HOME without ~/.netrc."""
    for key in list(os.environ):
        if key.startswith("WANDB_") or key == "NETRC":
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_resolve_mode_auto_is_offline_without_credentials(no_wandb_env):
    assert resolve_mode("auto") == "offline"
    (no_wandb_env / ".netrc").write_text("machine example.org login x password y\n")
    assert resolve_mode("auto") == "offline"


def test_resolve_mode_auto_is_online_with_a_key(no_wandb_env, monkeypatch):
    (no_wandb_env / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert resolve_mode("auto") == "online"
    (no_wandb_env / ".netrc").unlink()
    netrc = no_wandb_env / "elsewhere.netrc"
    netrc.write_text("machine api.wandb.ai login user password abc\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert resolve_mode("auto") == "online"
    monkeypatch.delenv("NETRC")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode("auto") == "online"


def test_resolve_mode_explicit_yaml_mode_and_env_override(no_wandb_env, monkeypatch):
    for mode in ("offline", "online", "disabled"):
        assert resolve_mode(mode) == mode
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("auto") == "offline" and resolve_mode("online") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("offline") == "disabled"


# -- end to end -----------------------------------------------------------------------------------
def run_unlearn(args, cwd: Path, cache: Path, home: Path, **env_extra):
    """``python -m unlearn_cli`` with no W&B settings from the outer environment and an empty HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    env.update(UNLEARN_CACHE_DIR=str(cache), HOME=str(home), **env_extra)
    home.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "unlearn_cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - start
    assert proc.returncode == 0, f"failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, wall


def wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic 0xBEE1, version),
    then 32 KiB blocks of chunks, each ``crc32 (4) | length (2) | type (1) | data``; a record is one
    FULL chunk or FIRST, MIDDLE..., LAST; a block tail shorter than a chunk header is padding."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, (ident, magic)
    block, pos, parts = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0:  # zero padding
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def read_offline_run(run_dir: Path) -> dict:
    [offline] = (run_dir / "wandb").glob("offline-run-*")
    [log] = offline.glob("run-*.wandb")
    out = {"dir": offline, "summary": {}, "config": {}, "history": [], "name": None, "exit": None}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["name"] = record.run.display_name
            out["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in record.summary.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "exit":
            out["exit"] = record.exit.exit_code
    return out


def files_containing(root: Path, text: str):
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("wandb-offline")
    run_dir = tmp / "run"
    proc, wall = run_unlearn(["run", "logger=wandb", f"output_dir={run_dir}", f"+hf_token={SECRET}", *FAST],
                             tmp, cache_dir, tmp / "home")
    return run_dir, proc, wall


def test_offline_run_records_summary_history_and_redacted_config(offline_run):
    run_dir, proc, _ = offline_run
    results = read_results(run_dir)
    assert results["status"] == "complete"
    assert "wandb" not in proc.stderr  # no key, no WANDB_MODE: offline without a warning
    assert not list((run_dir / "wandb").glob("run-*"))  # no online attempt
    run = read_offline_run(run_dir)
    assert run["name"] == results["run_name"] and run["exit"] == 0
    assert results["metrics"] and all(run["summary"][k] == pytest.approx(v) for k, v in results["metrics"].items())
    steps = [h["unlearn/loss"] for h in run["history"] if "unlearn/loss" in h]
    assert len(steps) == 3 and all(isinstance(v, float) for v in steps)
    assert run["config"]["method"]["name"] == "simnpo" and run["config"]["hf_token"] == "<redacted>"
    assert not files_containing(run_dir, SECRET)  # nor in W&B's copy of the command line


def test_online_without_network_completes_in_bounded_time(offline_run, cache_dir, tmp_path):
    """WANDB_MODE=online with a key but nothing listening at the W&B server: init gives up after
    ``logger.init_timeout`` (20 s by default, 4 s here), the run is logged offline instead, and the run
    completes."""
    _, _, offline_wall = offline_run
    run_dir = tmp_path / "run"
    proc, wall = run_unlearn(["run", "logger=wandb", "logger.init_timeout=4", f"output_dir={run_dir}",
                              f"+hf_token={SECRET}", *FAST],
                             tmp_path, cache_dir, tmp_path / "home", WANDB_MODE="online", WANDB_API_KEY="0" * 40,
                             WANDB_BASE_URL="http://127.0.0.1:9")
    assert read_results(run_dir)["status"] == "complete"
    assert wall < offline_wall + 30, (wall, offline_wall)
    assert proc.stderr.count("wandb online init failed") == 1, proc.stderr[-3000:]
    assert "continuing without W&B" not in proc.stderr
    run = read_offline_run(run_dir)  # the fallback offline run, ready for `wandb sync`
    assert run["summary"]["unlearned/forget_qa_acc"] == pytest.approx(
        read_results(run_dir)["metrics"]["unlearned/forget_qa_acc"])
    assert not files_containing(run_dir, SECRET)
