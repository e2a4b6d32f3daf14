"""Find the passages that best match a question."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings

from regqa.documents import embed, index
from regqa.documents.models import Chunk, Document


@dataclass
class Passage:
    chunk_id: int
    document_id: int
    document_title: str
    section: str
    page_start: int | None
    page_end: int | None
    text: str
    score: float
    external_id: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def retrieve(question: str, k: int | None = None) -> list[Passage]:
    """Dense retrieval over ready documents, best first.

    Ids in the index without a live chunk (a document deleted meanwhile) are skipped, so the
    index being momentarily ahead of the database never shows a dead passage.
    """
    k = k or settings.RETRIEVE_TOP_K
    hits = index.get_index().search(embed.embed_query(question), k * 2)
    chunks = Chunk.objects.select_related("document").in_bulk([chunk_id for chunk_id, _ in hits])
    passages = []
    for chunk_id, score in hits:
        chunk = chunks.get(chunk_id)
        if chunk is None or chunk.document.status != Document.Status.READY:
            continue
        passages.append(
            Passage(
                chunk_id=chunk.pk,
                document_id=chunk.document_id,
                document_title=chunk.document.title,
                section=chunk.section,
                page_start=chunk.page_start,
                page_end=chunk.page_end,
                text=chunk.text,
                score=round(score, 4),
                external_id=chunk.external_id,
            )
        )
        if len(passages) == k:
            break
    return passages


def is_covered(passages: list[Passage]) -> bool:
    """Whether the best passage is close enough to the question to be worth answering from."""
    return bool(passages) and passages[0].score >= settings.MIN_RELEVANCE
