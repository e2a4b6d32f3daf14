"""The REST API under /api/ (django-ninja): the OpenAPI 3 schema at /api/openapi.json, interactive
docs at /api/docs.

Callers authenticate with a personal API token (`Authorization: Bearer rqa_…`, tokens.py), never
with the browser session, so a page on another site cannot make a logged-in browser call it. A
token carries exactly its owner's role: each operation checks the permission the matching page
checks, and calls the same code (answer.py, upload.py, audit/export.py). Every error is JSON of one
shape, `{"code", "message", "fields"}`, with the message the page would show.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from ninja import File, Form, NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.files import UploadedFile
from ninja.security import HttpBearer
from pydantic import Field

from regqa import streaming
from regqa.audit import export
from regqa.documents.checks import IngestError
from regqa.documents.forms import UploadForm
from regqa.documents.models import Document
from regqa.documents.upload import accept_upload
from regqa.qa import answer as answering
from regqa.qa import escalate as escalating
from regqa.qa import llm, memo
from regqa.qa.forms import AskForm
from regqa.qa.models import Answer, EscalationState

from . import tokens
from .schemas import AnswerList, AnswerOut, AskIn, DocumentList, DocumentOut, Error, Manifest, Me

log = logging.getLogger("regqa.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        try:
            user = tokens.authenticate(token)
        except tokens.TokenRefused as exc:
            raise ApiError(401, "not_authenticated", str(exc)) from None
        request.user = user  # the code behind the API reads request.user, as the pages do
        return user


api = NinjaAPI(
    title="RegQA API",
    version="1",
    description="Ask questions of the institution's documents, read answers with their passages, citations, "
    "checks and scores, upload documents and export the audit trail. Authenticate with a personal API token "
    "(Profile → API tokens): `Authorization: Bearer rqa_…`. A token can do what its owner's role can.",
    auth=TokenAuth(),
    urls_namespace="api",
)

MAX_ID = 2**63 - 1  # the databases' largest integer: a larger id or offset is refused (422), never sent to them
Id = Annotated[int, Field(ge=1, le=MAX_ID)]

# What each status code means for every operation that can return it.
UNAUTHENTICATED = {401: Error}
ERRORS = {401: Error, 403: Error}
BODY_ERRORS = {400: Error, 422: Error, **ERRORS}  # 400: a body that cannot be parsed at all


def ok_body(description: str, content: dict) -> dict:
    """OpenAPI for a 200 that is not JSON (a stream, a file): its description and media types."""
    return {"responses": {200: {"description": description, "content": content}}}


def _error(request: HttpRequest, status: int, code: str, message: str, fields: dict | None = None) -> HttpResponse:
    return api.create_response(request, {"code": code, "message": message, "fields": fields or {}}, status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return _error(request, exc.status, exc.code, exc.message, exc.fields)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    message = "An API token is required: send the header 'Authorization: Bearer rqa_…' (create one under API tokens)."
    return _error(request, 401, "not_authenticated", message)


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return _error(request, 403, "forbidden", str(exc) or "You are not allowed to do this.")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", str(exc) or "Not found.")


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields: dict[str, list[str]] = {}
    for error in exc.errors:
        where = [str(part) for part in error.get("loc", []) if part not in ("body", "query", "form", "file", "payload")]
        fields.setdefault(".".join(where) or "request", []).append(str(error.get("msg", "invalid")))
    first = next(iter(fields.items()))
    return _error(request, 422, "invalid", f"{first[0]}: {first[1][0]}", fields)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {400: "bad_request", 405: "method_not_allowed"}.get(exc.status_code, "invalid")
    return _error(request, exc.status_code, code if exc.status_code < 500 else "server_error", str(exc))


@api.exception_handler(Exception)
def _server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("API %s %s failed", request.method, request.path)
    return _error(request, 500, "server_error", "RegQA could not complete this request; the error is logged.")


def need(request: HttpRequest, permission: str) -> None:
    """Refuse unless the caller's role has `permission` (app_label.codename)."""
    if request.user.has_perm(permission):
        return
    app_label, codename = permission.split(".")
    name = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    raise PermissionDenied(f"You are not allowed to do this: it needs “{name.name if name else permission}”.")


def _form_error(form, status: int = 422) -> ApiError:
    fields = {name: [str(m) for m in messages] for name, messages in form.errors.items()}
    first = next(iter(fields.values()))[0]
    return ApiError(status, "invalid", first, fields)


# ---------------------------------------------------------------------------------------------
# Who am I


@api.get("/me", response={200: Me, **UNAUTHENTICATED}, tags=["account"])
def me(request: HttpRequest):
    """The token's owner, their roles and permissions."""
    user = request.user
    return {
        "username": user.get_username(),
        "roles": sorted(user.groups.values_list("name", flat=True)),
        "permissions": sorted(user.get_all_permissions()),
    }


# ---------------------------------------------------------------------------------------------
# Answers


def answer_json(request: HttpRequest, answer: Answer) -> dict[str, Any]:
    passages = []
    for p in answer.snapshot:
        link = reverse("document_page", args=[p.document_id, p.page_start]) if p.page_start else ""
        passages.append(
            p.model_dump(include=set(PASSAGE_FIELDS))
            | {"url": request.build_absolute_uri(f"{link}?chunk={p.chunk_id}") if link else ""}
        )
    return {
        "id": answer.pk,
        "url": request.build_absolute_uri(reverse("answer_detail", args=[answer.pk])),
        "question": answer.question,
        "asked_by": answer.user.get_username(),
        "created_at": answer.created_at,
        "status": answer.status,
        "status_label": answer.get_status_display(),
        "answer": answer.answer_text,
        "citations": answer.citations,
        "passages": passages,
        "verification": answer.verification,
        "quality": answer.quality,
        "quality_min": answer.quality_min,
        "routing": answer.routing,
        "escalation_state": answer.escalation_state,
        "answered_by": answer.answered_by,
        "model": answer.model_name,
        "retrieval_bundle": answer.retrieval_bundle,
        "filters": answer.filters,
        "error": answer.error,
        "feedback": answer.feedback_verdict,
        "source_amended": answer.source_amended,
        "amendments": answer.amendments,
        "timings": {k: getattr(answer, k) for k in ("retrieval_ms", "first_token_ms", "total_ms", "check_ms")},
    }


PASSAGE_FIELDS = (
    "n", "chunk_id", "document_id", "document_title", "document_version", "section",
    "page_start", "page_end", "text", "score", "sent_to_model",
)  # fmt: skip


def _ask_form(request: HttpRequest, body: AskIn) -> AskForm:
    need(request, "qa.ask_question")
    form = AskForm(body.dict())
    if not form.is_valid():
        raise _form_error(form)
    return form


@api.post("/answers", response={201: AnswerOut, **BODY_ERRORS}, tags=["answers"])
def ask(request: HttpRequest, body: AskIn):
    """Ask a question and wait for the finished answer (the model takes from seconds to minutes;
    `POST /api/answers/stream` sends the passages at once and the answer as it is written)."""
    form = _ask_form(request, body)
    answer = answering.answer_question(request.user, form.cleaned_data["question"], form.filters())
    return Status(201, answer_json(request, answer))


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


def _waiting(place: int) -> str:
    return _sse("status", {"text": answering.waiting_status(place)})


@api.post(
    "/answers/stream",
    response={200: None, **BODY_ERRORS},
    tags=["answers"],
    openapi_extra=ok_body(
        "Server-sent events, as the web page receives them: `answer` (the answer with its "
        'passages, at once), then `status` and `token` ({"text": …}) while the model writes, then `done` '
        "(the finished answer, as GET /api/answers/{id} returns it).",
        {"text/event-stream": {"schema": {"type": "string"}}},
    ),
)
def ask_stream(request: HttpRequest, body: AskIn):
    """Ask a question and receive the answer as server-sent events while it is written."""
    form = _ask_form(request, body)
    answer = answering.start_answer(request.user, form.cleaned_data["question"], form.filters())
    first = _sse("answer", answer_json(request, answer))

    def events(ticket: llm.Ticket | None = None) -> Iterator[str]:
        if answer.status == Answer.Status.PENDING:
            for kind, text in answering.stream_answer(answer, ticket=ticket):
                yield _sse(kind, {"text": text})
        answer.refresh_from_db()
        if answer.escalation_state == EscalationState.PENDING:
            for kind, text in escalating.stream_escalation(answer):
                yield _sse(kind, {"text": text})
            answer.refresh_from_db()
        yield _sse("done", answer_json(request, answer))

    pending = answer.status == Answer.Status.PENDING
    stream = answering.answer_events(streaming.is_async(request), pending, events, _waiting, head=(first,))
    return streaming.event_stream(stream)


