"""``unlearn run -m hydra/launcher=slurm``: a sweep submitted through submitit to a fake Slurm.

The test writes fake ``sbatch``, ``srun``, ``sacct``, ``scancel`` and ``scontrol`` into a folder
put first on PATH. ``sbatch`` records the script and hands it to a detached runner that runs the
job (every task of an array) one after the other, under a lock, so only one unlearn job runs at
a time; it cannot run the job before returning, because submitit moves the job's pickle into
place only once ``sbatch`` has printed the job id. ``srun`` drops its options, redirects to the
``--output``/``--error`` files (with ``%A %a %j %t`` filled in) and execs the command; ``sacct``
answers in the ``--parsable2`` format submitit reads; ``scontrol requeue <id>`` makes the runner start that
task again once it has exited (with ``SLURM_RESTART_COUNT`` counting the restarts), as Slurm does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _faults import logged
from conftest import read_results, run_cli

FAST = ["skip=[eval_target,attack,eval_oracle]", "progress=false", "unlearn.steps=3",
        "~eval.metrics.answer_prob", "~eval.metrics.rouge_l", "eval.metrics.qa_acc.splits=[forget]"]

FAKE_SLURM = r'''
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_STATE"])
JOBS = STATE / "jobs"
NODE = "fakenode1"


def record(name, entry):
    with open(STATE / f"{name}.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def directives(text):
    """``#SBATCH --key=value`` lines of a batch script -> {key: value} (flags without value: True)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH"):
            key, sep, value = line[len("#SBATCH"):].strip().partition("=")
            out[key.lstrip("-")] = shlex.split(value)[0] if sep else True
    return out


