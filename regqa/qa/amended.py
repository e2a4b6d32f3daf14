"""Answers whose source was amended: when a new version of a document replaces an old one, every
answer that cited a passage of the old version is checked against the new text. A cited passage
whose text is still in the new version is fine; one that changed is paired with the new passage
closest to it, one that is gone is marked removed; the answer is flagged "source amended" with
the old and new text (shown side by side with a word-level diff), and the flagging is audited.
"""

from __future__ import annotations

import difflib
import logging
import re
from typing import Any

from django.db import transaction
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind
from regqa.documents.models import Chunk, Document

from .models import Answer

log = logging.getLogger("regqa.amended")

SAME_PASSAGE = 0.5  # word-sequence similarity above which a new passage is the old one, changed


def _words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def _normal(text: str) -> str:
    return " ".join(_words(text)).lower()


def closest(old_text: str, candidates: list[Chunk]) -> tuple[Chunk | None, float]:
    """The new passage most like the old text, and how alike (0-1, over words)."""
    old = _words(old_text.lower())
    best, best_ratio = None, 0.0
    for chunk in candidates:
        matcher = difflib.SequenceMatcher(None, old, _words(chunk.text.lower()), autojunk=False)
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best, best_ratio = chunk, ratio
    return best, best_ratio


def flag_answers(old_id: int, new_id: int) -> list[int]:
    """Flag the answers that cited passages of document `old_id` which `new_id` changed or dropped.
    Returns their ids."""
    old = Document.objects.get(pk=old_id)
    new = Document.objects.get(pk=new_id)
    candidates = list(Chunk.live.filter(document=new).only("pk", "text", "page_start", "section"))
    present = {_normal(c.text) for c in candidates}
    flagged: list[int] = []
    matches: dict[str, tuple[Chunk | None, float]] = {}  # many answers cite the same passage: compared once
    for answer in Answer.objects.filter(documents=old).order_by("pk"):
        cited = {int(c["n"]) for c in answer.citations if c.get("valid")}
        changes = []
        for p in answer.passages:
            if p.get("n") not in cited or p.get("document_id") != old.pk or _normal(p["text"]) in present:
                continue
            if p["text"] not in matches:
                matches[p["text"]] = closest(p["text"], candidates)
            match, ratio = matches[p["text"]]
            changed = match is not None and ratio >= SAME_PASSAGE
            changes.append(
                {
                    "n": p["n"],
                    "status": "changed" if changed else "removed",
                    "old_document_id": old.pk,
                    "old_version": old.version,
                    "old_chunk_id": p.get("chunk_id"),
                    "old_page": p.get("page_start"),
                    "old_text": p["text"],
                    "new_document_id": new.pk,
                    "new_version": new.version,
                    "new_chunk_id": match.pk if changed and match else None,
                    "new_page": match.page_start if changed and match else None,
                    "new_text": match.text if changed and match else "",
                    "similarity": round(ratio, 3),
                }
            )
        if changes:
            with transaction.atomic():
                answer.amendments = [*answer.amendments, *changes]
                answer.source_amended = True
                answer.save(update_fields=["amendments", "source_amended"])
            flagged.append(answer.pk)
    if flagged:
        audit_log.record(
            EventKind.ANSWERS_SOURCE_AMENDED,
            f"{len(flagged)} answer{'s' if len(flagged) != 1 else ''} cited text that {new.title} "
            f"v{new.version} changed or removed",
            actor=f"ingestion of {new.title} v{new.version}",
            data={"old_document_id": old.pk, "new_document_id": new.pk, "answer_ids": flagged},
        )
    log.info("%s v%s: %d answers flagged as source amended", new.title, new.version, len(flagged))
    return flagged


def on_superseded(sender: Any, old_id: int, new_id: int, **kwargs: Any) -> None:
    """Receiver of documents.ingest.superseded (connected in QaConfig.ready). A failure here must
    not fail the ingestion that has already committed: it is logged."""
    try:
        flag_answers(old_id, new_id)
    except Exception:
        log.exception("flagging the answers that cited document %s failed", old_id)


def word_diff(old: str, new: str) -> tuple[SafeString, SafeString]:
    """The old and new text as HTML, words removed in <del> and words added in <ins>."""
    a, b = _words(old), _words(new)
    left: list[str] = []
    right: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old_part, new_part = escape(" ".join(a[i1:i2])), escape(" ".join(b[j1:j2]))
        if op == "equal":
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f"<del>{old_part}</del>")
        if new_part:
            right.append(f"<ins>{new_part}</ins>")
    return mark_safe(" ".join(left)), mark_safe(" ".join(right))  # noqa: S308  # every part escaped above
