"""The embedded fictional-facts benchmark."""

from typing import Annotated

from unlearn_cli.bounds import NonNegativeInt, PositiveInt, Range
from unlearn_cli.contracts import Benchmark
from unlearn_cli.data import fictional
from unlearn_cli.registry import BENCHMARKS


@BENCHMARKS.register("fictional")
class Fictional(Benchmark):
    """Fictitious people with six attributes each, generated from a seed (no download).

    Splits (by person): forget / retain / holdout QA; ``*_paraphrase`` (each person's held-out
    question wording), ``*_novel`` (a wording never trained), ``*_mcq`` (4-choice), bios.
    The target model is trained on forget + retain, the oracle on retain only (prepare stage).
    """

    def __init__(self, num_people: Annotated[int, Range(10)] = 100,
                 forget_fraction: Annotated[float, Range(0, 0.5, lo_open=True, hi_open=True)] = 0.1,
                 holdout_fraction: Annotated[float, Range(0, 0.5, lo_open=True, hi_open=True)] = 0.1,
                 num_perturbed: PositiveInt = 3, data_seed: NonNegativeInt = 0):
        self.settings = dict(num_people=num_people, forget_fraction=forget_fraction,
                             holdout_fraction=holdout_fraction, num_perturbed=num_perturbed, seed=data_seed)

    def cache_key(self) -> dict:
        return {"name": "fictional", "generator_version": 1, **self.settings}

    def load(self):
        return fictional.generate(**self.settings)
