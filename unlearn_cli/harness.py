"""Multiple-choice accuracy through EleutherAI's lm-evaluation-harness (``lm_eval`` 0.4).

``mcq_acc`` with ``backend: lm_eval`` wraps the stage's in-memory model in the harness's ``HFLM``
(no reload, no second copy) and runs one harness task per multiple-choice split:

* a LOCAL task (default): the split's loaded items (the same questions, subsample and prompt as
  the native path: :func:`render_mcq`, with the WMDP / MMLU subject header) written to a JSONL file
  in a temporary folder, scored by the harness's own ``multiple_choice`` loglikelihood machinery
  (context and letter encoded jointly, its batching) -- no download, works offline and on the tiny
  model;
* an OFFICIAL task when ``harness_tasks`` maps the split to a registered harness task
  (``wmdp_bio``, ``wmdp_cyber``, ``mmlu``): the harness loads its own data from the Hugging Face
  hub, for numbers comparable with published tables.

The key is ``<split>_mcq_acc`` either way, the harness's ``acc`` (for a group such as ``mmlu``,
its aggregate ``acc``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence

from unlearn_cli.data.encoding import MCQ_LETTERS, render_mcq
from unlearn_cli.errors import UserError

log = logging.getLogger("unlearn_cli")

TASK_PREFIX = "unlearn_cli_"


def require_harness() -> None:
    """UserError naming the install command when lm-eval is missing."""
    try:
        import lm_eval  # noqa: F401
        from lm_eval.models.huggingface import HFLM  # noqa: F401
    except ImportError as err:
        raise UserError(f"eval.metrics.mcq_acc.backend=lm_eval needs lm-evaluation-harness ({err.name} is missing): "
                        f"pip install 'unlearn_cli[harness]' (lm_eval==0.4.13, accelerate), or use backend=native") \
            from None


def _task_yaml(task: str, data_file: Path, num_choices: int) -> str:
    letters = json.dumps(list(MCQ_LETTERS[:num_choices]))
    return (f"task: {task}\n"
            f"dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data_file))}\n"
            f"test_split: test\n"
            f"output_type: multiple_choice\n"
            f"doc_to_text: \"{{{{prompt}}}}\"\n"
            f"doc_to_choice: {letters}\n"
            f"doc_to_target: answer\n"
            f"metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
            f"metadata:\n  version: 1\n")


def write_local_tasks(folder: Path, splits: Dict[str, Sequence], subject_of) -> Dict[str, str]:
    """One harness task per split in ``folder`` (JSONL data + YAML); ``{split: task name}``.
    ``subject_of(split, item)`` gives the header subject (or None), as the native prompt does."""
    tasks = {}
    for split, items in splits.items():
        if not items:
            raise UserError(f"mcq_acc (lm_eval): split '{split}' is empty")
        data_file = folder / f"{split}.jsonl"
        with open(data_file, "w", encoding="utf-8") as f:
            for it in items:
                f.write(json.dumps({"prompt": render_mcq(it.question, it.choices, subject_of(split, it.entity)),
                                    "answer": int(it.answer)}) + "\n")
        task = TASK_PREFIX + split
        (folder / f"{task}.yaml").write_text(_task_yaml(task, data_file, len(items[0].choices)), encoding="utf-8")
        tasks[split] = task
    return tasks


def harness_accuracy(model, tokenizer, splits: Dict[str, Sequence], subject_of, batch_size: int,
                     official: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """``{split: acc}`` of ``model`` on each multiple-choice split through lm-eval (see module doc)."""
    require_harness()
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    official = dict(official or {})
    device = str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=int(batch_size), device=device)
    with tempfile.TemporaryDirectory(prefix="unlearn-harness-") as tmp:
        local = {s: items for s, items in splits.items() if s not in official}
        tasks = write_local_tasks(Path(tmp), local, subject_of)
        tasks.update(official)
        manager = TaskManager(include_path=tmp)
        unknown = [t for t in official.values() if t not in manager.all_tasks]
        if unknown:
            raise UserError(f"eval.metrics.mcq_acc.harness_tasks: lm-eval has no task '{unknown[0]}' "
                            f"(e.g. wmdp_bio, wmdp_cyber, wmdp_chem, mmlu)")
        results = lm_eval.simple_evaluate(model=lm, tasks=sorted(set(tasks.values())), task_manager=manager,
                                          num_fewshot=0, log_samples=False, bootstrap_iters=0)["results"]
    return {split: float(results[task]["acc,none"]) for split, task in tasks.items()}

