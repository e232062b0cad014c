"""The contract of every component kind: one ``typing.Protocol`` per registry.

A component class names its contract as its base (``class NPO(Method)``): the protocol is an
interface, not an implementation to inherit, and it carries the defaults of the optional members,
so the pipeline calls ``method.setup(...)`` or reads ``metric.baseline`` without ``hasattr`` probes.
``Registry.register`` checks each class against its protocol when the module is imported
(:func:`check`): the base is named, no required member is left abstract, every overridden method
accepts the protocol's parameters, and flags are booleans. A broken component therefore fails at
import with one line naming the class and the member, before any config is read.

Shapes used below: a *batch* maps a split name (``forget``, ``retain``, aligned views such as
``forget_idk``) to a right-padded ``{"input_ids", "attention_mask", "labels", "index"}`` dict;
*terms* map a loss-term name to an already weighted scalar tensor, and the objective is their sum.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

if TYPE_CHECKING:  # annotations only: contracts import nothing heavy
    import torch

Terms = Dict[str, "torch.Tensor"]
Logs = Dict[str, "torch.Tensor"]


class Method(Protocol):
    """An unlearning objective: hyperparameters are constructor keywords, the loss is ``loss``.

    ``loss(model, batch, reference) -> (terms, logs)``: ``terms`` holds the named, already weighted
    parts of the objective -- ``forget`` always, ``retain`` when the method has a retain term, others
    as the method needs -- and the loop minimises their sum; optimizers that treat parts differently
    (SAM on ``forget`` only, say) evaluate a subset through the loop's closure. ``logs`` are detached
    scalars for the step log. Flags tell the setup what to build before the first step.
    """

    needs_reference: bool = False       # a frozen copy theta_0 is passed as ``reference``
    needs_retain: bool = False          # every step batch carries a ``retain`` mini-batch
    needs_hooks: bool = False           # reads decoder hidden states (representation methods)
    reference_splits: Tuple[str, ...] = ("forget",)  # splits whose theta_0 sequence NLLs are cached up front
    needs_reference_model: bool = True  # False: theta_0 is read only through the cached splits (released after)

    @abstractmethod
    def loss(self, model, batch, reference) -> Tuple[Terms, Logs]:
        """The step's named loss terms and logs on ``batch``."""

    def extra_splits(self, data, encode) -> Dict[str, Any]:
        """Training splits index-aligned with ``forget`` (refusals, alternate answers) from ``data``
        (``data.items.BenchmarkData``: ``data.train``, ``data.refusals``); ``encode(items, answers)``
        tokenises like the benchmark's own splits."""
        return {}

    def check_model(self, model) -> None:
        """Raise a UserError before any stage runs when ``model`` does not fit (layer indices, names)."""

    def setup(self, model, reference) -> None:
        """Runs once before the optimizer is built (freeze parameters, draw control vectors)."""

    def state_dict(self) -> dict:
        """State that a resumed run must restore (schedules that count steps)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


class OptimizerSpec(Protocol):
    """A configured optimizer family: ``build(params, lr)`` returns a ``torch.optim.Optimizer``.

    The loop calls ``optimizer.step(closure)``; the closure (``train.loop.StepClosure``) evaluates all
    loss terms or a subset, with or without backward, so two-pass (SAM), forward-only (zeroth-order)
    and hybrid optimizers need no change to the loop. ``first_order`` optimizers take one gradient
    per step and also run under DeepSpeed, whose engine then performs the update itself. A torch optimizer
    with a ``finish_training()`` method has it called once after the last step (weight averaging loads its
    average there, so the average is what is evaluated and saved).
    """

    first_order: bool = True

    @abstractmethod
    def build(self, params, lr: float):
        """A ``torch.optim.Optimizer`` over ``params`` at learning rate ``lr``."""

    def check_steps(self, steps: int) -> None:
        """Raise a UserError before the first step when a run of ``steps`` steps does not fit the settings
        (weight averaging that would start after the last step)."""


class Attack(Protocol):
    """An attack on the unlearned model, followed by the evaluation suite as its own stage.

    ``apply(ctx, model) -> (model, view)``: a *weight* attack (relearning, fine-tuning, quantization)
    returns a changed model and ``None``; an *input* attack returns the model unchanged and a
    ``eval.views.PromptView`` that the scorer applies to the prompts of the splits it names, so every
    metric scores the attacked prompts without knowing about attacks. ``changes_weights`` tells the
    pipeline whether the attack needs a private copy of the model. An attack that trains builds its
    own optimizer from its settings (``ctx`` carries no optimizer).
    """

    skip: bool = False                  # ``none``: no stage at all
    changes_weights: bool = True
    optimises_prompt: bool = False      # an input attack that searches its prompt on the attacker's forget sample

    @abstractmethod
    def apply(self, ctx, model) -> Tuple[Any, Any]:
        """``(attacked model, prompt view or None)``."""

    def check(self, device) -> None:
        """Raise a UserError before any stage runs when the attack cannot run on ``device`` (a CUDA-only backend)."""

    def check_data(self, data, forget_splits: Sequence[str]) -> None:
        """Raise a UserError before anything trains when the benchmark's data (``data.items.BenchmarkData``, its
        forget-side evaluation splits ``forget_splits``) lacks what the attack needs."""


class Metric(Protocol):
    """An evaluation metric computed from a stage's shared ``eval.scorer.StageScorer``.

    ``compute(scorer) -> {key: float}``. ``splits`` names every evaluation split the metric reads
    (checked against the benchmark before anything runs); ``generation_requests`` declares its greedy
    generations so the scorer pools them per stage; ``baseline`` names the stage whose memoised values
    it compares with (``oracle`` or ``target``), read through ``scorer.baseline(name)``. A baseline read back from
    its per-example rows (a resumed run, ``oracle_results``, the evaluation cache) offers only what the rows hold;
    ``baseline_from_rows = False`` says the metric needs more (hidden states, say), so its baseline stage is
    evaluated in the run.
    """

    higher_is_better: bool = True
    version: int = 1
    baseline: Optional[str] = None
    baseline_from_rows: bool = True
    splits: Sequence[str] = ()

    @abstractmethod
    def compute(self, scorer) -> Dict[str, float]:
        """The metric's values at this stage."""

    def resolve(self, inputs) -> None:
        """Fill settings that depend on the benchmark's splits (``inputs``: ``eval.inputs.EvalInputs``)."""

    def generation_requests(self) -> List[Tuple[str, str, Optional[int]]]:
        """``[(split, prompt view, max_new_tokens or None)]`` of the greedy answers ``compute`` reads."""
        return []