def next_job_id(count):
    with open(STATE / "ids.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = STATE / "next_id"
        job_id = int(path.read_text()) if path.exists() else 4000
        path.write_text(str(job_id + count + 10))
    return job_id


def task_ids(job_id, opts):
    array = opts.get("array")
    if not array:
        return [(str(job_id), None)]
    m = re.fullmatch(r"(\d+)-(\d+)(%\d+)?", array)
    assert m, f"fake sbatch understands only --array=A-B[%k], got {array!r}"
    return [(f"{job_id}_{i}", i) for i in range(int(m.group(1)), int(m.group(2)) + 1)]


def sbatch(argv):
    script = Path(argv[-1])
    text = script.read_text()
    opts = directives(text)
    for arg in argv[:-1]:  # command-line options win over #SBATCH lines, as in Slurm
        key, sep, value = arg.lstrip("-").partition("=")
        opts[key] = value if sep else True
    tasks = task_ids(0, opts)
    job_id = next_job_id(len(tasks))
    tasks = task_ids(job_id, opts)
    JOBS.mkdir(exist_ok=True)
    for name, _ in tasks:
        (JOBS / name).write_text("PENDING")
    copy = STATE / f"job_{job_id}.sh"
    copy.write_text(text)
    record("sbatch", {"job_id": str(job_id), "argv": argv, "script": text, "directives": opts,
                      "tasks": [name for name, _ in tasks], "cwd": os.getcwd()})
    log = open(STATE / f"runner_{job_id}.log", "w")
    subprocess.Popen([sys.executable, os.path.abspath(__file__), "--fake-run", str(job_id), str(os.getpid())],
                     cwd=os.getcwd(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                     start_new_session=True)
    print(f"Submitted batch job {job_id}")


def fill(pattern, env):
    """Slurm's filename patterns: %A array job id, %a array index, %j job id, %t task rank."""
    values = {"A": env.get("SLURM_ARRAY_JOB_ID", env["SLURM_JOB_ID"]), "a": env.get("SLURM_ARRAY_TASK_ID", "0"),
              "j": env["SLURM_JOB_ID"], "t": env.get("SLURM_PROCID", "0"), "%": "%"}
    return re.sub(r"%([Aajt%])", lambda m: values[m.group(1)], pattern)


def run_job(job_id, sbatch_pid):
    while os.getppid() == sbatch_pid:  # pending until sbatch has returned, as on a real cluster
        time.sleep(0.1)
    job = next(json.loads(l) for l in (STATE / "sbatch.jsonl").read_text().splitlines()
               if json.loads(l)["job_id"] == job_id)
    opts = job["directives"]
    with open(STATE / "run.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one job at a time, across every sbatch call
        for offset, name in enumerate(job["tasks"]):
            env = dict(os.environ, SLURM_JOB_ID=str(int(job_id) + offset), SLURM_JOB_NAME=str(opts.get("job-name", "")),
                       SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NTASKS="1", SLURM_NPROCS="1",
                       SLURM_JOB_NUM_NODES="1", SLURM_NNODES="1", SLURM_JOB_NODELIST=NODE, SLURMD_NODENAME=NODE,
                       SLURM_SUBMIT_DIR=job["cwd"], SLURM_JOB_PARTITION=str(opts.get("partition", "default")))
            if "_" in name:
                env.update(SLURM_ARRAY_JOB_ID=job_id, SLURM_ARRAY_TASK_ID=name.split("_")[1],
                           SLURM_ARRAY_TASK_COUNT=str(len(job["tasks"])))
            out = Path(fill(str(opts.get("output", f"slurm-{name}.out")), env))
            err = Path(fill(str(opts.get("error", out)), env))
            for path in (out, err):
                path.parent.mkdir(parents=True, exist_ok=True)
            for restart in range(3):  # `scontrol requeue` runs the task again, as Slurm does after a preemption
                env["SLURM_RESTART_COUNT"] = str(restart)
                (JOBS / name).write_text("RUNNING")
                start = time.time()
                with open(out, "a") as o, open(err, "a") as e:
                    rc = subprocess.run(["bash", str(STATE / f"job_{job_id}.sh")], cwd=job["cwd"], env=env,
                                        stdin=subprocess.DEVNULL, stdout=o, stderr=e).returncode
                requeued = (STATE / f"requeue_{env['SLURM_JOB_ID']}").exists()
                record("runs", {"task": name, "rc": rc, "start": start, "end": time.time(), "requeued": requeued})
                if not requeued:
                    break
                (STATE / f"requeue_{env['SLURM_JOB_ID']}").unlink()
                (JOBS / name).write_text("PENDING")
            (JOBS / name).write_text("COMPLETED" if rc == 0 else "FAILED")


SRUN_VALUE_OPTS = {"-o", "--output", "-e", "--error", "-n", "--ntasks", "-N", "--nodes", "-c", "--cpus-per-task",
                   "-J", "--job-name", "-p", "--partition", "--gpus", "--gres", "--mem"}


def srun(argv):
    opts, i = {}, 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if "=" in arg:
            key, value = arg.split("=", 1)
            opts[key] = value
            i += 1
        elif arg in SRUN_VALUE_OPTS:
            opts[arg] = argv[i + 1]
            i += 2
        else:
            opts[arg] = True
            i += 1
    command = argv[i:]
    record("srun", {"argv": argv, "command": command, "job": os.environ.get("SLURM_JOB_ID")})
    out = opts.get("--output", opts.get("-o"))
    err = opts.get("--error", opts.get("-e"))
    if out:
        fd = os.open(fill(out, os.environ), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)
        if not err:
            os.dup2(fd, 2)
    if err:
        os.dup2(os.open(fill(err, os.environ), os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)
    os.execvp(command[0], command)


def sacct(argv):
    fields, ids, i = ["JobID", "State"], set(), 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-o", "--format"):
            fields, i = argv[i + 1].split(","), i + 2
        elif arg in ("-j", "--jobs"):
            ids.update(argv[i + 1].split(","))
            i += 2
        else:
            i += 1
    lines = ["|".join(fields)]
    for path in sorted(JOBS.iterdir()) if JOBS.exists() else []:
        if path.name.split("_")[0] not in ids and path.name not in ids:
            continue
        state = path.read_text()
        for job in (path.name, path.name + ".batch") if state in ("COMPLETED", "FAILED") else (path.name,):
            row = {"JobID": job, "State": state, "NodeList": NODE if state != "PENDING" else "None assigned"}
            lines.append("|".join(row.get(f, "") for f in fields))
    record("sacct", {"argv": argv, "output": lines})
    print("\n".join(lines))


def main():
    tool = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    if argv[:1] == ["--fake-run"]:
        return run_job(argv[1], int(argv[2]))
    if tool == "sbatch":
        return sbatch(argv)
    if tool == "srun":
        return srun(argv)
    if tool == "sacct":
        return sacct(argv)
    if tool == "scontrol" and argv[:1] == ["requeue"]:
        (STATE / f"requeue_{argv[1]}").write_text("")
    record(tool, {"argv": argv})  # scancel, scontrol: recorded (and a requeue marked for the runner)


main()
'''


def fake_slurm(tmp_path: Path) -> dict:
    bin_dir, state = tmp_path / "fake-slurm-bin", tmp_path / "fake-slurm-state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in ("sbatch", "srun", "sacct", "scancel", "scontrol"):
        path = bin_dir / tool
        path.write_text(f"#!{sys.executable}\n{FAKE_SLURM}")
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FAKE_SLURM_STATE": str(state)}


def records(state: Path, name: str) -> list:
    path = state / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finished_runs(state: Path, count: int, timeout: float = 60) -> list:
    """The runner's records of finished tasks once there are ``count`` (it writes one when a task's process has
    exited, which can be after the launcher has read that task's result and returned)."""
    deadline = time.time() + timeout
    while len(records(state, "runs")) < count and time.time() < deadline:
        time.sleep(0.05)
    return records(state, "runs")


def test_sweep_on_fake_slurm(cache_dir, tmp_path):
    env = fake_slurm(tmp_path)
    state = Path(env["FAKE_SLURM_STATE"])
    proc = run_cli(["run", "-m", "hydra/launcher=slurm", "method=ga,npo", "hydra.launcher.partition=testpart",
                    "hydra.launcher.gpus_per_node=1", "hydra.launcher.timeout_min=30", "+hf_token=hf_slurmsecret9",
                    *FAST], tmp_path, cache_dir, env_extra=env)

    # two sweep points -> two Slurm tasks (submitit submits them as one array)
    submissions = records(state, "sbatch")
    tasks = [t for s in submissions for t in s["tasks"]]
    assert len(tasks) == 2, submissions
    script = submissions[0]["script"]
    opts = submissions[0]["directives"]
    assert opts["partition"] == "testpart"
    assert opts.get("gpus-per-node") == "1" or opts.get("gres") == "gpu:1", script
    assert opts["time"] == "30"
    assert opts["signal"] == "USR2@120"  # preemption/timeout warning that submitit turns into a requeue
    assert opts["requeue"] is True
    assert opts["array"].startswith("0-1%")
    assert opts["job-name"] == "unlearn" and opts["nodes"] == "1" and opts["ntasks-per-node"] == "1"
    assert "srun " in script and "submitit.core._submit" in script
    assert records(state, "srun") and all(r["command"][-3:-1] == ["-m", "submitit.core._submit"]
                                          for r in records(state, "srun"))
    assert any("RUNNING" in "".join(r["output"]) for r in records(state, "sacct"))  # polled while running

    # the jobs ran one at a time and succeeded
    runs = sorted(finished_runs(state, 2), key=lambda r: r["start"])
    assert [r["rc"] for r in runs] == [0, 0]
    assert runs[0]["end"] <= runs[1]["start"]

    # results land in the sweep dir; submitit's files beside them
    sweep = tmp_path / "outputs" / "multirun" / "sweep"
    dirs = sorted(sweep.glob("fictional-*"))
    assert [d.name.split("-")[1] for d in dirs] == ["ga", "npo"], proc.stdout
    for d in dirs:
        result = read_results(d)
        assert result["status"] == "complete" and "unlearned/forget_qa_acc" in result["metrics"]
        assert "hf_slurmsecret9" not in (d / "config.yaml").read_text()
    assert "hf_slurmsecret9" not in (sweep / "multirun.yaml").read_text()
    for task in tasks:
        logs = "".join(p.read_text() for p in (sweep / ".submitit" / task).glob("*_log.*"))
        assert f"job_id={task}" in logs  # submitit read the job environment from SLURM_* variables
        assert "Job completed successfully" in logs


def test_failed_slurm_job_fails_the_sweep(cache_dir, tmp_path):
    """A job that fails on the cluster makes ``unlearn run`` exit non-zero (one point: a plain, non-array job)."""
    env = fake_slurm(tmp_path)
    state = Path(env["FAKE_SLURM_STATE"])
    proc = run_cli(["run", "-m", "hydra/launcher=slurm", "method=ga", "unlearn.lr=1e6", "+hf_token=hf_slurmsecret9",
                    *FAST], tmp_path, cache_dir, expect_ok=False, env_extra=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "non-finite" in proc.stderr
    [submission] = records(state, "sbatch")
    assert "array" not in submission["directives"] and submission["tasks"] == [submission["job_id"]]
    [run] = finished_runs(state, 1)
    assert run["rc"] == 0  # the job itself ended cleanly, reporting the failure through submitit's result
    [run_dir] = (tmp_path / "outputs" / "multirun" / "sweep").glob("fictional-*")
    assert read_results(run_dir)["status"].startswith("failed")
    assert "hf_slurmsecret9" not in (tmp_path / "outputs" / "multirun" / "sweep" / "multirun.yaml").read_text()


def _job_processes() -> list:
    """Pids of the running submitit job processes (``python -m submitit.core._submit ...``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"submitit.core._submit" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


@pytest.mark.slow
def test_usr2_checkpoints_requeues_and_the_requeued_job_resumes(cache_dir, tmp_path):
    """Slurm's warning signal (USR2) to a job mid-unlearning: the step finishes, a checkpoint is written, submitit
    re-pickles the job and calls ``scontrol requeue``; the job that runs again resumes from that checkpoint and
    ends with the metrics of the same run left alone."""
    env = fake_slurm(tmp_path)
    state = Path(env["FAKE_SLURM_STATE"])
    args = [*FAST, "method=ga", "unlearn.steps=400", "unlearn.log_every=1"]
    alone = tmp_path / "alone"
    run_cli(["run", *args, f"output_dir={alone}"], tmp_path, cache_dir)

    proc = subprocess.Popen([sys.executable, "-m", "unlearn_cli", "run", "-m", "hydra/launcher=slurm", *args],
                            cwd=tmp_path, env=dict(os.environ, UNLEARN_CACHE_DIR=str(cache_dir), WANDB_MODE="offline",
                                                   **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sweep = tmp_path / "outputs" / "multirun" / "sweep"
    deadline = time.time() + 600
    while time.time() < deadline and not any(logged(d, "unlearn", min_step=20) for d in sweep.glob("fictional-*")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    [job] = _job_processes()
    os.kill(job, signal.SIGUSR2)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]

    [run_dir] = sweep.glob("fictional-*")
    runs = finished_runs(state, 2)
    assert [r["requeued"] for r in runs] == [True, False] and runs[1]["rc"] == 0, runs
    assert [r["argv"][0] for r in records(state, "scontrol")] == ["requeue"]
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert 20 <= prov["resumed_from_step"] < 399  # the checkpoint USR2 asked for, not one after the last step
    assert read_results(run_dir)["status"] == "complete"
    assert read_results(run_dir)["metrics"] == read_results(alone)["metrics"]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs
