"""Per-example outputs of a stage: one row per evaluated item and split (``examples/<stage>.jsonl``).

A row holds the item (``split``, ``index`` -- its position in the split, stable for given benchmark
settings --, question / gold answer, choices, or text), what the stage's scorer computed for it and
every per-item judgement a metric recorded (``StageScorer.record``):

* ``generation`` -- the greedy answer under the templated question (other views / budgets:
  ``generation[<view>,<max_new_tokens>]``); ``samples[T=..,p=..,k=..]`` -- sampled answers (leak@k);
* ``nll[<field>]`` / ``tokens[<field>]`` -- summed answer NLL and answer length for ``answer``,
  ``paraphrased_answer`` (lists for ``perturbed``); ``answer_prob`` = ``exp(-nll/tokens)`` of the gold answer;
* ``truth_ratio``, ``norm_prob``, ``exact_memorization``, ``extraction_strength``; ``mia_<attack>``
  (``mia_min_k@0.4`` for the fraction-based attacks, ``mia_gradnorm@p2``);
* ``mcq_logprobs[<shots>]`` -- letter log-likelihoods; ``mcq_pred[<shots>]``;
* metric judgements such as ``qa_acc``, ``rouge_l_recall``, ``rouge_l_f1``, ``knowmem_f1``,
  ``verbmem_f1``, ``open_qa``, ``leak_count[...]`` (prefixed ``<id>/`` for a metric instance whose id
  is not its name).

``results.json`` keeps the aggregates; these rows are what a researcher inspects, what significance
tests need, and what ``oracle_results`` (``eval.stored``) reads back.
"""

from __future__ import annotations

import math
from typing import Dict, List

import numpy as np
import torch


def _plain(value):
    """JSON-safe: tensors / arrays to lists, numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def mia_name(attack: str, k: float, option=None) -> str:
    """Row key of a membership-inference score (``k`` / the attack's option only where they matter)."""
    if attack in ("min_k", "min_k_pp"):
        return f"mia_{attack}@{k:g}"
    if attack == "gradnorm":
        return f"mia_gradnorm@p{option:g}"
    return f"mia_{attack}"


def _memo_columns(scorer) -> Dict[str, Dict[str, list]]:
    """``{split: {column: per-item values}}`` of what ``scorer`` memoised."""
    cols: Dict[str, Dict[str, list]] = {}
    default_mnt = scorer.decode.max_new_tokens
    for key, value in scorer._memo.items():
        kind, split = key[0], key[1]
        out = cols.setdefault(split, {})
        if kind == "gen":
            view, mnt = key[2], key[3]
            out["generation" if (view, mnt) == ("question", default_mnt) else f"generation[{view},{mnt}]"] = value
        elif kind == "sample":
            s = key[4]
            out[f"samples[T={s.temperature:g},p={s.top_p:g},k={s.top_k}]"] = value
        elif kind == "nll" and key[3] == "question":
            sums, counts = value
            out[f"nll[{key[2]}]"], out[f"tokens[{key[2]}]"] = sums, counts
            if key[2] == "answer":
                out["answer_prob"] = torch.exp(-sums / counts.clamp_min(1))
        elif kind in ("truth_ratio", "norm_prob"):
            out[kind] = value
        elif kind == "mia":
            out[mia_name(key[2], key[3], key[4])] = value
        elif kind in ("exact_memorization", "extraction_strength"):
            out[kind] = value
        elif kind == "mcq":
            out[f"mcq_logprobs[{key[2]}]"] = value
            out[f"mcq_pred[{key[2]}]"] = value.argmax(-1)
    return {split: c for split, c in cols.items() if c}


def _item_fields(inputs, split: str, index: int, attack) -> dict:
    kind = inputs.kind(split)
    if kind == "qa":
        it = inputs.qa[split][index]
        row = {"question": it.question, "answer": it.answer}
        if it.value != it.answer:
            row["value"] = it.value
        if attack is not None and attack.applies_to(split):
            row["attacked_question"] = attack.question(it.question)
            if attack.tokens:
                row["attack_tokens"] = attack.describe_tokens(inputs.tokenizer)
        return row
    if kind == "mcq":
        it = inputs.mcq[split][index]
        return {"question": it.question, "choices": list(it.choices), "answer": it.answer}
    if kind == "text":
        return {"text": inputs.texts[split][index]}
    return {}


def stage_rows(scorer) -> List[dict]:
    """Every evaluated item of ``scorer``'s stage with its per-item values, split by split, in item order."""
    columns = _memo_columns(scorer)
    for split, recorded in scorer.records.items():
        columns.setdefault(split, {}).update(recorded)
    rows = []
    for split in sorted(columns):
        cols = {name: _plain(values) for name, values in columns[split].items()}
        count = max(len(v) for v in cols.values())
        for i in range(count):
            row = {"split": split, "index": i, **_item_fields(scorer.inputs, split, i, scorer.attack)}
            row.update({name: values[i] for name, values in cols.items() if i < len(values)})
            rows.append(row)
    return rows
