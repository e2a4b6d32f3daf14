"""Passage windows: each passage is also embedded in windows of REGQA_WINDOW_WORDS words, and the
untrained ranking reorders its best candidates by their best window (retrieve.by_windows)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError

from regqa.documents import embed, ingest
from regqa.documents.chunking import windows
from regqa.documents.ingest import ingest_document
from regqa.documents.models import Chunk, Document
from regqa.qa import rank
from regqa.qa import retrieve as retrieve_module
from regqa.qa.retrieve import by_windows, retrieve, window_similarity

from .conftest import make_pdf
from .fakes import hashed_embedding


def test_a_passage_is_cut_into_consecutive_windows_the_last_shorter():
    text = " ".join(f"w{i}" for i in range(130))
    pieces = windows(text, 60)
    assert [len(p.split()) for p in pieces] == [60, 60, 10]
    assert " ".join(pieces) == text  # nothing lost, nothing repeated
    assert windows("a short passage", 60) == ["a short passage"]
    assert windows(text, 0) == [] and windows("   ", 60) == []


def unit(*weights: float) -> np.ndarray:
    """A vector whose cosine with the query (the first axis) is weights[0]."""
    vector = np.zeros(embed.DIMENSIONS, dtype="float32")
    vector[: len(weights)] = weights
    return vector / np.linalg.norm(vector)


def chunk(pk: int, vector: np.ndarray, window_rows: list[np.ndarray] | None) -> Chunk:
    rows = np.array(window_rows or [], dtype="float16").tobytes()
    return Chunk(pk=pk, text="", embedding=vector.tobytes(), windows=rows)


def test_a_candidate_whose_one_window_matches_the_question_moves_up():
    query = unit(1.0)
    chunks = {
        1: chunk(1, unit(0.5, 0.5), [unit(0.2, 1.0)]),  # first as found; no window close
        2: chunk(2, unit(0.4, 0.6), [unit(0.1, 1.0), unit(1.0, 0.1)]),  # its second window states it
        3: chunk(3, unit(0.3, 0.7), [unit(0.3, 1.0)]),
    }
    assert by_windows([1, 2, 3], chunks, query) == [2, 1, 3]
    # without the windows the order found stands
    plain = {pk: chunk(pk, np.frombuffer(c.embedding, dtype="float32"), None) for pk, c in chunks.items()}
    assert by_windows([1, 2, 3], plain, query) == [1, 2, 3]


def test_only_the_best_candidates_are_reordered(monkeypatch):
    query = unit(1.0)
    chunks = {
        1: chunk(1, unit(0.5, 0.5), [unit(0.2, 1.0)]),
        2: chunk(2, unit(0.4, 0.6), [unit(0.1, 1.0)]),
        3: chunk(3, unit(0.3, 0.7), [unit(1.0, 0.0)]),  # the best window, but below the pool
    }
    monkeypatch.setattr(rank, "WINDOW_POOL", 2)
    assert by_windows([1, 2, 3], chunks, query) == [1, 2, 3]
    monkeypatch.setattr(rank, "WINDOW_POOL", 3)
    assert by_windows([1, 2, 3], chunks, query) == [1, 3, 2]


def test_a_passage_stored_without_windows_is_compared_by_its_own_vector():
    query = unit(1.0)
    assert window_similarity(chunk(1, unit(0.8, 0.2), None), query) == pytest.approx(0.97, abs=0.01)
    assert window_similarity(chunk(2, unit(0.2, 0.8), [unit(1.0)]), query) == pytest.approx(1.0, abs=0.01)
    assert window_similarity(None, query) == -1.0  # a chunk deleted a moment ago sorts last


LONG_PAGE = "§ 208.3 Application and conditions for membership.\n" + " ".join(
    f"A state bank applying for membership must meet condition number {n} of the Board." for n in range(30)
)


def queued_windows() -> list[tuple[list, int]]:
    from django_tasks_db.models import DBTaskResult

    tasks = DBTaskResult.objects.filter(task_path="regqa.documents.tasks.embed_windows", status="READY")
    return [(t.args_kwargs["args"], t.priority) for t in tasks]


def assert_windows_stored(document: Document, words: int) -> None:
    chunks = list(Chunk.live.filter(document=document))
    assert chunks
    for c in chunks:
        rows = embed.window_vectors(bytes(c.windows))
        pieces = windows(c.text, words)
        assert rows.shape == (len(pieces), embed.DIMENSIONS)
        assert np.allclose(rows, hashed_embedding(pieces), atol=1e-3)  # float16, in the passage's order


@pytest.mark.django_db(transaction=True)  # the real worker closes old connections, as in production
def test_a_document_is_ready_before_its_windows_which_a_low_priority_task_embeds(fake_embedder, settings):
    settings.WINDOW_WORDS = 40
    document = Document.objects.create(title="Regulation H", sha256="d" * 64)
    document.file.save("reg-h.pdf", ContentFile(make_pdf([LONG_PAGE])))
    assert ingest_document(document.pk).status == Document.Status.READY
    assert not Chunk.live.filter(document=document).exclude(windows=b"").exists()  # searchable, no windows yet
    assert queued_windows() == [([document.pk], ingest.WINDOWS_PRIORITY)]
    assert ingest.WINDOWS_PRIORITY < 0  # after the ingestions waiting (priority 0)
    call_command("db_worker", "--batch", "--no-startup-delay", verbosity=0)
    assert_windows_stored(document, 40)
    assert ingest.embed_windows(document.pk) == 0  # run twice (two workers queued it): nothing left

    # a worker that starts queues the documents whose windows are missing, and only those
    other = Document.objects.create(title="Regulation O", sha256="f" * 64)
    other.file.save("reg-o.pdf", ContentFile(make_pdf([LONG_PAGE.replace("208.3", "215.4")])))
    ingest_document(other.pk, windows_now=True)  # as `ingest_pdfs --now`: stored before returning
    assert_windows_stored(other, 40)
    Chunk.objects.filter(document=document).update(windows=b"")
    assert ingest.resume_windows() == [document.pk]
    assert queued_windows() == [([document.pk], ingest.WINDOWS_PRIORITY)]
    settings.WINDOW_WORDS = 0
    assert ingest.resume_windows() == [] and ingest.embed_windows(document.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_windows_that_fail_leave_the_document_ready_and_a_failed_ingestion_queues_none(
    fake_embedder, settings, monkeypatch
):
    from regqa.documents import tune

    settings.WINDOW_WORDS = 40
    document = Document.objects.create(title="Regulation H", sha256="d" * 64)
    document.file.save("reg-h.pdf", ContentFile(make_pdf([LONG_PAGE])))

    def broken(**kwargs):
        raise RuntimeError("embedder gone")

    monkeypatch.setattr(tune, "embed_library_windows", broken)
    with pytest.raises(RuntimeError, match="embedder gone"):
        ingest_document(document.pk, windows_now=True)
    document.refresh_from_db()
    assert document.status == Document.Status.READY and document.chunks.exists()

    blank = Document.objects.create(title="Scanned", sha256="b" * 64)
    blank.file.save("scan.pdf", ContentFile(make_pdf(blank_pages=2)))
    assert ingest_document(blank.pk).status != Document.Status.READY
    assert queued_windows() == []


@pytest.mark.django_db
def test_the_library_page_says_whose_windows_are_still_to_come(fake_embedder, settings, client_for):
    """A ready document whose windows the worker has not embedded yet is searchable, and the page
    says the paragraph-level search follows (and keeps polling); a passage of no words has no
    windows to wait for, so it is never shown as waiting nor queued again at each worker start."""
    from django.urls import reverse

    settings.WINDOW_WORDS = 40
    document = Document.objects.create(title="Regulation H", sha256="d" * 64)
    document.file.save("reg-h.pdf", ContentFile(make_pdf([LONG_PAGE])))
    ingest_document(document.pk)
    passages = Chunk.live.filter(document=document).count()
    admin = client_for("admin")
    page = admin.get(reverse("library")).content.decode()
    assert f"paragraph-level search of {passages} passage" in page and 'hx-trigger="every 2s"' in page

    ingest.embed_windows(document.pk)
    Chunk.objects.create(document=document, ordinal=99, text=" \n ", embedding=b"")  # no words
    page = admin.get(reverse("library")).content.decode()
    assert "paragraph-level search" not in page and 'hx-trigger="every 2s"' not in page
    assert ingest.resume_windows() == []


@pytest.mark.django_db
def test_index_windows_fills_a_library_stored_without_them(fake_embedder, settings):
    settings.WINDOW_WORDS = 40
    document = Document.objects.create(title="Regulation H", sha256="d" * 64)
    document.file.save("reg-h.pdf", ContentFile(make_pdf([LONG_PAGE])))
    ingest_document(document.pk, windows_now=True)
    stored = {c.pk: bytes(c.windows) for c in Chunk.live.filter(document=document)}
    assert_windows_stored(document, 40)

    Chunk.objects.filter(document=document).update(windows=b"")  # a library stored before windows
    out = io.StringIO()
    call_command("index", "windows", stdout=out)
    assert f"windows of {len(stored)} passage(s)" in out.getvalue()
    assert {c.pk: bytes(c.windows) for c in Chunk.live.filter(document=document)} == stored
    call_command("index", "windows", stdout=out)  # nothing left to do
    assert "windows of 0 passage(s)" in out.getvalue()

    settings.WINDOW_WORDS = 20  # changed: --all embeds every passage again at the new size
    call_command("index", "windows", "--all", stdout=out)
    first = Chunk.live.filter(document=document).first()
    assert first is not None
    assert embed.window_vectors(bytes(first.windows)).shape[0] == len(windows(first.text, 20))

    settings.WINDOW_WORDS = 0
    with pytest.raises(CommandError, match="REGQA_WINDOW_WORDS is 0"):
        call_command("index", "windows")


@pytest.mark.django_db
def test_retrieval_reorders_by_windows_only_in_the_untrained_hybrid_ranking(fake_embedder, settings, monkeypatch):
    document = Document.objects.create(title="Regulation H", sha256="e" * 64)
    document.file.save("reg-h.pdf", ContentFile(make_pdf([LONG_PAGE])))
    ingest_document(document.pk)
    calls = []
    real = retrieve_module.by_windows
    monkeypatch.setattr(retrieve_module, "by_windows", lambda *a: calls.append(a) or real(*a))
    question = "conditions for membership of a state bank"
    assert retrieve(question)
    assert len(calls) == 1
    retrieve(question, mode="bm25")  # the single rankings stay as they are, to compare against
    settings.WINDOW_WORDS = 0
    retrieve(question)
    assert len(calls) == 1