class AnswerFilters(Schema):
    since: str = ""
    until: str = ""
    actor: str = ""
    model: str = ""
    status: str = ""
    q: str = ""
    document: str = ""
    quality: str = ""
    verification: str = ""
    feedback: str = ""
    amended: str = ""
    escalated: str = ""
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=MAX_ID)


@api.get("/answers", response={200: AnswerList, 422: Error, **ERRORS}, tags=["answers"])
def answers(request: HttpRequest, filters: Query[AnswerFilters]):
    """The caller's answers, newest first; auditors see everyone's. Filters as on the answer log:
    since/until (YYYY-MM-DD or a date and time), actor (username), model, status, q (question
    text), document (id), quality (lowest score at most), verification, escalated (yes, no, refused)."""
    user = request.user
    if not (user.has_perm("qa.ask_question") or user.has_perm("qa.view_answer_log")):
        need(request, "qa.ask_question")
    params = {k: v for k, v in filters.dict().items() if k not in ("limit", "offset") and v}
    try:
        qs = export.answers(params)
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    if not user.has_perm("qa.view_answer_log"):
        qs = qs.filter(user_id=user.pk or 0)
    qs = qs.order_by("-created_at", "-pk")
    page = qs[filters.offset : filters.offset + filters.limit]
    return {"count": qs.count(), "items": [answer_json(request, a) for a in page]}


@api.get("/answers/{answer_id}", response={200: AnswerOut, 404: Error, 422: Error, **ERRORS}, tags=["answers"])
def answer(request: HttpRequest, answer_id: Id):
    """One answer with its passages, citations, verification, quality scores and routing decision."""
    return answer_json(request, _readable(request, answer_id))


def _readable(request: HttpRequest, answer_id: int) -> Answer:
    found = get_object_or_404(Answer.objects.select_related("user"), pk=answer_id)
    if found.user_id != request.user.pk and not request.user.has_perm("qa.view_answer_log"):
        raise PermissionDenied("This answer belongs to another user.")
    return found


