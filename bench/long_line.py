"""Where the time goes when a PDF page is one endless line of text (issue 21), and what the page
text limit (REGQA_MAX_PAGE_CHARS) buys.

    .venv/bin/python bench/long_line.py [--mb 1.5] [--limit 200000]

Writes a two-page PDF (a normal page, then one line of about --mb MB), then times each step of
ingestion (extraction in its child process, chunking, embedding, indexing) with the limit set to
--limit and with it out of the way, in one run, in a throwaway data directory.
"""

from __future__ import annotations

import argparse
import io
import time

from throwaway import setup_django

VOCABULARY = "member bank credit insider loan capital rule limit director officer".split()


def pdf_with_long_line(megabytes: float) -> bytes:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    words = []
    size = 0
    i = 0
    while size < megabytes * 1_000_000:
        word = VOCABULARY[i % 10] + VOCABULARY[(i // 10) % 10] + VOCABULARY[(i // 100) % 10] + " "
        words.append(word)
        size += len(word)
        i += 1
    for text in ("1.1 Scope. This rule applies to every member bank.", "".join(words)):
        page = writer.add_blank_page(width=612, height=792)
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})  # fmt: skip
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 11 Tf 50 740 Td ({text}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.5)
    parser.add_argument("--limit", type=int, default=200_000)
    args = parser.parse_args()
    setup_django("regqa-long-line-")
    from django.conf import settings
    from django.core.files.base import ContentFile

    from regqa.documents.ingest import ingest_document
    from regqa.documents.models import Document

    content = pdf_with_long_line(args.mb)
    print(f"PDF: {len(content) / 1e6:.2f} MB, page 2 one line of about {args.mb} MB")
    for limit in (args.limit, 10**9):
        settings.MAX_PAGE_CHARS = limit
        document = Document.objects.create(title=f"long {limit}", sha256=f"{limit:064d}"[-64:])
        document.file.save("long.pdf", ContentFile(content))
        started = time.perf_counter()
        done = ingest_document(document.pk)
        total = time.perf_counter() - started
        print(f"limit {limit:>13,}: {done.status}, {done.chunk_count} passages, {total:.1f} s; steps {done.timings}")
        print(f"   {done.status_detail[:120]}")


if __name__ == "__main__":
    main()
