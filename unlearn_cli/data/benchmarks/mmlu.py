"""MMLU utility benchmark (Hendrycks et al. 2021, arXiv 2009.03300); layout in docs/benchmark_reference.md."""

from typing import List, Optional

from unlearn_cli.bounds import PositiveInt
from unlearn_cli.contracts import Benchmark
from unlearn_cli.data.items import BenchmarkData, MCQItem
from unlearn_cli.data.loaders import Source, Table, head, mcq_item
from unlearn_cli.errors import UserError, suggest
from unlearn_cli.registry import BENCHMARKS

HUB_ID = "cais/mmlu"
SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology",
    "high_school_chemistry", "high_school_computer_science", "high_school_european_history",
    "high_school_geography", "high_school_government_and_politics", "high_school_macroeconomics",
    "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history",
    "high_school_world_history", "human_aging", "human_sexuality", "international_law", "jurisprudence",
    "logical_fallacies", "machine_learning", "management", "marketing", "medical_genetics",
    "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy", "prehistory",
    "professional_accounting", "professional_law", "professional_medicine", "professional_psychology",
    "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology", "world_religions",
)
CSV_EXPECT = "a CSV with header question,choice0,choice1,choice2,choice3,answer (answer 0-3)"


def _subject_items(source: Source, subject: str, split: str, limit: Optional[int]) -> List[MCQItem]:
    table = Table(f"{split}/{subject}_{split}.csv", subject, split, CSV_EXPECT)
    header = subject.replace("_", " ")  # lm-evaluation-harness's mmlu header: "... about abstract algebra."
    return head([mcq_item(row, where, subject, subject=header) for where, row in source.rows(table)], limit)


def _check_subjects(subjects: List[str]) -> None:
    for name in subjects:
        if name not in SUBJECTS:
            raise UserError(f"benchmark.subjects: unknown MMLU subject '{name}';{suggest(name, SUBJECTS)} "
                            f"known: {', '.join(SUBJECTS)}")
    if not subjects:
        raise UserError("benchmark.subjects is empty; give MMLU subject names or null for all 57")


@BENCHMARKS.register("mmlu")
class Mmlu(Benchmark):
    """MMLU: 57 subjects of 4-option exam questions, the utility check of WMDP-style unlearning (cais/mmlu).

    MCQ splits: ``mmlu`` (test, 14042 items over all subjects) and ``mmlu_dev`` (5 per subject,
    the few-shot pool). ``MCQItem.entity`` holds the subject (file stem minus ``_test``/``_dev``),
    so metrics can group per subject and pick same-subject demonstrations. Evaluation only: there is
    no forget or retain set. ``subjects`` restricts the subjects (null = all), ``max_per_subject``
    keeps the first n test items of each subject.
    """

    loader_version = 1

    def __init__(self, data_dir: Optional[str] = None, subjects: Optional[List[str]] = None,
                 max_per_subject: Optional[PositiveInt] = None):
        chosen = list(SUBJECTS) if subjects is None else list(subjects)
        _check_subjects(chosen)
        self.source = Source.resolve("MMLU", "mmlu", HUB_ID, data_dir, "test/<subject>_test.csv and dev/<subject>_dev.csv")
        self.settings = dict(subjects=chosen, max_per_subject=max_per_subject)

    def cache_key(self) -> dict:
        """Everything that determines the loaded data."""
        return {"name": "mmlu", "loader_version": self.loader_version, "source": self.source.describe(),
                **self.settings}

    def load(self) -> BenchmarkData:
        """Test and dev items of the chosen subjects, in subject order."""
        subjects, cap = self.settings["subjects"], self.settings["max_per_subject"]
        test = [it for s in subjects for it in _subject_items(self.source, s, "test", cap)]
        dev = [it for s in subjects for it in _subject_items(self.source, s, "dev", None)]
        reason = "mmlu is an evaluation-only (utility) benchmark with no unlearning data"
        return BenchmarkData(name="mmlu", train={}, mcq={"mmlu": test, "mmlu_dev": dev},
                             missing={"forget": reason, "retain": reason})
