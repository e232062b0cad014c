"""``unlearn run|list``: hands overrides to Hydra after validating every sweep point.

``unlearn run [-m] key=value ...`` composes the config groups with Hydra. Before anything runs,
each point of the sweep is composed and bound to its components, so a typo in a 100-point sweep
fails in a second with one line instead of in job 57 on Slurm.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import List

from unlearn_cli import interrupts, resolvers  # noqa: F401 - resolvers: registers ${pick:...} before any config resolves
from unlearn_cli.errors import UserError, suggest

GROUPS = ("model", "benchmark", "method", "optimizer", "attack", "plugin", "eval", "logger", "distributed", "experiment")
USAGE = """usage: unlearn run [-m|--multirun] [key=value ...]   run (or sweep) an experiment
       unlearn list [group]                           registered components and config options
       unlearn report DIR [--forget M] [--utility M]  table (markdown, CSV) + plots over every run in DIR
       unlearn --help"""


def conf_dir() -> Path:
    """``$UNLEARN_CONF_DIR`` or the ``conf/`` folder beside the package."""
    path = Path(os.environ.get("UNLEARN_CONF_DIR", Path(__file__).resolve().parent.parent / "conf"))
    if not (path / "config.yaml").exists():
        raise UserError(f"config directory '{path}' has no config.yaml; set UNLEARN_CONF_DIR")
    return path


def group_options(group: str) -> List[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


# -- validation ---------------------------------------------------------------------------------
GRAMMAR_HINT = ("key=value, lists as [a,b], sweeps as a,b, quotes around values with special characters; "
                "https://hydra.cc/docs/advanced/override_grammar/basic")


def parse_overrides(overrides: List[str]) -> list:
    """Hydra's parsed overrides; a grammar slip is one line naming the override, what the parser expected and
    the grammar's short form (instead of Hydra's multi-line parser dump)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser, parsed = OverridesParser.create(), []
    for ov in overrides:
        try:
            parsed.extend(parser.parse_overrides([ov]))
        except OverrideParseException as err:
            detail = " ".join(line for line in str(err).splitlines()
                              if not line.startswith(("Error parsing override", "See https")))
            detail = detail.split(" expecting {")[0]  # the token list Hydra adds is no help
            raise UserError(f"cannot parse override '{ov}': {detail} (grammar: {GRAMMAR_HINT})") from None
        if not parsed[-1].key_or_group:
            raise UserError(f"override '{ov}' has no key before '=' (grammar: {GRAMMAR_HINT})")
    return parsed


def _check_group_choices(overrides: List[str]) -> None:
    for ov in parse_overrides(overrides):
        group = ov.key_or_group
        if group not in GROUPS or ov.is_delete():
            continue
        values = ov.sweep_string_iterator() if ov.is_sweep_override() else [ov.value()]
        for value in values:
            for choice in (value if isinstance(value, list) else [value]):
                if choice is None:
                    continue
                options = group_options(group)
                if str(choice) not in options:
                    raise UserError(f"unknown {group} '{choice}';{suggest(choice, options)} known: {', '.join(options)}")


def _sweep_points(overrides: List[str], multirun: bool) -> List[List[str]]:
    """The overrides of every point a multirun launches: a preset's ``hydra.sweeper.params`` first, the command
    line's after them (a key given on both is swept by the command line, as Hydra's basic sweeper does)."""
    if not multirun:
        return [overrides]
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    try:
        params = compose(config_name="config", overrides=fixed, return_hydra_config=True).hydra.sweeper.params or {}
    except Exception:  # noqa: BLE001 - a composition error is reported for the point itself below
        params = {}
    preset = [f"{key}={value}" for key, value in params.items()]
    parsed = parser.parse_overrides(preset + overrides)
    return [point for batch in BasicSweeper.split_arguments(parsed, None) for point in batch]


def _compose_one(overrides: List[str]):
    from hydra import compose
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigKeyError

    try:
        return compose(config_name="config", overrides=overrides)
    except (ConfigCompositionException, ConfigKeyError) as err:
        raise UserError(_explain_compose_error(err, overrides)) from None


