"""Multiple-choice accuracy through EleutherAI's lm-evaluation-harness (``lm_eval`` 0.4).

``mcq_acc`` with ``backend: lm_eval`` wraps the stage's in-memory model in the harness's ``HFLM``
(no reload, no second copy) and runs one harness task per multiple-choice split:

* a LOCAL task (default): the split's loaded items with the native path's prompt texts (the same
  questions, subsample, subject header and few-shot demonstrations: ``EvalInputs.mcq_texts``)
  written to a JSONL file in a temporary folder, scored by the harness's own ``multiple_choice``
  loglikelihood machinery (context and letter encoded jointly, its batching) -- no download, works
  offline and on the tiny model; the harness itself runs it zero-shot, as the demonstrations are
  already in the prompt;
* an OFFICIAL task when ``harness_tasks`` maps the split to a registered harness task
  (``wmdp_bio``, ``wmdp_cyber``, ``mmlu``): the harness loads its own data from the Hugging Face
  hub and picks its own demonstrations (``num_fewshot``), for numbers comparable with published tables.

The key is ``<split>_mcq_acc`` either way, the harness's ``acc`` (for a group such as ``mmlu``,
its aggregate ``acc``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from unlearn_cli.data.encoding import MCQ_LETTERS
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


def write_local_tasks(folder: Path, splits: Dict[str, Tuple[List[str], Sequence]]) -> Dict[str, str]:
    """One harness task per split in ``folder`` (JSONL data + YAML) from ``{split: (prompt texts,
    items)}``; ``{split: task name}``."""
    tasks = {}
    for split, (prompts, items) in splits.items():
        if not items:
            raise UserError(f"mcq_acc (lm_eval): split '{split}' is empty")
        data_file = folder / f"{split}.jsonl"
        with open(data_file, "w", encoding="utf-8") as f:
            for prompt, it in zip(prompts, items):
                f.write(json.dumps({"prompt": prompt, "answer": int(it.answer)}) + "\n")
        task = TASK_PREFIX + split
        (folder / f"{task}.yaml").write_text(_task_yaml(task, data_file, len(items[0].choices)), encoding="utf-8")
        tasks[split] = task
    return tasks


def harness_accuracy(model, tokenizer, local: Dict[str, Tuple[List[str], Sequence]],
                     official: Dict[str, Tuple[str, int]], batch_size: int
                     ) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
    """``({split: acc}, {local split: (N, C) letter log-likelihoods})`` of ``model`` through lm-eval
    (see module doc): ``local`` maps a split to its (prompt texts, items), ``official`` maps a split
    to (harness task, num_fewshot); per-item log-likelihoods come from the harness's own samples."""
    require_harness()
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    device = str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=int(batch_size), device=device)
    with tempfile.TemporaryDirectory(prefix="unlearn-harness-") as tmp:
        tasks = write_local_tasks(Path(tmp), local)
        manager = TaskManager(include_path=tmp)
        unknown = [t for t, _ in official.values() if t not in manager.all_tasks]
        if unknown:
            raise UserError(f"eval.metrics.mcq_acc.harness_tasks: lm-eval has no task '{unknown[0]}' "
                            f"(e.g. wmdp_bio, wmdp_cyber, wmdp_chem, mmlu)")
        runs: Dict[int, set] = {0: set(tasks.values())} if tasks else {}
        for task, shots in official.values():  # the harness takes one num_fewshot per call
            runs.setdefault(shots, set()).add(task)
        results, samples = {}, {}
        for shots, names in sorted(runs.items()):
            out = lm_eval.simple_evaluate(model=lm, tasks=sorted(names), task_manager=manager, num_fewshot=shots,
                                          log_samples=shots == 0 and bool(tasks), bootstrap_iters=0)
            results.update(out["results"])
            samples.update(out.get("samples") or {})
    loglik = {split: _letter_logliks(samples[task]) for split, task in tasks.items() if task in samples}
    tasks.update({split: task for split, (task, _) in official.items()})
    return {split: float(results[task]["acc,none"]) for split, task in tasks.items()}, loglik


def _letter_logliks(rows: List[dict]) -> np.ndarray:
    """(N, C) log-likelihood of each choice's continuation, in document order, from lm-eval's samples."""
    ordered = sorted(rows, key=lambda r: r["doc_id"])
    return np.array([[float(resp[0][0]) for resp in r["resps"]] for r in ordered], dtype=np.float64)