@api.get(
    "/answers/{answer_id}/memo",
    response={200: None, 404: Error, 409: Error, 422: Error, **ERRORS},
    tags=["answers"],
    openapi_extra=ok_body(
        "The answer as a PDF memo for the compliance file (as the page's Memo (PDF)).",
        {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    ),
)
def answer_memo(request: HttpRequest, answer_id: Id):
    """The answer as a PDF memo: question, answer and its verification, scores, routing, cited
    passages with document versions and pages, model, and the audit entry's hash. Audited."""
    found = _readable(request, answer_id)
    if not found.is_final:
        raise ApiError(409, "conflict", "The memo can be made once the answer is finished.")
    response = HttpResponse(memo.export(found, request.user), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="regqa-answer-{found.pk}.pdf"'
    return response


# ---------------------------------------------------------------------------------------------
# Documents (admins)


def document_json(document: Document) -> dict[str, Any]:
    return {
        "id": document.pk,
        "title": document.title,
        "status": document.status,
        "status_label": document.get_status_display(),
        "status_detail": document.status_detail,
        "progress": document.progress,
        "page_count": document.page_count,
        "passage_count": document.chunk_count,
        "version": document.version,
        "supersedes": document.supersedes_id,
        "issuer": document.issuer,
        "jurisdiction": document.jurisdiction,
        "doc_type": document.doc_type,
        "effective_date": document.effective_date,
        "sensitivity": document.sensitivity,
        "tags": document.tags,
        "original_name": document.original_name,
        "sha256": document.sha256,
        "size_bytes": document.size_bytes,
        "uploaded_by": document.uploaded_by.get_username() if document.uploaded_by else "",
        "created_at": document.created_at,
        "ingested_at": document.ingested_at,
    }


class UploadIn(Schema):
    title: str = ""
    issuer: str = ""
    jurisdiction: str = ""
    doc_type: str = ""
    effective_date: str = ""
    sensitivity: str = ""
    tags: str = ""
    supersedes: str = ""


OPTIONAL_FILE = File(None)  # optional, so a refused upload gets its reason, not "field required"


@api.post("/documents", response={201: DocumentOut, 413: Error, **BODY_ERRORS}, tags=["documents"])
def upload(request: HttpRequest, metadata: Form[UploadIn], file: UploadedFile | None = OPTIONAL_FILE):
    """Upload one PDF (multipart field `file`) with its metadata; it is ingested in the background:
    poll GET /api/documents/{id} until its status is ready (or failed, with the reason)."""
    need(request, "documents.manage_documents")
    if refused := getattr(request, "upload_refused", ""):  # the body was too large to read (upload.py)
        raise ApiError(413, "too_large", refused)
    if too_large := getattr(request, "refused_uploads", []):
        raise ApiError(413, "too_large", too_large[0])
    files = MultiValueDict({"files": [file] if file else []})
    form = UploadForm({k: v for k, v in metadata.dict().items() if v}, files)
    if not form.is_valid():
        raise _form_error(form)
    try:
        document = accept_upload(file, form.cleaned_data, request.user)
    except IngestError as exc:
        raise ApiError(422, "invalid", f"{file.name}: {exc}" if file else str(exc), {"file": [str(exc)]}) from None
    return Status(201, document_json(document))


@api.get("/documents", response={200: DocumentList, **ERRORS}, tags=["documents"])
def documents(request: HttpRequest):
    """Every document in the library, newest first, with its ingestion status."""
    need(request, "documents.manage_documents")
    qs = Document.objects.select_related("uploaded_by").order_by("-created_at", "-pk")
    return {"count": qs.count(), "items": [document_json(d) for d in qs]}


@api.get("/documents/{document_id}", response={200: DocumentOut, 404: Error, 422: Error, **ERRORS}, tags=["documents"])
def document(request: HttpRequest, document_id: Id):
    """One document and its ingestion status (progress in percent while processing)."""
    need(request, "documents.manage_documents")
    return document_json(get_object_or_404(Document.objects.select_related("uploaded_by"), pk=document_id))


# ---------------------------------------------------------------------------------------------
# Audit trail (auditors)


class TrailFilters(Schema):
    since: str = ""
    until: str = ""
    actor: str = ""
    kind: str = ""
    q: str = ""
    model: str = ""


def _trail(request: HttpRequest, filters: TrailFilters, fmt: str):
    need(request, "qa.export_answer_log")
    try:
        since, until = export.parse_when(filters.since), export.parse_when(filters.until)
        args = {"since": since, "until": until, "actor": filters.actor, "kind": filters.kind}
        return export.begin(request.user, fmt, **args, text=filters.q, model=filters.model)
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc)) from None


@api.get(
    "/audit/export",
    response={200: None, 422: Error, **ERRORS},
    tags=["audit"],
    openapi_extra=ok_body(
        'format=jsonl: JSON Lines, the manifest first ({"manifest": …}), then one entry per '
        "line. format=csv: the entries as CSV (its manifest: GET /api/audit/manifest with the same filters "
        "and `until`).",
        {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    ),
)
def audit_export(request: HttpRequest, filters: Query[TrailFilters], format: str = "jsonl"):
    """The audit trail (filtered) with its manifest; every export is itself an audit entry."""
    if format not in ("jsonl", "csv"):
        raise ApiError(422, "invalid", "format must be jsonl or csv.", {"format": ["Choose jsonl or csv."]})
    qs, head = _trail(request, filters, format)
    return export.streamed(request, qs, head, format)


@api.get("/audit/manifest", response={200: Manifest, 422: Error, **ERRORS}, tags=["audit"])
def audit_manifest(request: HttpRequest, filters: Query[TrailFilters]):
    """The manifest of an export with these filters: count, first and last entries, chain checkpoint."""
    _, head = _trail(request, filters, "manifest")
    return head


def urls():
    """The API's URL patterns, open to callers without a session (the token is checked instead)."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        pattern.callback.login_required = False  # type: ignore[union-attr]  # LoginRequiredMiddleware
    return patterns, app_name, namespace
