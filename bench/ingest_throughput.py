"""Ingestion throughput: the app's pipeline against the raw steps in a plain script, same run.

    .venv/bin/python bench/ingest_throughput.py [--pdfs fixtures/pdfs]
        [--passages ../shared/benchdata/obliqa/corpus_passages.jsonl --limit 2000]

PDFs: the app's `ingest_document` (text extraction in a guarded child process, cleaning and
section-aware chunking, embeddings, database rows, FAISS index) against a plain script doing
pypdf extraction plus sentence-transformers encode of the same texts (the passages: their windows
are embedded later, in a background task, after the document is ready) with the same batch size.
Passages: `import_passages` (passages and windows in one pass) against encoding the same texts. Prints pages or
passages per second for both, the app's share of the raw throughput, and the app's split
between extraction, chunking, embedding and indexing. Uses a throwaway data directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from throwaway import ROOT, setup_django


def embedded_texts(chunks, with_windows: bool) -> list[str]:
    """What the app embeds for these passages: each with its title and heading (and its windows)."""
    from regqa.documents.embed import chunk_texts

    texts, pieces = chunk_texts([(c.document.title, c.section, c.text) for c in chunks])
    return texts + [w for piece in pieces for w in piece] if with_windows else texts


def raw_encode(texts: list[str]) -> float:
    """Seconds for a plain sentence-transformers encode with the app's batch size."""
    from django.conf import settings

    from regqa.documents.embed import get_model

    model = get_model()
    started = time.perf_counter()
    model.encode(texts, batch_size=settings.EMBEDDING_BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True)
    return time.perf_counter() - started


def bench_pdfs(folder: Path) -> None:
    from django.core.files.base import ContentFile
    from pypdf import PdfReader

    from regqa.documents.ingest import ingest_document
    from regqa.documents.models import Document

    pdfs = sorted(folder.glob("*.pdf"))
    # The app, end to end.
    app_seconds, steps, pages, passages, texts = 0.0, {}, 0, 0, []
    for i, path in enumerate(pdfs):
        document = Document.objects.create(title=path.stem, sha256=f"{i:064d}", original_name=path.name)
        document.file.save(path.name, ContentFile(path.read_bytes()))
        started = time.perf_counter()
        document = ingest_document(document.pk)
        app_seconds += time.perf_counter() - started
        assert document.status == Document.Status.READY, document.status_detail
        pages += document.page_count
        passages += document.chunk_count
        for step, seconds in document.timings.items():
            steps[step] = steps.get(step, 0.0) + seconds
        texts += embedded_texts(document.chunks.select_related("document"), with_windows=False)
    # Then the windows, as the background task embeds them once the documents are ready.
    from regqa.documents.ingest import embed_windows

    started = time.perf_counter()
    windowed = sum(embed_windows(document.pk) for document in Document.objects.filter(status=Document.Status.READY))
    windows_seconds = time.perf_counter() - started
    # The raw steps on the same files: pypdf text, then encode the same texts (the passages).
    started = time.perf_counter()
    for path in pdfs:
        for page in PdfReader(path).pages:
            page.extract_text()
    raw_extract = time.perf_counter() - started
    raw_embed = raw_encode(texts)
    raw_seconds = raw_extract + raw_embed
    report(
        "PDFs",
        f"{len(pdfs)} PDFs, {pages} pages, {passages} passages (windows afterwards, not timed)",
        pages / app_seconds,
        pages / raw_seconds,
        "pages/s",
        steps,
        {"extract": raw_extract, "embed": raw_embed},
    )
    print(
        f"  then, after ready (background task): the windows of {windowed} passages in {windows_seconds:.1f} s; "
        f"ready after {app_seconds:.1f} s, {app_seconds / (app_seconds + windows_seconds):.0%} of ingesting "
        "with the windows before ready"
    )


def bench_passages(path: Path, limit: int) -> None:
    from regqa.documents.embed import get_model
    from regqa.documents.models import Chunk, Document
    from regqa.documents.passages import import_passages

    lines = path.read_text(encoding="utf-8").splitlines()[:limit]
    subset = Path(tempfile.mkdtemp()) / "passages.jsonl"
    subset.write_text("\n".join(lines) + "\n", encoding="utf-8")
    get_model()
    started = time.perf_counter()
    documents = [d for d, _ in import_passages(subset, "Benchmark passages")]
    app_seconds = time.perf_counter() - started
    count = Chunk.objects.filter(document__in=documents).count()
    steps: dict[str, float] = {}
    for document in Document.objects.filter(pk__in=[d.pk for d in documents]):
        for step, seconds in document.timings.items():
            steps[step] = steps.get(step, 0.0) + seconds
    texts = embedded_texts(Chunk.objects.filter(document__in=documents).select_related("document"), with_windows=True)
    raw_seconds = raw_encode(texts)
    report(
        "Passages",
        f"{len(lines)} records, {count} passages in {len(documents)} documents",
        count / app_seconds,
        count / raw_seconds,
        "passages/s",
        steps,
        {"embed": raw_seconds},
    )


def report(name: str, what: str, app: float, raw: float, unit: str, steps: dict, raw_steps: dict) -> None:
    print(f"{name}: {what}")
    print(f"  app {app:.2f} {unit}, raw steps {raw:.2f} {unit}: the app reaches {app / raw:.0%} of raw")
    total = sum(steps.values()) or 1
    print("  app split: " + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in steps.items()))
    print("  raw split: " + ", ".join(f"{k} {v:.1f} s" for k, v in raw_steps.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdfs", type=Path, default=ROOT / "fixtures" / "pdfs")
    parser.add_argument("--passages", type=Path, help="JSON Lines passages (e.g. the ObliQA corpus)")
    parser.add_argument("--limit", type=int, default=2000, help="passages: only the first N records")
    args = parser.parse_args()
    setup_django()
    from regqa.documents.embed import get_model

    get_model()  # loading the model is not throughput
    bench_pdfs(args.pdfs)
    if args.passages:
        bench_passages(args.passages, args.limit)


if __name__ == "__main__":
    main()
