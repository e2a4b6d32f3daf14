"""Follow-up questions: answers form a thread, and a follow-up that leans on the thread ("and for
foreign banks?") is rewritten into a standalone question before retrieval, shown to the analyst
to edit before it runs. The rewrite is a rule, not a model call: it takes microseconds, says
exactly what it did, and the analyst corrects it when it is wrong.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .models import Answer

MAX_THREAD = 20  # answers shown and recorded above a follow-up
# A follow-up that starts like a continuation or points back at the thread.
CONTINUES = re.compile(r"^\s*(and|or|but|also|what about|how about|and what about|same for|what if)\b", re.I)
POINTS_BACK = re.compile(r"\b(it|its|they|them|their|this|that|these|those|such|there|the same)\b", re.I)
STANDALONE_WORDS = 8  # a follow-up this long that does not point back stands on its own


def thread(answer: Answer) -> list[Answer]:
    """The answers this one follows, oldest first (bounded)."""
    chain: list[Answer] = []
    current = answer.parent
    while current is not None and len(chain) < MAX_THREAD:
        chain.append(current)
        current = current.parent
    return list(reversed(chain))


def leans_on_thread(follow_up: str) -> bool:
    words = follow_up.split()
    return bool(CONTINUES.search(follow_up) or POINTS_BACK.search(follow_up) or len(words) < STANDALONE_WORDS)


def rewrite(previous_question: str, follow_up: str) -> str:
    """The follow-up as a standalone question: unchanged when it stands on its own, else joined
    to the question it follows ("What counts as a company under Regulation O, and for foreign
    banks?"), which retrieval and the model then read whole."""
    follow_up = " ".join(follow_up.split())
    if not leans_on_thread(follow_up):
        return follow_up
    base = previous_question.strip().rstrip("?.! ")
    tail = follow_up.rstrip("?.! ")
    if not CONTINUES.search(tail):
        tail = "and " + tail[:1].lower() + tail[1:]
    else:
        tail = tail[:1].lower() + tail[1:]
    return f"{base}, {tail}?"


def record(follows: Answer, asked: str, question: str) -> dict[str, Any]:
    """What the audit record keeps of a follow-up: the thread, what was typed, the rewrite RegQA
    proposed and whether the analyst edited it."""
    started = time.perf_counter()
    proposed = rewrite(follows.question, asked) if asked else question
    rewrite_ms = round((time.perf_counter() - started) * 1000, 4)
    return {
        "thread": [a.pk for a in thread(follows)] + [follows.pk],
        "asked": asked,
        "rewritten": proposed,
        "edited": proposed != question,
        "rewrite_ms": rewrite_ms,
    }
