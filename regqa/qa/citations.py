"""Citations and passage labels: how an answer names a passage ("[2]", "[1, 3]") and how a
passage is named to a model ("12 CFR 215, page 3, § 215.2 Definitions").

Pure text functions, no Django models or settings: prompts, verification, routing, escalation
and the templates all read citations through here, so the format is defined once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(text: str) -> list[int]:
    """Every passage number cited in `text`, in order of first use, each once."""
    seen: list[int] = []
    for match in CITATION.finditer(text):
        for number in match.group(1).split(","):
            if int(number) not in seen:
                seen.append(int(number))
    return seen


def parse_citations(text: str, passage_count: int) -> list[dict[str, Any]]:
    """The cited passage numbers of `text`, each with whether it names a real passage (1..count)."""
    return [{"n": n, "valid": 1 <= n <= passage_count} for n in cited_numbers(text)]


def strip_citations(text: str) -> str:
    return CITATION.sub(" ", text)


def cite(text: str, numbers: list[int]) -> str:
    """`text` followed by a citation for each number ("... [1][3]")."""
    return f"{text} " + "".join(f"[{n}]" for n in dict.fromkeys(numbers))


def _clean(text: str) -> str:
    return " ".join(text.split())


def passage_label(p: Mapping[str, Any]) -> str:
    """Where a passage comes from, as the model reads it: document title, page(s), section."""
    where = []
    if p.get("page_start"):
        start, end = p["page_start"], p.get("page_end")
        where.append(f"page {start}" if end in (None, start) else f"page {start}-{end}")
    if p.get("section"):
        where.append(_clean(p["section"])[:120])
    return f"{p['document_title']}" + (f", {', '.join(where)}" if where else "")
