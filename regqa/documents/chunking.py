"""Page text -> cleaned lines -> section-aware passages (ChunkDraft), and the text each passage is
embedded and indexed as. Pure functions of plain values: no database, no model, no file.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from django.conf import settings


@dataclass
class PageText:
    number: int  # 1-based
    text: str


@dataclass
class ChunkDraft:
    ordinal: int
    text: str
    section: str
    page_start: int | None = None
    page_end: int | None = None
    external_id: str = ""  # the source's own id, for imported passages


def first_heading(pages: list[PageText]) -> str:
    """A title from the first page: its first line that reads like a heading."""
    for line in (pages[0].text if pages else "").splitlines()[:15]:
        line = " ".join(line.split())
        if 8 <= len(line) <= 150 and sum(c.isalpha() for c in line) > len(line) / 2 and not line[0].isdigit():
            return line
    return ""


HEADING_PATTERNS = [
    re.compile(r"^§\s*\d+[\w.-]*\s+[A-Z(].{0,150}$"),  # § 208.1 Authority, purpose, and scope.
    re.compile(r"^(PART|Part)\s+\d+\s*[—–-].{0,150}$"),  # PART 208—MEMBERSHIP OF ...
    re.compile(r"^Subpart\s+[A-Z]{1,3}\s*[—–-].{0,150}$"),  # Subpart A—General ...
    re.compile(r"^(Rule|Article|Section|Chapter|CHAPTER|ARTICLE|SECTION)\s+[\dIVXLC]+(\.\d+)*[.:]?\s+\S.{0,120}$"),
    re.compile(r"^\d+(\.\d+){1,4}\.?\s+[A-Z][^.;:]{2,100}$"),  # 3.2.1 Capital requirements
    re.compile(r"^Appendix\s+[A-Z0-9]+\b.{0,150}$"),
]
_WS = re.compile(r"[ \t\u00a0]+")
_DIGITS = re.compile(r"\d+")


def is_heading(line: str) -> bool:
    line = line.strip()
    if not 3 <= len(line) <= 160:
        return False
    if any(p.match(line) for p in HEADING_PATTERNS):
        return True
    letters = [c for c in line if c.isalpha()]
    # Short ALL-CAPS lines ("STATEMENT ON LONGER-RUN GOALS") are headings in most rulebooks.
    return len(letters) >= 6 and all(c.isupper() for c in letters) and len(line.split()) <= 14


def page_lines(text: str) -> list[str]:
    """A page's non-empty lines, whitespace collapsed."""
    return [line for line in (_WS.sub(" ", raw).strip() for raw in text.splitlines()) if line]


def running_lines(pages: list[list[str]]) -> set[str]:
    """The running headers and footers of a document, given its pages' lines (digits as "#"): a line
    near the top or bottom of a page that recurs on at least a third of the pages."""
    edge_counts: Counter[str] = Counter()
    for lines in pages:
        edges = set(lines[:2] + lines[-2:])
        edge_counts.update(_DIGITS.sub("#", e) for e in edges)
    threshold = max(3, len(pages) // 3)
    return {k for k, n in edge_counts.items() if n >= threshold}


def strip_running(lines: list[str], running: AbstractSet[str]) -> list[str]:
    """A page's lines without its running headers/footers and bare page numbers."""
    keep = []
    for i, line in enumerate(lines):
        at_edge = i < 2 or i >= len(lines) - 2
        if at_edge and (_DIGITS.sub("#", line) in running or line.isdigit()):
            continue
        keep.append(line)
    return keep


def strip_running_lines(pages: list[PageText]) -> list[list[str]]:
    """Split pages into lines and drop running headers/footers and bare page numbers."""
    split = [page_lines(p.text) for p in pages]
    running = running_lines(split)
    return [strip_running(lines, running) for lines in split]


def chunk_pages(pages: list[PageText], words: int | None = None, overlap: int | None = None) -> list[ChunkDraft]:
    """Cut page text into overlapping windows of about `words` words.

    Every word remembers its page and the section heading in force, so each chunk knows the
    page(s) it spans and its section. A new section always starts a new chunk, so a passage
    never mixes two rules. Words hyphenated across lines are joined again.
    """
    words = words or settings.CHUNK_WORDS
    overlap = settings.CHUNK_OVERLAP_WORDS if overlap is None else overlap
    step = max(1, words - overlap)

    # (word, page, section) stream, grouped into runs that share a section.
    runs: list[tuple[str, list[tuple[str, int]]]] = []
    section = ""
    carry = ""  # first half of a word hyphenated at a line end
    heading_continues = False  # "§ 208.6 Establishment and mainte-" / "nance of branches."
    for page, lines in zip(pages, strip_running_lines(pages), strict=True):
        for line in lines:
            if heading_continues and len(line) <= 80 and not is_heading(line):
                section = (section[:-1] + line)[:300]
                runs[-1] = (section, runs[-1][1])
            heading_continues = False
            if is_heading(line):
                section = line[:300]
                runs.append((section, []))
                heading_continues = line.endswith("-")
            if not runs:
                runs.append((section, []))
            tokens = line.split()
            if carry and tokens:
                tokens[0] = carry + tokens[0]
                carry = ""
            if tokens and tokens[-1].endswith("-") and len(tokens[-1]) > 2 and tokens[-1][-2].isalpha():
                carry = tokens.pop()[:-1]
            runs[-1][1].extend((t, page.number) for t in tokens)
    if carry and runs:
        runs[-1][1].append((carry, pages[-1].number))

    drafts: list[ChunkDraft] = []
    for section, stream in runs:
        if not stream:
            continue
        start = 0
        while True:
            window = stream[start : start + words]
            drafts.append(
                ChunkDraft(
                    ordinal=len(drafts),
                    text=" ".join(w for w, _ in window),
                    section=section,
                    page_start=window[0][1],
                    page_end=window[-1][1],
                )
            )
            if start + words >= len(stream):
                break
            start += step
    return drafts


def windows(text: str, words: int) -> list[str]:
    """The passage cut into consecutive pieces of `words` words (the last shorter), each embedded
    on its own: a passage whose one paragraph answers a question is found by that paragraph, not
    by the average of all of them. `words` 0: none."""
    tokens = text.split()
    if not words or not tokens:
        return []
    return [" ".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def embedding_text(section: str, text: str, title: str = "") -> str:
    """What gets embedded: the document title and heading give a passage the context its words
    lack ("Regulation O", "§ 215.2 Definitions")."""
    context = [part for part in (title, section) if part and not text.startswith(part)]
    return "\n".join([*context, text])
