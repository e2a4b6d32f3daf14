"""The admins' library pages (upload, edit, retry, delete) and the cited page or passage any reader
opens. Thin: each view checks who may do it and calls upload.py or ingest.py."""

from __future__ import annotations

import datetime
from functools import lru_cache

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required, user_passes_test
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind

from . import ingest, tasks
from .checks import IngestError
from .chunking import page_lines, running_lines, strip_running
from .forms import MetadataForm, UploadForm
from .models import Chunk, Document, Page
from .upload import accept_upload

can_manage = permission_required("documents.manage_documents", raise_exception=True)


def can_read(view):
    """Document text and pages: for those who ask questions and for auditors checking citations."""

    def allowed(user) -> bool:
        if user.has_perm("qa.ask_question") or user.has_perm("qa.view_answer_log"):
            return True
        raise PermissionDenied

    return user_passes_test(allowed)(view)


def visible(user, document: Document) -> bool:
    """Admins and auditors see every document; an analyst sees the ones ready for questions and
    the ones an answer of theirs cited (a superseded version still opens where it was cited),
    never a failed, unfinished or unreadable upload."""
    if user.has_perm("documents.manage_documents") or user.has_perm("qa.view_answer_log"):
        return True
    if document.status == Document.Status.READY:
        return True
    from regqa.qa.models import Answer  # qa depends on documents, not the reverse: only here

    cited = Answer.objects.filter(user_id=user.pk).values_list("passages", flat=True)
    return any(p.get("document_id") == document.pk for passages in cited.iterator() for p in passages or [])


def readable_document(request: HttpRequest, pk: int) -> Document:
    document = get_object_or_404(Document, pk=pk)
    if not visible(request.user, document):
        raise Http404("No such document.")
    return document


def _library_context(form: UploadForm | None = None) -> dict:
    rows = Document.objects.select_related("uploaded_by")
    if settings.WINDOW_WORDS:  # a ready document's passages whose windows the worker has yet to embed
        missing = Chunk.live.without_windows().filter(document=OuterRef("pk")).values("document")
        rows = rows.annotate(windows_waiting=Coalesce(Subquery(missing.annotate(n=Count("pk")).values("n")), 0))
    else:
        rows = rows.annotate(windows_waiting=Value(0))
    documents = list(rows)
    return {
        "documents": documents,
        "form": form or UploadForm(),
        "polling": any(d.is_pending or d.windows_waiting for d in documents),
        "max_upload_mb": settings.MAX_UPLOAD_MB,
    }


@require_GET
@can_manage
def library(request: HttpRequest) -> HttpResponse:
    return render(request, "documents/library.html", _library_context())


@require_GET
@can_manage
def library_rows(request: HttpRequest) -> HttpResponse:
    """Polled by htmx while documents are being ingested."""
    return render(request, "documents/library.html#rows", _library_context())


@require_POST
@can_manage
def upload(request: HttpRequest) -> HttpResponse:
    """One or more PDFs. Accepted files are stored and queued; each refused file is named with its
    reason; nothing accepted is lost because another file was refused."""
    form = UploadForm(request.POST, request.FILES)
    refused_body = getattr(request, "upload_refused", "")  # a body too large to read at all (upload.py)
    if refused_body:
        form = UploadForm()
        form.cleaned_data = {}  # an unbound form carrying only this error
        form.add_error(None, refused_body)
        return render(request, "documents/library.html", _library_context(form), status=413)
    too_large = getattr(request, "refused_uploads", [])  # files skipped unread at the size limit
    if not form.is_valid():
        for reason in too_large:
            form.add_error("files", reason)
        return render(request, "documents/library.html", _library_context(form), status=422)
    accepted, refused = [], list(too_large)
    for upload in form.cleaned_data["files"]:
        try:
            accepted.append(accept_upload(upload, form.cleaned_data, request.user))
        except IngestError as exc:
            refused.append(f"{upload.name}: {exc}")
    if not accepted:
        for reason in refused:
            form.add_error("files", reason)
        return render(request, "documents/library.html", _library_context(form), status=422)
    for document in accepted:
        messages.success(request, f"“{document.original_name}” was uploaded and is being ingested.")
    for reason in refused:
        messages.error(request, f"Not uploaded: {reason}")
    return redirect("library")


