"""The embedded fictional-facts benchmark."""

from unlearn_cli.contracts import Benchmark
from unlearn_cli.data import fictional
from unlearn_cli.errors import UserError
from unlearn_cli.registry import BENCHMARKS


@BENCHMARKS.register("fictional")
class Fictional(Benchmark):
    """Fictitious people with six attributes each, generated from a seed (no download).

    Splits (by person): forget / retain / holdout QA; ``*_paraphrase`` (each person's held-out
    question wording), ``*_novel`` (a wording never trained), ``*_mcq`` (4-choice), bios.
    The target model is trained on forget + retain, the oracle on retain only (prepare stage).
    """


    def __init__(self, num_people: int = 100, forget_fraction: float = 0.1, holdout_fraction: float = 0.1,
                 num_perturbed: int = 3, data_seed: int = 0):
        if num_people < 10:
            raise UserError(f"benchmark.num_people must be >= 10, got {num_people}")
        for key, val in (("forget_fraction", forget_fraction), ("holdout_fraction", holdout_fraction)):
            if not 0 < val < 0.5:
                raise UserError(f"benchmark.{key} must be in (0, 0.5), got {val}")
        self.settings = dict(num_people=num_people, forget_fraction=forget_fraction,
                             holdout_fraction=holdout_fraction, num_perturbed=num_perturbed, seed=data_seed)

    def cache_key(self) -> dict:
        return {"name": "fictional", "generator_version": 1, **self.settings}

    def load(self):
        return fictional.generate(**self.settings)
