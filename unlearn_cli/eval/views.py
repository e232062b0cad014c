"""Prompt views: how the items of a QA split become prompt token ids -- the one place they are built.

A view is named in a metric's request (``question``, ``paraphrased_question``, ``raw``,
``icl:<split>``); each picks the question text of an item and renders it:

* ``question`` -- the model's prompt format (``data.encoding.PromptFormat``: template or chat
  template), tokenised jointly with the item's gold answer and cut at the answer boundary, so the
  prompt ids are exactly the ones the model was trained to continue (``<bos>`` alone for raw-text items);
* ``paraphrased_question`` -- the same with the item's paraphrased question (TOFU), else its question;
* ``raw`` -- ``<bos>`` + the question text, no template (MUSE VerbMem passage prefixes, tokenised alone
  as MUSE does);
* ``icl:<split>`` -- MUSE KnowMem's few-shot prompt: the QA pairs of ``<split>`` as demonstrations.

An input attack returns a :class:`PromptView`; the scorer of its stage passes it here and every
prompt of the splits it targets is rendered from the attacked question text, whatever view a
metric asked for (multiple-choice prompts likewise: ``EvalInputs.mcq_texts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from unlearn_cli.data.encoding import bos_ids, render_icl
from unlearn_cli.errors import UserError
from unlearn_cli.models.adversarial_tokens import insert_after_bos

if TYPE_CHECKING:
    from unlearn_cli.eval.inputs import EvalInputs


@dataclass(frozen=True)
class PromptView:
    """What an input attack does to prompts: text placed before and after each question of ``splits``, and
    adversarial ``tokens`` inserted after the ``<bos>`` of each of their prompts (``models.adversarial_tokens``);
    ``embeddings`` (k, d), when given, replace those tokens' input embeddings (a soft prompt, whose ``tokens``
    are ``k`` placeholders).

    ``name`` identifies the attacked prompts in the scorer's memo (two attacks with different
    prompts must have different names)."""

    name: str
    splits: Tuple[str, ...]
    prefix: str = ""
    suffix: str = ""
    tokens: Tuple[int, ...] = ()
    embeddings: Any = field(default=None, compare=False, hash=False)
    placeholder: Optional[int] = None

    def applies_to(self, split: str) -> bool:
        return split in self.splits

    def question(self, question: str) -> str:
        return f"{self.prefix}{question}{self.suffix}"

    def describe_tokens(self, tokenizer) -> Optional[str]:
        """The adversarial tokens in words for per-example rows: their text, or how many soft-prompt vectors."""
        if not self.tokens:
            return None
        if self.embeddings is not None:
            return f"<{len(self.tokens)} soft-prompt vectors>"
        return tokenizer.decode(list(self.tokens))

    def token_rows(self, rows: List[List[int]], bos: Sequence[int]) -> List[List[int]]:
        """``rows`` (prompt ids of a targeted split) with the adversarial tokens after each ``<bos>``."""
        return [insert_after_bos(r, bos, self.tokens) for r in rows] if self.tokens else rows


@dataclass(frozen=True)
class View:
    """A named view: ``select(item)`` picks the question text; a templated view renders it in the model's
    prompt format, any other with ``render(inputs, questions, arg)``."""

    select: Callable[[object], str]
    render: Optional[Callable[["EvalInputs", List[str], Optional[str]], List[List[int]]]] = None
    takes_argument: bool = False

    @property
    def templated(self) -> bool:
        return self.render is None


def _raw(inputs: "EvalInputs", questions: List[str], arg: Optional[str]) -> List[List[int]]:
    return [bos_ids(inputs.tokenizer) + ids for ids in inputs.token_ids(questions)]


def _icl(inputs: "EvalInputs", questions: List[str], demo_split: Optional[str]) -> List[List[int]]:
    inputs.require(demo_split, "qa")
    demos = [(d.question, d.answer) for d in inputs.qa[demo_split]]
    return [bos_ids(inputs.tokenizer) + ids for ids in inputs.token_ids([render_icl(demos, q) for q in questions])]


VIEWS: Dict[str, View] = {
    "question": View(lambda it: it.question),
    "paraphrased_question": View(lambda it: it.paraphrased_question or it.question),
    "raw": View(lambda it: it.question, _raw),
    "icl": View(lambda it: it.question, _icl, takes_argument=True),
}


def parse(view: str) -> Tuple[View, Optional[str]]:
    """The view named by ``view`` (``name`` or ``name:argument``) and its argument; UserError if unknown."""
    name, _, arg = view.partition(":")
    known = ", ".join(f"{n}:<split>" if v.takes_argument else n for n, v in VIEWS.items())
    if name not in VIEWS or VIEWS[name].takes_argument != bool(arg):
        raise UserError(f"unknown prompt view '{view}'; known: {known}")
    return VIEWS[name], arg or None


def questions(items: Sequence, view: str, attack: Optional[PromptView] = None) -> List[str]:
    """The question text of each item under ``view``, with ``attack``'s text around it when given."""
    spec, _ = parse(view)
    out = [spec.select(it) for it in items]
    return [attack.question(q) for q in out] if attack is not None else out


def render(inputs: "EvalInputs", items: Sequence, view: str, attack: Optional[PromptView] = None) -> List[List[int]]:
    """Prompt ids of ``items`` under ``view``, with ``attack``'s text around each question when given."""
    spec, arg = parse(view)
    texts = questions(items, view, attack)
    if not spec.templated:
        rows = spec.render(inputs, texts, arg)
    elif not texts[0]:  # raw-text items: the continuation is scored after <bos> alone
        rows = [bos_ids(inputs.tokenizer) for _ in texts]
    else:
        rows = inputs.format.encode(inputs.tokenizer, texts, [it.answer for it in items]).prompts
    return attack.token_rows(rows, bos_ids(inputs.tokenizer)) if attack is not None else rows
