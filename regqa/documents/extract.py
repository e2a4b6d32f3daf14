"""Text of every page of a PDF, extracted in a child process with time and memory limits.

A PDF is hostile input: a decompression bomb, deeply nested objects or a broken content stream
can make a parser hang or eat all memory. Running pypdf in a separate process, under
RLIMIT_AS and a timeout, turns all of those into a clear failure of that one document; the
worker carries on. The child prints one JSON object: {"pages": [...], "title": ...} or
{"error": KIND, "message": ...}.

    python -m regqa.documents.extract FILE.pdf MAX_PAGES
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys

READABLE_WORD = re.compile(r"^[A-Za-z][a-z]+[.,;:)]?$|^[A-Z]{2,}[.,;:)]?$|^\(?\d[\d.,%)]*$|^§$")


def readable_share(text: str) -> float:
    """Share of tokens that look like words or numbers: low for garbage extracted from fonts
    without a usable character map."""
    tokens = text.split()
    if not tokens:
        return 0.0
    return sum(bool(READABLE_WORD.match(t)) for t in tokens) / len(tokens)


def _extract(path: str, max_pages: int) -> dict:
    from pypdf import PdfReader  # imported in the extraction child process, under its memory limit
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            # Many "protected" PDFs only restrict printing and open with an empty password.
            try:
                if not reader.decrypt(""):
                    message = "The PDF is encrypted with a password. Upload an unprotected copy."
                    return {"error": "encrypted", "message": message}
            except (FileNotDecryptedError, NotImplementedError) as exc:
                return {"error": "encrypted", "message": f"The PDF is encrypted and cannot be opened: {exc}"}
        count = len(reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, RecursionError, AttributeError) as exc:
        return {"error": "damaged", "message": f"The PDF is damaged and cannot be read: {exc}"}
    if count == 0:
        return {"error": "empty", "message": "The PDF has no pages."}
    if count > max_pages:
        return {"error": "too_long", "message": f"The PDF has {count} pages; the limit is {max_pages}."}
    pages = []
    failed = 0
    for page in reader.pages:
        try:
            text = page.extract_text() or ""
        except Exception:  # noqa: BLE001 - pypdf raises many types on broken content streams
            text, failed = "", failed + 1
        pages.append(text)
    title = ""
    try:
        title = str(reader.metadata.get("/Title") or "").strip() if reader.metadata else ""
    except Exception:  # noqa: BLE001 - broken metadata is no reason to refuse the text
        title = ""
    return {"pages": pages, "title": title, "failed_pages": failed}


def run(path: str, max_pages: int, seconds: int, memory_mb: int) -> dict:
    """Extract in a child process; a timeout or a crash becomes an error result."""

    def limit() -> None:
        limit_bytes = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    try:
        done = subprocess.run(
            [sys.executable, "-m", "regqa.documents.extract", path, str(max_pages)],
            capture_output=True,
            timeout=seconds,
            preexec_fn=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "message": f"Reading the PDF took longer than {seconds} s; it was stopped."}
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        if "MemoryError" in tail[0]:
            message = f"Reading the PDF needed more than {memory_mb} MB of memory (a PDF bomb?); it was stopped."
        else:
            message = f"Reading the PDF crashed the text extractor: {tail[0][:300]}"
        return {"error": "crashed", "message": message}
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": "crashed", "message": "The text extractor returned no result."}


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    print(json.dumps(_extract(sys.argv[1], int(sys.argv[2]))))