class Benchmark(Protocol):
    """A data source: constructor keywords are its settings, ``load()`` returns ``data.items.BenchmarkData``.

    ``cache_key()`` lists every setting that determines the loaded data (prepared models and
    tokenizers are cached under it).
    """

    @abstractmethod
    def load(self):
        """Training and evaluation splits."""

    @abstractmethod
    def cache_key(self) -> dict:
        """Everything that determines ``load()``'s result."""


class Logger(Protocol):
    """Where per-step logs and the final summary go. A logger never stops a run: failures are one warning."""

    @abstractmethod
    def start(self, run_dir, run_name: str, config: dict, group: Optional[str] = None, resume: bool = False) -> None:
        """Open the run (``resume``: append to what an interrupted run logged)."""

    @abstractmethod
    def log(self, stage: str, step: int, values: dict) -> None:
        """One step's values."""

    def summary(self, metrics: dict, images: Optional[dict] = None) -> None:
        """The run's final metrics and plot paths."""

    def close(self) -> None:
        """Flush and release."""


class TrainPlugin(Protocol):
    """A train-time plug-in of the unlearning loop, usable with any method (SalUn, sink penalty, ...).

    ``setup(ctx)`` runs after the method's setup and before the optimizer is built (``ctx``:
    ``train.unlearn.PluginContext``); ``train_splits(ctx)`` then names training splits the plug-in adds to
    every step batch (``{name: (encoded rows, batch size)}``); ``loss_terms(model, batch)`` adds named terms to the method's;
    ``after_step(step, optimizer)`` runs after every update; ``close()`` at the end, also on failure.
    ``summary()`` goes to provenance.json. ``supports_deepspeed`` False refuses ZeRO runs up front.
    """

    supports_deepspeed: bool = True

    def setup(self, ctx) -> None:
        """Prepare before the first step."""

    def train_splits(self, ctx) -> Dict[str, Any]:
        """Training splits this plug-in adds to the batch stream: ``{name: (EncodedQA, batch size)}``."""
        return {}

    def loss_terms(self, model, batch) -> Terms:
        """Extra named loss terms of this step."""
        return {}

    def after_step(self, step: int, optimizer) -> None:
        """After every optimizer update."""

    def close(self) -> None:
        """Undo what ``setup`` installed (hooks)."""

    def summary(self) -> dict:
        """Facts for provenance.json."""
        return {}


PROTOCOLS = (Method, OptimizerSpec, Attack, Metric, Benchmark, Logger, TrainPlugin)


def _members(protocol: type) -> Mapping[str, Any]:
    """Public members a protocol declares: methods and annotated attributes with their defaults."""
    out: Dict[str, Any] = {}
    for name, value in vars(protocol).items():
        if not name.startswith("_") and callable(value):
            out[name] = value
    for name in getattr(protocol, "__annotations__", {}):
        if not name.startswith("_"):
            out[name] = getattr(protocol, name, None)
    return out


def _positional(fn) -> List[str]:
    params = list(inspect.signature(fn).parameters.values())
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def check(cls: type, protocol: type, kind: str, name: str) -> None:
    """TypeError unless ``cls`` fulfils ``protocol`` (see the module docstring)."""
    where = f"{kind} '{name}' ({cls.__module__}.{cls.__qualname__})"
    if not (isinstance(cls, type) and protocol in cls.__mro__):  # nominal: issubclass() refuses data protocols
        raise TypeError(f"{where} must subclass unlearn_cli.contracts.{protocol.__name__}")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise TypeError(f"{where} does not implement {protocol.__name__}.{missing[0]}")
    for member, default in _members(protocol).items():
        own = getattr(cls, member)
        if callable(default):
            wanted = _positional(default)
            got = _positional(own)
            if got[:len(wanted)] != wanted and not any(
                    p.kind == p.VAR_POSITIONAL for p in inspect.signature(own).parameters.values()):
                raise TypeError(f"{where}.{member} must accept ({', '.join(wanted)}), has ({', '.join(got)})")
        elif isinstance(default, bool) and not isinstance(own, bool):
            raise TypeError(f"{where}.{member} must be a bool flag, got {own!r}")
        if isinstance(default, bool) and member in inspect.signature(cls.__init__).parameters:
            raise TypeError(f"{where}: constructor parameter '{member}' would shadow the protocol's flag "
                            f"{protocol.__name__}.{member}; rename the parameter")