def _explain_compose_error(err: Exception, overrides: List[str]) -> str:
    """One line for a Hydra composition error; an unknown ``group.key`` lists the section's keys (and says when
    the key is a setting the preset leaves out, which needs a leading ``+``)."""
    from hydra import compose
    from omegaconf import DictConfig, OmegaConf

    from unlearn_cli.binding import signature_params
    from unlearn_cli.components import section_schema

    text = f"{err} {getattr(err, '__cause__', '') or ''}"
    for ov in overrides:
        key = ov.split("=", 1)[0].lstrip("+~")
        if "." not in key or (f"'{key}'" not in text and key.rsplit(".", 1)[1] not in text):
            continue
        parent, leaf = key.rsplit(".", 1)
        try:  # compose without the section's key overrides to list what the section does accept
            rest = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").startswith(f"{parent}.")]
            cfg = compose(config_name="config", overrides=rest)
            section, schema = OmegaConf.select(cfg, parent), section_schema(cfg, parent)
        except Exception:  # noqa: BLE001 - best effort, for the message only
            section, schema = None, None
        listed = [str(k) for k in section.keys() if k != "name"] if isinstance(section, DictConfig) else []
        settable = [k for k in signature_params(schema) if k not in listed] if schema is not None else []
        what = f"{parent} '{section.name}'" if isinstance(section, DictConfig) and "name" in section else f"'{parent}'"
        if leaf in settable:
            return (f"'{key}' is a setting of {what} that its config does not list: add it with a leading '+' "
                    f"('+{ov.lstrip('+~')}')")
        valid = listed + settable
        return f"unknown hyperparameter '{key}' for {what};{suggest(leaf, valid)} valid: {', '.join(valid)}"
    return " ".join(str(err).split())


def validate(overrides: List[str], multirun: bool) -> int:
    """Compose and bind every sweep point; returns the number of points."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from unlearn_cli import components, progress, rundir
    from unlearn_cli.models.build import check_paths

    progress.quiet_libraries()
    own = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    _check_group_choices(own)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        points = _sweep_points(own, multirun)
        for point in points:
            cfg = _compose_one(point)
            sweep_dir = f"{cfg.output_root}/multirun/{cfg.sweep_name}" if multirun else None
            built = components.build(cfg, sweep_dir)
            settings = built.settings
            check_paths(built.components.model)
            rundir.claim(settings.run_dir, settings.overwrite, settings.config_hash, create=False)
    GlobalHydra.instance().clear()
    return len(points)


# -- hydra entry --------------------------------------------------------------------------------
FAILED: List[str] = []


def _task(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from unlearn_cli import pipeline
    from unlearn_cli.train import distributed

    interrupts.install()  # again inside a submitit job, chaining to its requeue handler
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_dir = hc.sweep.dir if multirun else None
    try:
        if _needs_launch(cfg):
            _launch_distributed(cfg, list(hc.overrides.task), sweep_dir)
            return
        pipeline.run(cfg, sweep_dir)
    except (KeyboardInterrupt, interrupts.Interrupted) as err:
        if distributed.is_main():  # rank 0 speaks for the ranks
            print(f"error: {_interrupted(err, cfg, sweep_dir, list(hc.overrides.task))}", file=sys.stderr)
        raise SystemExit(interrupts.exit_code(err)) from None
    except UserError as err:
        if not multirun:
            _fail(str(err))
        print(f"error: job {hc.job.num}: {err}", file=sys.stderr)
        if os.environ.get("SUBMITIT_EXECUTOR"):
            raise  # a Slurm/submitit job runs in its own process: fail it so `unlearn run` sees the failure
        FAILED.append(str(err))


def _interrupted(err: BaseException, cfg, sweep_dir, overrides: List[str]) -> str:
    """One line: which signal stopped which stage, that finished work is kept, and the command that resumes."""
    from unlearn_cli import rundir
    from unlearn_cli.files import redact_overrides
    from unlearn_cli.train import checkpoint

    run_dir = rundir.resolve(cfg, sweep_dir)
    stage = getattr(err, "stage", None)
    where = f"during {stage}" if stage else "between stages"
    if stage != "unlearn":
        training = ""
    elif checkpoint.path(run_dir).exists():
        training = "; unlearning resumes from its last checkpoint"
    else:
        training = "; unlearning restarts from step 0 (checkpoint_every=N saves its progress)"
    command = " ".join(["unlearn", "run", *redact_overrides(overrides)])
    return (f"interrupted ({interrupts.signal_name(err)}) {where}: finished stages are kept in {run_dir} and nothing "
            f"half-written is left{training}; resume with: {command}")


def _needs_launch(cfg) -> bool:
    from unlearn_cli.train import distributed

    return int(cfg.distributed.get("nproc_per_node", 1)) > 1 and not distributed.inside_launch()


def _launch_distributed(cfg, overrides: List[str], sweep_dir) -> None:
    """Re-run this job under ``torchrun`` with ``nproc_per_node`` ranks on this node.

    The ranks get the job's own overrides plus its run dir, so a sweep point keeps the dir it
    would have had; ``torchrun`` passes ranks through the environment (no ``--local_rank``).
    """
    from unlearn_cli import rundir

    run_dir = rundir.resolve(cfg, sweep_dir)
    n = int(cfg.distributed.nproc_per_node)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "unlearn_cli", "run", *[o for o in overrides if not o.startswith("output_dir=")],
           f"output_dir={run_dir}"]
    print(f"launching {n} processes: torchrun --standalone --nproc_per_node={n} -m unlearn_cli run ...", flush=True)
    try:
        code = interrupts.run_ranks(cmd)
    except interrupts.Interrupted as err:  # the ranks said what stopped and how to resume
        raise SystemExit(interrupts.exit_code(err)) from None
    if code != 0:
        raise UserError(f"distributed run exited with code {code} (see the ranks' output above)")


def _hydra_main(argv: List[str]) -> None:
    import hydra

    sys.argv = ["unlearn"] + argv
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)()


def cmd_run(argv: List[str]) -> None:
    interrupts.install()
    multirun = any(a in ("-m", "--multirun") for a in argv)
    flags = [a for a in argv if a.startswith("-") and a not in ("-m", "--multirun")]
    overrides = [a for a in argv if not a.startswith("-")]
    if not flags:
        validate(overrides, multirun)
    try:
        _hydra_main(argv)
    finally:  # also when a launcher (submitit) reports a failed job by raising
        if multirun:
            _redact_sweep_files(overrides)
    if FAILED:
        _fail(f"{len(FAILED)} sweep job(s) failed; first: {FAILED[0]}", code=1)


def _redact_sweep_files(overrides: List[str]) -> None:
    """Hydra saves the sweep's config and overrides to multirun.yaml; strip secrets from it."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from unlearn_cli.files import redact_yaml_file

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = _compose_one([o for o in overrides if o.split("=", 1)[0].lstrip("+~") in ("output_root", "sweep_name")])
    GlobalHydra.instance().clear()
    path = Path(str(cfg.output_root)).expanduser() / "multirun" / str(cfg.sweep_name) / "multirun.yaml"
    if path.exists():
        redact_yaml_file(path)


