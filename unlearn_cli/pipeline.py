"""THE run, top to bottom: one method call per stage.

compose (cli) -> validate into a Plan (components + run settings; the raw config is not read again)
-> open the run (seed, run dir, provenance, logger) -> load the benchmark -> prepare target/oracle
(cached, locally built tiny targets only) -> eval oracle (first: later stages compare with its
memoised values) -> eval target -> unlearn -> eval unlearned -> attack(s), each evaluated as its own
stage named by its id -> plots + summary -> results.json (last). Stages listed in ``skip`` are not run;
evaluation and attacks run on rank 0 only.

Every finished evaluation, attack and unlearning stage leaves a record (``stage_records``); re-running the
same command after a crash, a kill or a requeue reads the finished ones back (an oracle or target stage as a
stored baseline) instead of redoing them, resumes unlearning from its last checkpoint (``checkpoint_every``),
and skips unlearning altogether when every stage that needs the unlearned model has finished. A run whose
results are complete is not redone (``overwrite=true`` starts it over).
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Dict, Optional

import torch
from omegaconf import DictConfig

from unlearn_cli import components, eval_cache, manifest, progress
from unlearn_cli.attacks.context import AttackContext
from unlearn_cli.data.encoding import encode_qa
from unlearn_cli.errors import NonFiniteLossError
from unlearn_cli.eval import stored
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.eval.scorer import Baselines
from unlearn_cli.eval.suite import EvalSuite
from unlearn_cli.eval_cache import EvalCache
from unlearn_cli.loggers.none import NoLogger
from unlearn_cli.models import build as models
from unlearn_cli.outputs import RunOutputs
from unlearn_cli.provenance import Provenance
from unlearn_cli.seeding import STAGE_SEEDS, seed_everything
from unlearn_cli.summary import print_summary
from unlearn_cli.train import checkpoint, distributed, prepare, unlearn
from unlearn_cli.train.settings import autocast_factory
from unlearn_cli.worst_case import forget_side_split, worst_case


class Run:
    """One unlearning run; ``execute()`` performs every stage and returns the run directory."""

    def __init__(self, cfg: DictConfig, sweep_dir: Optional[str] = None):
        plan = components.build(cfg, sweep_dir)
        self.c, self.s = plan.components, plan.settings
        self.device = models.device()
        self.autocast = autocast_factory(self.c.unlearn.precision, self.device)
        self.metrics: Dict[str, float] = {}
        self.artifacts: Dict[str, dict] = {}
        self.oracle_source: Optional[Path] = None  # the rows of oracle_results's oracle, once read

    def execute(self) -> Path:
        with self._session() as state:
            if state == "complete":
                progress.console.print(f"already complete: {self.s.run_dir / 'results.json'} "
                                       f"(overwrite=true runs it again)")
                return self.s.run_dir
            for attack in self.c.attacks.values():  # before anything trains
                attack.check(self.device)
            with self.provenance.stage("load_data"):
                data = self.c.benchmark.load()
                self.eval_data = eval_cache.data_digest(data) if self.s.cache_eval and self.main else ""
                self.forget_prefixes = data.forget_prefixes
                self.train_items = data.train
                self.forget_splits = tuple(s for s in (*data.qa, *data.mcq, *data.texts)
                                           if forget_side_split(s, data.forget_prefixes))
                unlearn.check_data(data, self.c.method, self.s.method_name, self.s.benchmark_name)
                for attack in self.c.attacks.values():
                    attack.check_data(data, self.forget_splits)
            with self.provenance.stage("prepare"), distributed.main_first():
                target, oracle = prepare.target_and_oracle(
                    data, self.c.model, self.c.benchmark, self.c.prepare, self.s.cache_dir,
                    self.s.runs("eval_oracle") and self.s.oracle_results is None, self._log, self.device)
            self.provenance.set("prepared", {"target": str(target), "oracle": str(oracle) if oracle else None})
            model, self.tok = prepare.load_model(target, self.c.model, self.device)
            self.c.method.check_model(model)
            self._encode(data, model)
            if self.s.runs("eval_oracle") and self.main:
                self._oracle(oracle, target, model)
            if self.s.runs("eval_target") and self.main:
                self._baseline("target", [target], lambda: model)
            if self.s.runs("unlearn"):
                if self._unlearned_needed():
                    model = self._unlearn(model, data, target)
                else:
                    self._restore("unlearn")
                if not self.main:  # other ranks are done: evaluation and attacks run on rank 0
                    return self.s.run_dir
                if self.s.runs("eval_unlearned") and not self._restore("unlearned"):
                    self._evaluate("unlearned", model)
            if self.s.runs("attack"):
                for attack_id, attack in self.c.attacks.items():
                    self._attack(attack_id, attack, model)
            self._finish(model)
        print_summary(self.metrics, self.s.run_name)
        progress.console.print(f"results: {self.s.run_dir / 'results.json'}")
        return self.s.run_dir

    # -- stages ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self):
        """Threads, process group, run dir, provenance and logger for the run's lifetime."""
        progress.quiet_libraries()
        progress.set_enabled(self.s.progress)
        if self.s.threads:
            torch.set_num_threads(int(self.s.threads))
        distributed.init(self.c.distributed)
        self.main = distributed.is_main()
        self.provenance = Provenance(self.s.seed, self.device)
        self.outputs = RunOutputs(self.s, self.main)
        self.eval_cache = EvalCache(self.s.cache_dir, self.s.cache_eval)
        state = self.outputs.open()  # only rank 0 writes; every rank derives the same run dir from the config
        self.done = {}  # the finished stages a resumed run reads back (rank 0)
        if state == "resume" and self.main:
            names = ["oracle", "target", "unlearn", "unlearned", *self.c.attacks]
            self.done = {n: r for n in names if (r := self.outputs.finished_stage(n)) is not None}
        if not self.main:
            progress.set_enabled(False)
        self.provenance.set("world_size", distributed.world_size())
        self.logger = self.c.logger if self.main and state != "complete" else NoLogger()
        self.logger.start(self.s.run_dir, self.s.run_name, self.s.config, group=self.s.sweep_name,
                          resume=state == "resume")
        try:
            yield state
        finally:
            self.logger.close()
            distributed.shutdown()

    def _log(self, stage: str, step: int, values: dict) -> None:
        self.logger.log(stage, step, values)

    def _encode(self, data, model) -> None:
        """Token ids of the training splits and the evaluation suite (its splits checked here)."""
        self.format = models.prompt_format(self.c.model, self.tok)
        windows = data.windows.capped(models.context_length(model))
        self.train_encoded = {k: encode_qa(self.tok, v, self.format, windows=windows) for k, v in data.train.items() if v}
        inputs = EvalInputs(self.tok, self.format, data.qa, data.mcq, data.texts, self.c.decode.max_text_tokens,
                            data.published)
        self.suite = EvalSuite(self.c.metrics, inputs, self.c.decode, self.s.benchmark_name)

    def _evaluate(self, stage: str, model, view=None, timed=()) -> None:
        """Every metric on ``model`` at ``stage`` (through one shared scorer; ``view``: an input attack's), recorded
        as a finished stage (with the wall times of the provenance stages ``timed`` that led to it)."""
        with self.provenance.stage(f"eval_{stage}"):
            result = self.suite.evaluate(stage, model, self.autocast, view)
        if result.artifacts:
            self.artifacts[stage] = result.artifacts
        self.outputs.examples(stage, result.examples)
        keyed = {f"{stage}/{k}": v for k, v in result.values.items()}
        self.metrics.update(keyed)
        self._log("eval", 0, keyed)
        self.outputs.stage_done(stage, dict(result.values), self.provenance.seconds(*timed, f"eval_{stage}"),
                                result.artifacts, files=[f"examples/{stage}.jsonl"])

    def _restore(self, stage: str) -> bool:
        """Read a stage this run finished before it was interrupted back from its record; False if it has none."""
        record = self.done.get(stage)
        if record is None:
            return False
        self._adopt(stage, record)
        self.provenance.restored(stage, record["seconds"], record["extra"])
        return True

    def _adopt(self, stage: str, record: dict) -> None:
        """The aggregates, artifacts and (for a baseline) per-example rows of a finished stage's record."""
        self.metrics.update({f"{stage}/{k}": v for k, v in record["metrics"].items()})
        if record["artifacts"]:
            self.artifacts[stage] = record["artifacts"]
        if stage in Baselines.NAMES:
            self.suite.baselines.add_stored(stored.from_record(self.s.run_dir, record))

    def _baseline(self, stage: str, model_dirs: list, load) -> None:
        """The oracle or target stage (``model_dirs``: the directories its numbers depend on, the evaluated model
        first; ``load()`` gives the model): this run's own finished record, else the evaluation cache's
        (``unlearn_cli.eval_cache``), else evaluated here and then cached. A stage a metric needs live
        (``baseline_from_rows = False``) is always evaluated."""
        live = any(m.baseline == stage and not m.baseline_from_rows for m in self.c.metrics.values())
        if not live and self._restore(stage):
            return
        environment = {k: self.provenance.data[k] for k in ("versions", "device", "torch_threads")}
        if self.c.model.tokenizer_path:
            model_dirs = [*model_dirs, self.c.model.tokenizer_path]
        entry = None if live else self.eval_cache.entry(stage, eval_cache.key(
            stage, self.s.config, model_dirs, environment, self.eval_data, self._oracle_rows(stage)))
        cached = self.eval_cache.read(entry, stage)
        record = None
        if cached is not None:  # None if the copy failed or did not match: evaluated instead
            record = self.eval_cache.copy_into(entry, stage, self.s.run_dir, self.s.config_hash, cached)
        if record is None:
            self._evaluate(stage, load())
            self.eval_cache.store(entry, stage, self.s.run_dir)
            return
        self._adopt(stage, record)
        self.provenance.merge(record["extra"])
        self._log("eval", 0, {f"{stage}/{k}": v for k, v in record["metrics"].items()})

    def _oracle_rows(self, stage: str) -> str:
        """What a ``stage`` compares with besides its own model: for the target, the sha256 of the oracle rows its
        oracle-relative metrics (forget quality, privleak) read -- this run's oracle stage or ``oracle_results``'s
        -- or ``none`` (published constants)."""
        if stage != "target":
            return ""
        if self.suite.baselines.get("oracle") is None:
            return "none"
        rows = self.oracle_source or self.s.run_dir / "examples" / "oracle.jsonl"
        return manifest.sha256(rows) if Path(rows).is_file() else "unknown"

    def _unlearned_needed(self) -> bool:
        """Whether the unlearned model is still needed: a later stage not finished yet, ``save_model``, or other
        ranks (which decide nothing on their own: every rank trains)."""
        if not self.main or distributed.world_size() > 1 or self.s.save_model:
            return True
        later = (["unlearned"] if self.s.runs("eval_unlearned") else []) + \
            (list(self.c.attacks) if self.s.runs("attack") else [])
        return not all(stage in self.done for stage in later)

    def _oracle(self, path, target_path, target) -> None:
        """The retain-only oracle first (later stages compare with it): evaluated, or an earlier run's reused."""
        if self.s.oracle_results is not None:
            found, values = stored.load(self.s.oracle_results, self.s.config)
            self.oracle_source = found.source
            self.suite.baselines.add_stored(found)
            self.metrics.update({f"oracle/{k}": v for k, v in values.items()})
            self.provenance.set("oracle_results", str(found.source))
        elif path is not None:
            self._baseline("oracle", [path, target_path],
                           lambda: prepare.load_oracle(path, self.c.model, target, self.device))

    def _unlearn(self, model, data, target):
        seed_everything(self.s.seed + STAGE_SEEDS["unlearn"])
        encode = lambda items, answers=None: encode_qa(self.tok, items, self.format, answers)  # noqa: E731
        try:
            with self.provenance.stage("unlearn"):
                setup = unlearn.build(model, self.c.method, data, self.train_encoded, encode, self.c.unlearn,
                                      self.c.optimizer, self.c.plugins, seed=self.s.seed + STAGE_SEEDS["unlearn"],
                                      pad_id=self.tok.pad_token_id, device=self.device,
                                      cache_reference=self.s.cache_reference, dist_spec=self.c.distributed,
                                      tokenizer=self.tok)
                ckpt = unlearn.Checkpointing(self.s.run_dir, self.s.config_hash, self.s.checkpoint_every)
                model = unlearn.run(setup, log=self._log, device=self.device, ckpt=ckpt,
                                    reload=lambda: prepare.load_model(target, self.c.model, self.device)[0],
                                    on_resume=self._resumed)
        except NonFiniteLossError:
            if self.s.save_model:
                self.outputs.save_model(model, self.tok)
            self.outputs.results("failed: non-finite loss during unlearning", self.metrics, self.provenance.as_dict())
            raise
        self.provenance.set("plugins", {k: p.summary() for k, p in self.c.plugins.items()})
        self.provenance.set("precision", {"unlearn": self.c.unlearn.precision, "weights": setup.regime})
        self.outputs.stage_done("unlearn", {}, self.provenance.seconds("unlearn"),
                                extra={k: self.provenance.data[k] for k in ("plugins", "precision")})
        return model

    def _resumed(self, first_step: int) -> None:
        self.provenance.set("resumed_from_step", first_step - 1)
        progress.console.print(f"resuming unlearning at step {first_step} from {checkpoint.path(self.s.run_dir)}")

    def _attack(self, attack_id: str, attack, unlearned) -> None:
        """A weight attack on a private copy of the unlearned model, or an input attack's prompt view."""
        if self._restore(attack_id):
            return
        seed_everything(self.s.seed + STAGE_SEEDS["attack"])
        ctx = AttackContext(self.train_encoded, self.tok, self.s.seed, self.tok.pad_token_id, self.device,
                            self._log, f"attack {attack_id}",
                            encode=lambda items: encode_qa(self.tok, items, self.format), train_items=self.train_items,
                            forget_splits=self.forget_splits)
        with self.provenance.stage(f"attack_{attack_id}"):
            attacked, view = attack.apply(ctx, copy.deepcopy(unlearned) if attack.changes_weights else unlearned)
        self._evaluate(attack_id, attacked, view, timed=(f"attack_{attack_id}",))

    def _finish(self, model) -> None:
        """Saved model, plots and the logger's summary, then results.json (last), then the checkpoint goes."""
        if self.s.save_model:  # in the dtype it was loaded in (training may have kept fp32 masters)
            self.outputs.save_model(model.to(models.DTYPES[self.c.model.dtype]), self.tok)
        worst, sources = worst_case(self.metrics, list(self.c.attacks) if self.s.runs("attack") else [],
                                    self.forget_prefixes)
        if worst:
            self.metrics.update(worst)
            self.provenance.set("worst_case_attack", sources)
        self.logger.summary(self.metrics, images=self.outputs.plots(self.metrics, self.artifacts))
        self.outputs.results("complete", self.metrics, self.provenance.as_dict())
        if self.main:
            checkpoint.clear(self.s.run_dir)


def run(cfg: DictConfig, sweep_dir: Optional[str] = None) -> Path:
    """Validate, then execute one run."""
    return Run(cfg, sweep_dir).execute()
