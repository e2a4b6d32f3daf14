"""The answer log, for auditors: every answer by every user."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.contrib.auth.decorators import permission_required
from django.core.exceptions import BadRequest
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from regqa import streaming
from regqa.documents.models import Document
from regqa.qa.models import Answer

from . import export
from . import log as audit_log
from .models import AuditEvent, EventKind

can_audit = permission_required("qa.view_answer_log", raise_exception=True)


@require_GET
@can_audit
def answer_log(request: HttpRequest) -> HttpResponse:
    """Every user's answers, newest first, filtered by date, user, model, status and text."""
    answers = _filtered_answers(request).order_by("-created_at", "-pk")
    page = Paginator(answers, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audit/log.html",
        {
            "page": page,
            "args": request.GET,
            "query": query.urlencode(),
            "statuses": Answer.Status.choices,
            "feedback_choices": [
                ("helpful", "helpful"),
                ("not_helpful", "not helpful"),
                ("wrong_passage", "a passage marked wrong"),
                ("none", "none given"),
            ],
            "escalation_choices": [
                ("yes", "sent to the large model"),
                ("no", "not sent"),
                ("refused", "refused by policy"),
            ],
            "documents": Document.objects.order_by("title").only("pk", "title", "version"),
        },
    )


def _filtered_answers(request: HttpRequest):
    try:
        return export.answers(request.GET)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


@require_GET
@can_audit
def log_entry(request: HttpRequest, pk: int) -> HttpResponse:
    answer = get_object_or_404(Answer.objects.select_related("user"), pk=pk)
    context = {
        "answer": answer,
        "escalations": answer.escalations.order_by("pk"),
        "feedback": answer.feedback.select_related("user").order_by("pk"),
    }
    return render(request, "audit/entry.html", context)


ANSWER_CSV_COLUMNS = [
    "id", "created_at", "user", "question", "status", "answer", "citations", "passages",
    "model", "retrieval_ms", "first_token_ms", "total_ms", "error", "verification", "quality_min", "quality",
    "answered_by", "routing", "routing_reasons", "policy_version", "escalation",
    "feedback", "feedback_wrong_passages", "feedback_comment", "source_amended", "amended_passages",
]  # fmt: skip


@require_GET
@permission_required("qa.export_answer_log", raise_exception=True)
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Streamed CSV of the answers the log's filters select, oldest first."""
    answers = _filtered_answers(request).prefetch_related("feedback").order_by("pk")  # per chunk of 500

    def rows() -> Iterator[list]:
        for a in answers.iterator(chunk_size=500):
            passages = [
                p.model_dump(include={"n", "chunk_id", "document_title", "page_start", "score"}) for p in a.snapshot
            ]
            route = a.route
            yield [
                a.pk, a.created_at.isoformat(), a.user.username, a.question, a.status, a.answer_text,
                json.dumps(a.citations), json.dumps(passages), a.model_name, a.retrieval_ms,
                a.first_token_ms, a.total_ms, a.error, a.verification_status, a.quality_min,
                json.dumps({k: v.score for k, v in a.scores.items()}),
                a.answered_by, route.action if route else "", "; ".join(route.reasons) if route else "",
                route.policy_version if route and route.policy_version is not None else "", a.escalation_state,
                *_feedback_columns(a), a.source_amended,
                json.dumps([{k: m.get(k) for k in ("n", "status", "old_version", "new_version", "new_page")}
                            for m in a.amendments]),
            ]  # fmt: skip

    filters = {k: v for k, v in request.GET.items() if v}
    audit_log.record(
        EventKind.LOG_EXPORTED,
        "Answer log exported as CSV",
        user=request.user,
        data={"format": "csv", "filter": filters},
    )
    response = streaming.response(request, export.csv_lines(ANSWER_CSV_COLUMNS, rows()), "text/csv")
    response["Content-Disposition"] = 'attachment; filename="regqa-answer-log.csv"'
    return response


def _feedback_columns(answer: Answer) -> list:
    """The asker's latest feedback (the prefetched rows, newest first)."""
    given = next((f for f in answer.feedback.all() if f.user_id == answer.user_id), None)
    return [given.verdict, json.dumps(given.wrong_passages), given.comment] if given else ["", "", ""]


@require_GET
@can_audit
def trail(request: HttpRequest) -> HttpResponse:
    """Audit events matching the filter, newest first; ?verify=1 also walks the hash chain."""
    args = _export_args(request)
    qs, _ = export.filtered(**args)
    page = Paginator(qs.order_by("-seq"), 50).get_page(request.GET.get("page"))
    verification = audit_log.verify() if request.GET.get("verify") else None
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("verify", None)
    kinds = EventKind.choices
    return render(
        request,
        "audit/trail.html",
        {"page": page, "verification": verification, "query": query.urlencode(), "kinds": kinds, "args": request.GET},
    )


def _export_args(request: HttpRequest) -> dict:
    try:
        export.refuse_null_characters(request.GET)
        since, until = (export.parse_when(request.GET.get(name)) for name in ("since", "until"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return {
        "since": since,
        "until": until,
        "actor": request.GET.get("actor", ""),
        "kind": request.GET.get("kind", ""),
        "text": request.GET.get("q", ""),
        "model": request.GET.get("model", ""),
    }


@require_GET
@permission_required("qa.export_answer_log", raise_exception=True)
def export_trail(request: HttpRequest, fmt: str) -> HttpResponseBase:
    """The filtered trail as JSON Lines (manifest first) or CSV (manifest: ?manifest=1)."""
    if fmt not in ("jsonl", "csv"):
        raise Http404("Export formats: jsonl, csv")
    qs, head = export.begin(request.user, fmt, **_export_args(request))
    if request.GET.get("manifest"):
        response = HttpResponse(json.dumps(head, indent=1), content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="regqa-audit-manifest.json"'
        return response
    return export.streamed(request, qs, head, fmt)


@require_GET
@can_audit
def trail_entry(request: HttpRequest, seq: int) -> HttpResponse:
    event = get_object_or_404(AuditEvent, seq=seq)
    pretty = json.dumps(event.data, indent=2, ensure_ascii=False)
    return render(request, "audit/trail_entry.html", {"event": event, "pretty": pretty})
