"""A bank of refusal answers for rejection-based unlearning (IDK fine-tuning, IDK-DPO).

The sentences are written for this project. ``refusal_answers`` assigns one to each forget item,
deterministically from a seed, so reruns pair the same question with the same refusal.
"""

from __future__ import annotations

import random
from typing import List, Sequence

REFUSALS = (
    "I don't know the answer to that.",
    "I'm not able to answer that question.",
    "That is something I have no information about.",
    "I'm afraid I can't help with that one.",
    "I have no knowledge of that.",
    "Sorry, I don't have that information.",
    "I can't say; it's outside what I know.",
    "I'm not sure, and I'd rather not guess.",
    "That question is beyond my knowledge.",
    "I have no reliable answer to give you.",
    "Unfortunately, I don't know.",
    "I couldn't tell you, I'm sorry.",
    "I lack the details needed to answer that.",
    "Nothing I know lets me answer this.",
    "I'd be guessing, so I won't answer.",
    "I really have no idea.",
    "That's not something I can answer.",
    "I don't have any facts about that.",
    "My knowledge doesn't cover this question.",
    "I'm unable to provide an answer here.",
    "I don't recall anything about that.",
    "That is unknown to me.",
    "I can't give you an answer to that question.",
    "Honestly, I don't know.",
    "I'm sorry, that's not something I'm aware of.",
    "I have nothing useful to say about that.",
    "I can't answer that with any confidence.",
    "I'm not in a position to answer that.",
    "There's no answer I can offer on this.",
    "I don't possess that information.",
    "I'm drawing a blank on that one.",
    "I'm not familiar with that.",
    "That falls outside of what I can tell you.",
    "I have not come across that information.",
    "I'm unsure; I can't answer it.",
    "I wish I could help, but I don't know.",
    "I cannot provide that information.",
    "No idea, sorry.",
    "I'm not aware of the answer.",
    "That's a question I can't answer.",
    "I don't have an answer for you.",
    "I'd rather not answer, since I don't know.",
)


def refusal_answers(n: int, seed: int = 0, bank: Sequence[str] = ()) -> List[str]:
    """``n`` refusal sentences drawn uniformly (with replacement) by a seeded RNG from ``bank`` (a
    benchmark's own, e.g. TOFU's 100 ``idontknow.jsonl`` sentences), or from ``REFUSALS`` without one."""
    rng = random.Random(seed)
    choices = tuple(bank) or REFUSALS
    return [rng.choice(choices) for _ in range(n)]
