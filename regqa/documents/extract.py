"""Text of every page of a PDF, extracted in a child process with time and memory limits.

A PDF is hostile input: a decompression bomb, deeply nested objects or a broken content stream
can make a parser hang or eat all memory. Running pypdf in a separate process, under
RLIMIT_AS and a timeout, turns all of those into a clear failure of that one document; the
worker carries on. The child prints one JSON object: {"pages": [...], "title": ...,
"failed_pages": [numbers], "cut_pages": [numbers], "scanned_pages": [numbers]} or {"error": KIND,
"message": ...}.

Inflating streams is capped (pypdf's limits, set from REGQA_MAX_STREAM_MB): a stream that would
inflate past it is a decompression bomb, and the document is refused as one, not taken for a scan
and handed to OCR. A page whose extraction fails is named and the other pages are kept; a page
with more text than REGQA_MAX_PAGE_CHARS is cut there (recorded), so no single page can make
chunking and embedding take minutes.

    python -m regqa.documents.extract FILE.pdf MAX_PAGES MAX_STREAM_MB MAX_PAGE_CHARS
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


def _extract(path: str, max_pages: int, max_stream_mb: int = 75, max_page_chars: int = 200_000) -> dict:
    from pypdf import PdfReader, overwrite_configuration  # imported in the child, under its memory limit
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError, PdfReadError

    cap = max_stream_mb * 1_000_000
    overwrite_configuration(
        zlib_maximum_output_length=cap,
        lzw_maximum_output_length=cap,
        run_length_maximum_output_length=cap,
        jbig2_maximum_output_length=cap,
        maximum_declared_stream_length=cap,
        array_based_stream_maximum_output_length=cap,
    )
    bomb = {
        "error": "bomb",
        "message": f"The PDF holds a compressed stream that inflates to more than {max_stream_mb} MB "
        "(a decompression bomb); it was refused, and not sent to OCR.",
    }
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            # Many "protected" PDFs only restrict printing and open with an empty password.
            try:
                if not reader.decrypt(""):
                    message = "The PDF is encrypted with a password. Upload an unprotected copy."
                    return {"error": "encrypted", "message": message}
            except (FileNotDecryptedError, NotImplementedError, DependencyError) as exc:
                return {"error": "encrypted", "message": f"The PDF is encrypted and cannot be opened: {exc}"}
        count = len(reader.pages)
    except LimitReachedError:
        return bomb
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, RecursionError, AttributeError) as exc:
        return {"error": "damaged", "message": f"The PDF is damaged and cannot be read: {exc}"}
    if count == 0:
        return {"error": "empty", "message": "The PDF has no pages."}
    if count > max_pages:
        return {"error": "too_long", "message": f"The PDF has {count} pages; the limit is {max_pages}."}
    pages = []
    failed: list[int] = []
    cut: list[int] = []
    scanned: list[int] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            # pypdf's text extraction treats a stream over the cap as empty: inflate it here first,
            # so a bomb is named as one instead of passing for a scan (and going to OCR)
            contents = page.get_contents()
            if contents is not None:
                contents.get_data()
        except LimitReachedError:
            return bomb
        except Exception:  # noqa: BLE001 - a broken content stream: extraction below decides
            pass
        try:
            text = page.extract_text() or ""
        except LimitReachedError:
            return bomb
        except Exception:  # noqa: BLE001 - pypdf raises many types on broken content streams
            text = ""
            failed.append(number)
        if len(text) > max_page_chars:
            text = text[:max_page_chars]
            cut.append(number)
        if len(text.strip()) < 20 and number not in failed and _has_image(page):
            scanned.append(number)  # an image and no text layer: a scanned page inside the PDF
        pages.append(text)
    title = ""
    try:
        title = str(reader.metadata.get("/Title") or "").strip() if reader.metadata else ""
    except Exception:  # noqa: BLE001 - broken metadata is no reason to refuse the text
        title = ""
    return {"pages": pages, "title": title, "failed_pages": failed, "cut_pages": cut, "scanned_pages": scanned}


def _has_image(page) -> bool:
    try:
        xobjects = page["/Resources"].get_object().get("/XObject")
        return bool(xobjects) and any(
            x.get_object().get("/Subtype") == "/Image" for x in xobjects.get_object().values()
        )
    except Exception:  # noqa: BLE001 - no resources, or broken ones: not a scan we can tell
        return False


def memory_limit(memory_mb: int):
    """A preexec_fn that caps the child's address space (extraction and OCR alike)."""

    def limit() -> None:
        limit_bytes = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return limit


def run(
    path: str, max_pages: int, seconds: int, memory_mb: int, max_stream_mb: int = 75, max_page_chars: int = 200_000
) -> dict:
    """Extract in a child process; a timeout or a crash becomes an error result."""
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "regqa.documents.extract",
                path,
                str(max_pages),
                str(max_stream_mb),
                str(max_page_chars),
            ],  # fmt: skip
            capture_output=True,
            timeout=seconds,
            preexec_fn=memory_limit(memory_mb),
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
    sys.setrecursionlimit(10_000)  # deeply nested but valid object trees; deeper ones fail their page
    print(json.dumps(_extract(sys.argv[1], *(int(a) for a in sys.argv[2:5]))))
