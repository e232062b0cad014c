"""THE run, top to bottom.

compose (cli) -> set up (seed, run dir, provenance, logger) -> build components -> load benchmark
-> prepare target/oracle (cached, locally built tiny targets only) -> eval oracle (first: its truth
ratios / MIA AUC are the reference of forget_quality / privleak) -> eval target -> unlearn -> eval
unlearned -> attack(s), each evaluated as its own stage -> results.json + plots + summary.
Stages listed in ``skip`` are not run.
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from unlearn_cli import components, progress, rundir
from unlearn_cli.models import build as models
from unlearn_cli.train import checkpoint, distributed, prepare
from unlearn_cli.data.encoding import EncodedQA, encode_qa
from unlearn_cli.errors import NonFiniteLossError, UserError
from unlearn_cli.files import atomic_write_json, atomic_write_text, redact, replace_dir
from unlearn_cli.provenance import Provenance
from unlearn_cli.methods.ga import GradientAscent
from unlearn_cli.train.reference import Reference
from unlearn_cli.train.plugins.salun import SaliencyMask, compute_mask
from unlearn_cli.eval.scorer import EvalInputs, StageScorer
from unlearn_cli.summary import print_summary
from unlearn_cli.loggers.none import NoLogger
from unlearn_cli.train.loop import BatchStream, autocast_factory, make_scheduler, total_steps, train

log = logging.getLogger("unlearn_cli")

STAGE_SEEDS = {"unlearn": 1, "attack": 2}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class AttackContext:
    """What an attack may use: the encoded unlearning data, the seed, the loop's plumbing."""

    train_encoded: Dict[str, EncodedQA]
    tokenizer: object
    seed: int
    pad_id: int
    device: torch.device
    log: Callable
    stage: str
    default_optimizer: object