@require_http_methods(["GET", "POST"])
@can_manage
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document, pk=pk)
    form = MetadataForm(request.POST or None, instance=document)
    if request.method == "POST" and form.is_valid():
        document = form.save(commit=False)
        document.title_from_file = False
        document.save()
        audit_log.record_document(EventKind.DOCUMENT_EDITED, document, user=request.user)
        messages.success(request, f"“{document.title}” was updated.")
        return redirect("library")
    status = 422 if form.errors else 200
    return render(request, "documents/edit.html", {"form": form, "document": document}, status=status)


@require_POST
@can_manage
def retry(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document, pk=pk)
    if not document.can_retry:
        messages.error(request, f"“{document.title}” is {document.get_status_display().lower()}: nothing to retry.")
        return redirect("library")
    Document.objects.filter(pk=pk).update(
        status=Document.Status.QUEUED, status_detail="", progress=0, queued_at=timezone.now()
    )
    audit_log.record_document(EventKind.DOCUMENT_RETRIED, document, user=request.user)
    transaction.on_commit(lambda: tasks.ingest_document.enqueue(document.pk), robust=True)
    return redirect("library")


@require_POST
@can_manage
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document, pk=pk)
    with transaction.atomic():
        audit_log.record_document(EventKind.DOCUMENT_DELETED, document, user=request.user)
        ingest.delete_document(document)
    messages.success(request, f"“{document.title}” was deleted and removed from the index.")
    return redirect("library")


@require_GET
@can_read
def document_file(request: HttpRequest, pk: int) -> FileResponse:
    """The stored PDF, as a download that cannot run in the app's origin: a sandboxing CSP, no
    MIME sniffing, and a file name sanitised by Django (RFC 6266 filename*)."""
    document = readable_document(request, pk)
    if not document.file:
        raise Http404("This document has no stored file.")
    response = FileResponse(
        document.file.open("rb"), content_type="application/pdf", filename=document.original_name or "document.pdf",
        as_attachment=True,
    )  # fmt: skip
    response["Content-Security-Policy"] = "sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@can_read
def page(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    document = readable_document(request, pk)
    page = get_object_or_404(Page, document=document, number=number)
    highlight, parts = None, None
    if (chunk_id := request.GET.get("chunk", "")).isdigit():
        highlight = Chunk.objects.filter(pk=chunk_id, document=document).first()
        if highlight:
            parts = split_span(highlight.text, request.GET.get("span", ""))
    context = {
        "document": document,
        "page": page,
        "page_text": page_text(document, page.number),
        "highlight": highlight,
        "parts": parts,
        # the PDF page itself (PDF.js), with the supporting sentence (or the passage) marked on it
        "pdf": bool(document.file),
        "mark": (parts[1] or highlight.text) if highlight and parts else "",
    }
    return render(request, "documents/page.html", context)


def page_text(document: Document, number: int) -> str:
    """A page's extracted text without the running headers and footers ingestion drops too (found
    once per ingestion of the document, not on every page view)."""
    text = document.pages.filter(number=number).values_list("text", flat=True).first()
    if text is None:
        return ""
    return "\n".join(strip_running(page_lines(text), _running_lines(document.pk, document.ingested_at)))


@lru_cache(maxsize=64)
def _running_lines(document_id: int, ingested_at: datetime.datetime | None) -> frozenset[str]:
    """The document's running headers and footers; `ingested_at` keys the cache, so a document
    ingested again is read again."""
    texts = Page.objects.filter(document_id=document_id).order_by("number").values_list("text", flat=True)
    return frozenset(running_lines([page_lines(t) for t in texts.iterator()]))


def split_span(text: str, span: str) -> tuple[str, str, str]:
    """(before, highlighted, after) for a "start-end" character span of `text`; the whole text
    is highlighted when the span is missing or out of range."""
    start, _, end = span.partition("-")
    if start.isdigit() and end.isdigit() and 0 <= int(start) < int(end) <= len(text):
        return text[: int(start)], text[int(start) : int(end)], text[int(end) :]
    return "", text, ""


@require_GET
@can_read
def passage(request: HttpRequest, chunk_id: int) -> HttpResponse:
    chunk = get_object_or_404(Chunk.objects.select_related("document"), pk=chunk_id)
    if not visible(request.user, chunk.document):
        raise Http404("No such passage.")
    parts = split_span(chunk.text, request.GET.get("span", ""))
    return render(request, "documents/passage.html", {"chunk": chunk, "parts": parts})