def cmd_list(argv: List[str]) -> None:
    from unlearn_cli.registry import ALL

    groups = argv or list(GROUPS)
    for group in groups:
        if group not in GROUPS:
            raise UserError(f"unknown group '{group}';{suggest(group, GROUPS)} known: {', '.join(GROUPS)}")
        print(f"{group}:")
        registry = ALL.get(group)
        docs = dict(registry.summaries()) if registry else {}
        for option in group_options(group):
            print(f"  {option:<16} {docs.get(option, _yaml_description(group, option))}")
        if group == "eval":
            print("  metrics:")
            for name, doc in ALL["metric"].summaries():
                print(f"    {name:<14} {doc}")


def cmd_report(argv: List[str]) -> None:
    import argparse

    from unlearn_cli.report import report

    parser = argparse.ArgumentParser(prog="unlearn report")
    parser.add_argument("dir")
    parser.add_argument("--forget", default="forget_qa_acc", help="forget metric (lower = better)")
    parser.add_argument("--utility", default="retain_qa_acc", help="utility metric (higher = better)")
    args = parser.parse_args(argv)
    report(Path(args.dir), args.forget, args.utility)


def _yaml_description(group: str, option: str) -> str:
    for line in (conf_dir() / group / f"{option}.yaml").read_text().splitlines():
        if line.startswith("# ") and not line.startswith("# @package"):
            return line[2:].strip()
    return ""


def main(argv: List[str] | None = None) -> None:
    argv_given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    cmd, rest = argv[0], argv[1:]
    commands = {"run": cmd_run, "list": cmd_list, "report": cmd_report}
    try:
        if cmd not in commands:
            raise UserError(f"unknown command '{cmd}';{suggest(cmd, commands)} known: {', '.join(commands)}")
        commands[cmd](rest)
        if argv_given is None:  # the program itself, about to exit (not a caller of main() going on)
            # the interpreter's last garbage collection walks every object torch and transformers made (about
            # 0.5 s); freezing them skips that walk (files and loggers are closed by now; atexit handlers still run)
            gc.freeze()
    except UserError as err:
        _fail(str(err))
    except (KeyboardInterrupt, interrupts.Interrupted) as err:  # before a run started (validation, launch)
        _fail(f"interrupted ({interrupts.signal_name(err)}) before the run started; nothing was written",
              code=interrupts.exit_code(err))


if __name__ == "__main__":
    main()
