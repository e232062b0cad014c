"""Tokenisation of QA items and batching.

A QA item is tokenised as its model was trained: prompt and answer *jointly*, as one text
(:class:`PromptFormat`: a plain ``prompt_template`` followed directly by the answer, or the
tokenizer's chat template with the question as the user turn), so the first answer token is the
one the joint text yields (``The`` after ``[/INST]``, ``ĠThe`` after ``Answer:``), not the token of
a separately encoded ``" " + answer``. The label boundary is where the answer's characters start
(``answer_boundary: offsets``: the first token whose span reaches into the answer, from the
tokenizer's offset mapping), so that token is trained on and scored; ``prompt_length`` instead masks
as many tokens as the separately tokenised prompt has -- OpenUnlearning's layout, one token too many
when the prompt ends in a space -- for parity with its published numbers. A plain format prepends
``<bos>`` and appends ``<eos>``; a chat template carries its own. Training and scoring use these ids;
generation feeds the prompt ids only. Raw-text items (empty question: MUSE articles, corpora) become
windows of ``<bos>`` + text with every token supervised, as the benchmark's ``TextWindows`` say
(:func:`text_windows`). Evaluation prompt renderers for multiple-choice (:func:`render_mcq`) and
few-shot QA (:func:`render_icl`) live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import torch

from unlearn_cli.data.items import TextWindows
from unlearn_cli.errors import UserError

IGNORE = -100


@dataclass
class EncodedQA:
    """Token ids of prompts and answers of one split, index-aligned with its items."""

    prompts: List[List[int]]
    answers: List[List[int]]

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, indices: Sequence[int]) -> "EncodedQA":
        return EncodedQA([self.prompts[i] for i in indices], [self.answers[i] for i in indices])

    def concat(self, other: "EncodedQA") -> "EncodedQA":
        return EncodedQA(self.prompts + other.prompts, self.answers + other.answers)

    def batch(self, indices: Sequence[int], pad_id: int) -> Dict[str, torch.Tensor]:
        """Right-padded training batch: prompt positions and padding are labelled -100."""
        seqs = [self.prompts[i] + self.answers[i] for i in indices]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, i in enumerate(indices):
            p, a = self.prompts[i], self.answers[i]
            n = len(p) + len(a)
            ids[row, :n] = torch.tensor(p + a)
            labels[row, len(p):n] = torch.tensor(a)
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels,
                "index": torch.tensor(list(indices), dtype=torch.long)}


def bos_ids(tokenizer) -> List[int]:
    """``[<bos>]``, or ``[]`` for a tokenizer without one."""
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


@dataclass(frozen=True)
class PromptFormat:
    """How one model's prompts and answers are laid out as text and split into tokens (module docstring).

    ``template``: the plain prompt (``{question}`` filled in); the answer follows it directly, so the
    template carries its separator (``"Question: {question}\nAnswer: "``, ``"[INST] {question} [/INST]"``).
    ``chat``: render with the tokenizer's chat template instead (a ``system_prompt`` turn first when
    given; ``date_string`` passed to templates that print a date, as Llama 3's does).
    """

    template: str = "Question: {question}\nAnswer: "
    chat: bool = False
    system_prompt: Optional[str] = None
    date_string: Optional[str] = None
    answer_boundary: Literal["offsets", "prompt_length"] = "offsets"

    def _messages(self, question: str) -> List[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": question}]

    def _chat(self, tokenizer, messages, prompt: bool) -> str:
        extra = {"date_string": self.date_string} if self.date_string else {}
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt, **extra)

    def prompt_text(self, tokenizer, question: str) -> str:
        """The prompt as text (the generation prompt of a chat template)."""
        if self.chat:
            return self._chat(tokenizer, self._messages(question), True)
        return self.template.format(question=question)

    def full_text(self, tokenizer, question: str, answer: str) -> str:
        """Prompt and answer as the model was trained on them; the prompt text is its prefix."""
        prompt = self.prompt_text(tokenizer, question)
        if not self.chat:
            return prompt + answer
        full = self._chat(tokenizer, self._messages(question) + [{"role": "assistant", "content": answer}], False)
        if not full.startswith(prompt) or answer not in full[len(prompt):]:
            raise UserError("the tokenizer's chat template does not render the generation prompt as the start of "
                            "prompt + answer; set model.chat_template=off and a model.prompt_template")
        return full

    def encode(self, tokenizer, questions: Sequence[str], answers: Sequence[str]) -> EncodedQA:
        """Prompt / answer token ids of each (question, answer), tokenised jointly (module docstring)."""
        prompts = [self.prompt_text(tokenizer, q) for q in questions]
        texts = [self.full_text(tokenizer, q, a) for q, a in zip(questions, answers)]
        offsets = self.answer_boundary == "offsets"
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=offsets)
        if offsets:
            bounds = [next((j for j, (_, end) in enumerate(spans) if end > len(p)), len(spans))
                      for spans, p in zip(enc["offset_mapping"], prompts)]
        else:
            bounds = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        lead = [] if self.chat else bos_ids(tokenizer)
        tail = [] if self.chat else [tokenizer.eos_token_id]
        return EncodedQA([lead + ids[:b] for ids, b in zip(enc["input_ids"], bounds)],
                         [ids[b:] + tail for ids, b in zip(enc["input_ids"], bounds)])


def encode_qa(tokenizer, items, fmt: PromptFormat, answers: Optional[Sequence[str]] = None,
              windows: Optional[TextWindows] = None) -> EncodedQA:
    """Encode items (or items with replacement ``answers``, e.g. refusals or perturbed answers) in the
    model's ``fmt``; raw-text items (empty question) become supervised text ``windows``
    (:func:`text_windows`; a mixed list -- a corpus plus QA retain data in the prepare stage -- gives the
    QA rows followed by the text rows)."""
    if len(items) == 0:
        raise UserError("cannot encode an empty split")
    texts = list(answers) if answers is not None else [it.answer for it in items]
    if answers is None and any(not it.question for it in items):
        qa_items = [it for it in items if it.question]
        text_rows = text_windows(tokenizer, [it.answer for it in items if not it.question], windows or TextWindows())
        return encode_qa(tokenizer, qa_items, fmt).concat(text_rows) if qa_items else text_rows
    return fmt.encode(tokenizer, [it.question for it in items], texts)


def text_windows(tokenizer, texts: Sequence[str], windows: TextWindows) -> EncodedQA:
    """Training rows of raw ``texts`` (``data.items.TextWindows``): prompt ``[<bos>]``, the window supervised."""
    if len(texts) == 0:
        raise UserError("cannot encode an empty split")
    size = windows.max_length - len(bos_ids(tokenizer))
    if windows.mode == "per_document":
        rows = [ids[:size] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"] if ids]
    else:
        ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
        wrapped = ids + ids[:(-len(ids)) % size]  # the last window completed from the start
        rows = [wrapped[i:i + size] for i in range(0, len(ids), size)]
    return EncodedQA([bos_ids(tokenizer) for _ in rows], rows)


def encode_texts(tokenizer, texts: Sequence[str]) -> EncodedQA:
    """Texts scored whole for membership inference: one row per text, prompt ``[<bos>]``, every token supervised."""
    if len(texts) == 0:
        raise UserError("cannot encode an empty split")
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return EncodedQA([bos_ids(tokenizer) for _ in ids], [list(row) for row in ids])


MCQ_LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H")


def render_mcq(question: str, choices: Sequence[str], subject: Optional[str] = None,
               demos: Sequence[Tuple[str, Sequence[str], int]] = ()) -> str:
    """Multiple-choice prompt of lm-evaluation-harness (WMDP, MMLU; docs/metric_reference.md):
    ``"The following are multiple choice questions (with answers) about {subject}.\n\n"`` (only
    when ``subject`` is given), then each few-shot demonstration ``(question, choices, answer
    index)`` as its item + ``" <letter>\n\n"`` (the harness's target and few-shot delimiters;
    none = zero-shot), then ``question.strip()`` + ``"\nA. c0\nB. c1..."`` + ``"\nAnswer:"``;
    the continuations scored are ``" A"``, ``" B"``, ..."""
    head = f"The following are multiple choice questions (with answers) about {subject}.\n\n" if subject else ""
    shots = "".join(f"{_mcq_item(q, c)} {MCQ_LETTERS[a]}\n\n" for q, c, a in demos)
    return f"{head}{shots}{_mcq_item(question, choices)}"


def _mcq_item(question: str, choices: Sequence[str]) -> str:
    if len(choices) > len(MCQ_LETTERS):
        raise UserError(f"multiple-choice items may have at most {len(MCQ_LETTERS)} choices, got {len(choices)}")
    lines = "".join(f"\n{MCQ_LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{question.strip()}{lines}\nAnswer:"


def render_icl(demos: Sequence[tuple], question: str) -> str:
    """MUSE KnowMem few-shot prompt: ``"Question: {q}\nAnswer: {a}\n\n"`` per demonstration, then
    ``"Question: {question}\nAnswer: "`` (MUSE, arXiv 2407.06460)."""
    return "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in demos) + f"Question: {question}\nAnswer: "


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> Dict[str, torch.Tensor]:
    """Left-padded prompt batch for generation."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s):] = torch.tensor(list(s))
        mask[row, width - len(s):] = 1
    return {"input_ids": ids, "attention_mask": mask}