class Run:
    """One unlearning run; ``execute()`` performs every stage and returns the run directory."""

    def __init__(self, cfg: DictConfig, sweep_dir: Optional[str] = None):
        self.cfg = cfg
        self.c = components.build(cfg)
        self.run_dir = rundir.resolve(cfg, sweep_dir)
        self.name = rundir.run_name(cfg)
        self.config_hash = rundir.config_hash(cfg)
        self.device = models.device()
        self.metrics: Dict[str, float] = {}
        self.seed = int(cfg.seed)

    # -- setup ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        progress.quiet_libraries()
        progress.set_enabled(bool(self.cfg.get("progress", True)))
        if self.cfg.get("threads"):
            torch.set_num_threads(int(self.cfg.threads))
        distributed.init(self.c.distributed)
        self.main = distributed.is_main()
        self.provenance = Provenance(self.seed, self.device)
        self.plain_cfg = redact(OmegaConf.to_container(self.cfg, resolve=True))
        self.logger = self.c.logger if self.main else NoLogger()
        if self.main:  # only rank 0 writes; every rank derives the same run dir from the config
            rundir.claim(self.run_dir, bool(self.cfg.get("overwrite", False)))
            atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(self.plain_cfg)))
            results = self.run_dir / "results.json"
            if results.exists():
                results.unlink()  # a stale or overwritten run; it is rewritten at the end
        else:
            progress.set_enabled(False)
        self.provenance.set("world_size", distributed.world_size())
        self.logger.start(self.run_dir, self.name, self.plain_cfg, group=self.cfg.get("sweep_name"),
                          resume=checkpoint.path(self.run_dir).exists())

    def _log(self, stage: str, step: int, values: dict) -> None:
        self.logger.log(stage, step, values)

    # -- data and models -------------------------------------------------------------------------
    def _load_data(self) -> None:
        self.data = self.c.benchmark.load()
        for split in ("forget",) + (("retain",) if self.c.method.needs_retain else ()):
            try:
                items = self.data.train_split(split)
            except UserError as err:
                raise UserError(f"method '{self.cfg.method.name}' needs {split} data: {err}") from None
            if not items:
                raise UserError(f"method '{self.cfg.method.name}' needs a non-empty '{split}' training split, "
                                f"which benchmark '{self.cfg.benchmark.name}' leaves empty")

    def _prepare(self) -> None:
        spec, b = self.c.model, self.c.benchmark
        self.oracle_path = None
        if spec.kind == "tiny":
            if not getattr(b, "builds_target", False):
                raise UserError(f"model=tiny needs a benchmark that builds its own target; "
                                f"'{self.cfg.benchmark.name}' names a given checkpoint (use a pretrained model)")
            cache = Path(str(self.cfg.cache_dir)).expanduser()
            tok_dir = prepare.tokenizer_for(cache, b.cache_key(), self.data.corpus, spec.vocab_size)
            common = dict(cache_dir=cache, benchmark_key=b.cache_key(), spec=spec, tokenizer_dir=tok_dir,
                          recipe=OmegaConf.to_container(self.cfg.prepare, resolve=True),
                          train_settings=self.c.prepare.train, optimizer_spec=self.c.prepare.optimizer,
                          seed=self.c.prepare.seed, log=self._log, device=self.device)
            self.target_path = prepare.prepared_model("target", self.data.train, **common)
            if "eval_oracle" not in self.c.skip:
                self.oracle_path = prepare.prepared_model("oracle", {"retain": self.data.train["retain"]}, **common)
            self.provenance.set("prepared", {"target": str(self.target_path),
                                             "oracle": str(self.oracle_path) if self.oracle_path else None})
        elif spec.kind == "pretrained":
            if not spec.path:
                raise UserError("model.kind=pretrained needs model.path (a local directory or a Hugging Face id)")
            self.target_path = spec.path
        else:
            raise UserError(f"model.kind must be 'tiny' or 'pretrained', got '{spec.kind}'")

    def _load(self, path):
        if self.c.model.kind == "tiny":
            model, tok = prepare.load_prepared(path, self.c.model)
        else:
            model, tok = models.load_pretrained(path, self.c.model)
        model.to(self.device).eval()
        return model, tok

    def _encode(self) -> None:
        tpl = self.c.model.prompt_template
        self.train_encoded = {k: encode_qa(self.tok, v, tpl) for k, v in self.data.train.items() if v}
        self.eval_inputs = EvalInputs(self.tok, tpl, self.data.qa, self.data.mcq, self.data.texts,
                                      self.c.decode.max_text_tokens)
        for metric in self.c.metrics:
            if hasattr(metric, "resolve"):
                metric.resolve(self.eval_inputs)
        needed = sorted({s for m in self.c.metrics for s in (getattr(m, "splits", None) or [])})
        unknown = [s for s in needed if self.eval_inputs.kind(s) is None]
        if unknown:
            raise UserError(f"eval.metrics: unknown split '{unknown[0]}' for benchmark '{self.cfg.benchmark.name}'; "
                            f"known: {', '.join(self.eval_inputs.known())}")
        self.eval_items = {s: self.data.qa[s] for s in needed if s in self.data.qa}
        self.reference_exports: Dict[str, object] = {}
        self.artifacts: Dict[str, dict] = {}

    # -- stages ----------------------------------------------------------------------------------
    def _evaluate(self, stage: str, model) -> None:
        """Every metric of ``eval.metrics`` on one model through one shared ``StageScorer``. The
        oracle stage runs first; what its metrics export (truth ratios, MIA AUC) is the reference
        of every later stage (forget_quality, privleak)."""
        autocast = autocast_factory(self.c.unlearn.precision, self.device)
        reference = {"is_reference": True} if stage == "oracle" else self.reference_exports
        scorer = StageScorer(model, self.eval_inputs, self.c.decode, autocast, stage, reference)
        with self.provenance.stage(f"eval_{stage}"):
            values = {}
            scorer.prefetch(self.c.metrics)
            for metric in self.c.metrics:
                values.update(metric.compute(scorer))
        if stage == "oracle":
            self.reference_exports = dict(scorer.exports)
        if scorer.artifacts:
            self.artifacts[stage] = scorer.artifacts
        self.metrics.update({f"{stage}/{k}": float(v) for k, v in values.items()})
        self._log("eval", 0, {f"{stage}/{k}": float(v) for k, v in values.items()})

    def _evaluate_oracle(self) -> None:
        """Evaluate the retain-only oracle first, so later stages can compare with it."""
        if self.oracle_path is not None and "eval_oracle" not in self.c.skip and self.main:
            oracle, _ = self._load(self.oracle_path)
            self._evaluate("oracle", oracle)
            del oracle

    def _save_plots(self) -> Dict[str, str]:
        """PNG plots in the run dir (leak@k curves, stage bars); ``{name: path}`` for the logger."""
        if not self.main:
            return {}
        from unlearn_cli import plots
        if self.artifacts:
            atomic_write_json(self.run_dir / "leak_at_k.json", {stage: art.get("leak_at_k", {})
                                                               for stage, art in self.artifacts.items()})
        try:
            return plots.save_all(self.run_dir, self.metrics, self.artifacts)
        except Exception as err:  # a plotting problem must not fail a finished run
            log.warning("plots not written: %s", err)
            return {}

    def _unlearn(self, model):
        """Optional method hooks: ``extra_splits(train_items, encode)`` returns splits index-aligned
        with ``forget`` (refusal answers, ...); ``reference_splits`` names splits whose reference NLLs
        are cached; ``setup(model, reference)`` runs before the optimizer is built (freezing
        parameters, sampling control vectors, checking layer indices)."""
        method, settings = self.c.method, self.c.unlearn
        seed_everything(self.seed + STAGE_SEEDS["unlearn"])
        autocast = autocast_factory(settings.precision, self.device)
        splits = {"forget": self.train_encoded["forget"]}
        sizes = {"forget": settings.batch_size}
        if method.needs_retain:
            splits["retain"] = self.train_encoded["retain"]
            sizes["retain"] = settings.retain_batch_size
        extra = {}
        if hasattr(method, "extra_splits"):
            encode = lambda items, answers=None: encode_qa(self.tok, items, self.c.model.prompt_template, answers)
            extra = method.extra_splits(self.data.train, encode)
            splits.update(extra)
        reference = None
        if method.needs_reference:
            ref_model = distributed.wrap_reference(models.frozen_copy(model), self.c.distributed, settings)
            reference = Reference(ref_model, self.tok.pad_token_id,
                                  cache=bool(self.cfg.get("cache_reference", True)), autocast=autocast)
            for split in getattr(method, "reference_splits", ("forget",)):
                reference.precompute(split, splits[split])
        if hasattr(method, "setup"):
            method.setup(model, reference)
        saliency = self._saliency_mask(model, splits["forget"], autocast)
        world = distributed.world_size()
        for name, size in sizes.items():
            if size % world:
                raise UserError(f"unlearn batch size {size} ({name}) must be divisible by the {world} processes")
        stream = BatchStream(splits, sizes, self.tok.pad_token_id, self.seed + STAGE_SEEDS["unlearn"],
                             aligned={k: "forget" for k in extra}, shard=(distributed.rank(), world))
        steps = total_steps(settings, len(splits["forget"]), settings.batch_size)
        optimizer = self.c.optimizer.build([p for p in model.parameters() if p.requires_grad], settings.lr)
        scheduler = make_scheduler(optimizer, settings, steps)
        wrapped, engine = distributed.wrap_for_training(model, optimizer, scheduler, self.c.distributed, settings,
                                                        settings.batch_size // world)
        start = 0
        state = checkpoint.load(self.run_dir, self.config_hash) if engine is None else None
        if state is not None:
            start = checkpoint.restore(self.run_dir, state, model, optimizer, scheduler, stream, method)
            self.provenance.set("resumed_from_step", start - 1)
            progress.console.print(f"resuming unlearning at step {start} from {checkpoint.path(self.run_dir)}")
        every = int(self.cfg.get("checkpoint_every") or 0)

        def after_step(step: int) -> None:
            if saliency:
                saliency.after_step(optimizer)
            if every and engine is None and self.main and (step + 1) % every == 0 and step + 1 < steps:
                checkpoint.save(self.run_dir, step, model, optimizer, scheduler, stream, method, self.config_hash)

        try:
            train(wrapped, lambda m, b: method.loss(m, b, reference), stream, optimizer, settings, steps,
                  stage="unlearn", log=self._log, device=self.device, scheduler=scheduler, engine=engine,
                  after_step=after_step, start_step=start)
            if wrapped is not model:
                model = self._consolidate(wrapped, engine)
        finally:
            if saliency:
                saliency.remove()
            for p in (model.parameters() if model is not None else ()):  # methods may freeze layers;
                p.requires_grad_(True)                                     # attacks tune everything
        return model

    def _consolidate(self, wrapped, engine):
        """A plain model holding the full unlearned weights (gathered from ZeRO shards) on rank 0."""
        state = distributed.consolidated_state(wrapped, engine)
        if not self.main:
            return None
        fresh, _ = self._load(self.target_path)
        fresh.load_state_dict(state)
        return fresh

    def _saliency_mask(self, model, forget: EncodedQA, autocast):
        """SalUn: score weights by |sum of GA-loss gradients| over one pass of the forget set
        (the reference code's scoring loss) and keep the top ``sparsity`` fraction trainable."""
        sparsity = self.c.saliency.sparsity
        if sparsity is None:
            return None
        bs = self.c.unlearn.batch_size
        batches = ({"forget": {k: v.to(self.device) for k, v in forget.batch(range(i, min(i + bs, len(forget))),
                                                                            self.tok.pad_token_id).items()}}
                   for i in range(0, len(forget), bs))
        ga = GradientAscent()
        with autocast():
            mask = compute_mask(model, lambda m, b: ga.loss(m, b)[0], batches, float(sparsity))
        sal = SaliencyMask(model, mask).install()
        self.provenance.set("saliency_kept_fraction", sal.kept_fraction())
        return sal

    def _attack(self, name: str, attack, unlearned) -> None:
        seed_everything(self.seed + STAGE_SEEDS["attack"])
        ctx = AttackContext(self.train_encoded, self.tok, self.seed, self.tok.pad_token_id, self.device,
                            self._log, f"attack {name}", self.c.prepare.optimizer)
        with self.provenance.stage(f"attack_{name}"):
            attacked = attack.run(ctx, copy.deepcopy(unlearned))
        self._evaluate(name, attacked)

    # -- outputs ---------------------------------------------------------------------------------
    def _write_results(self, status: str) -> None:
        if not self.main:
            return
        atomic_write_json(self.run_dir / "results.json",
                          {"status": status, "run_name": self.name, "metrics": self.metrics})
        atomic_write_json(self.run_dir / "provenance.json", self.provenance.as_dict())

    def _save_model(self, model) -> None:
        if not self.main:
            return
        tmp = self.run_dir / ".model.tmp"
        models.save(model, self.tok, tmp)
        replace_dir(tmp, self.run_dir / "model")

    def execute(self) -> Path:
        self._setup()
        try:
            with self.provenance.stage("load_data"):
                self._load_data()
            with self.provenance.stage("prepare"), distributed.main_first():
                self._prepare()
            model, self.tok = self._load(self.target_path)
            if hasattr(self.c.method, "check_model"):
                self.c.method.check_model(model)
            self._encode()
            self._evaluate_oracle()
            if "eval_target" not in self.c.skip and self.main:
                self._evaluate("target", model)
            if "unlearn" not in self.c.skip:
                try:
                    with self.provenance.stage("unlearn"):
                        model = self._unlearn(model)
                except NonFiniteLossError:
                    if self.cfg.get("save_model"):
                        self._save_model(model)
                    self._write_results("failed: non-finite loss during unlearning")
                    raise
                if not self.main:  # other ranks are done: evaluation and attacks run on rank 0
                    return self.run_dir
                if "eval_unlearned" not in self.c.skip:
                    self._evaluate("unlearned", model)
            if "attack" not in self.c.skip:
                for name, attack in self.c.attacks:
                    self._attack(name, attack, model)
            if self.cfg.get("save_model"):
                self._save_model(model)
            self._write_results("complete")
            if self.main:
                checkpoint.clear(self.run_dir)
            self.logger.summary(self.metrics, images=self._save_plots())
        finally:
            self.logger.close()
            distributed.shutdown()
        print_summary(self.metrics, self.name)
        progress.console.print(f"results: {self.run_dir / 'results.json'}")
        return self.run_dir


def run(cfg: DictConfig, sweep_dir: Optional[str] = None) -> Path:
    """Validate, then execute one run."""
    return Run(cfg, sweep_dir).execute()
