"""The analyst's pages: ask, the streamed answer (server-sent events), history, escalation on request,
and the policy page. Thin: each view checks who may do it and calls answer.py or escalate.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget
from django_htmx.middleware import HtmxDetails

from regqa import streaming
from regqa.audit import log as audit_log
from regqa.audit.models import EventKind

from . import answer as answering
from . import bundle, decision_model, feedback, followup, llm, memo, tasks
from . import escalate as escalating
from .forms import AskForm, FeedbackForm, FollowUpForm, PolicyForm, RetrievalTrainingForm
from .models import Answer, EscalationPolicy, EscalationState, RetrievalBundle


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails  # set by django_htmx's middleware


can_ask = permission_required("qa.ask_question", raise_exception=True)


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    user = request.user
    if user.has_perm("qa.ask_question"):
        return redirect("ask")
    if user.has_perm("qa.view_answer_log"):
        return redirect("answer_log")
    return render(request, "qa/no_role.html")


@require_http_methods(["GET", "POST"])
@can_ask
def ask(request: HtmxHttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "qa/ask.html", {"form": AskForm()})
    form = AskForm(request.POST)
    if not form.is_valid():
        if not request.htmx:
            return render(request, "qa/ask.html", {"form": form}, status=422)
        # Show the errors in place of the form, not in the result area the form targets.
        response = render(request, "qa/ask.html#form", {"form": form}, status=422)
        return reswap(retarget(response, "#ask-form"), "outerHTML")
    follows = None
    if form.cleaned_data.get("follows"):
        follows = Answer.objects.filter(pk=form.cleaned_data["follows"], user_id=request.user.pk or 0).first()
        if follows is None:
            return HttpResponse("A follow-up continues one of your own answers.", status=404)
    answer = answering.start_answer(
        request.user, form.cleaned_data["question"], form.filters(), follows=follows, asked=form.cleaned_data["asked"]
    )
    if not request.htmx:
        return redirect("answer_detail", pk=answer.pk)
    return render(request, "qa/ask.html#result", {"answer": answer})


def _own_answer(request: HtmxHttpRequest, pk: int) -> Answer:
    answer = get_object_or_404(Answer, pk=pk)
    if answer.user_id != request.user.pk and not request.user.has_perm("qa.view_answer_log"):
        raise PermissionDenied("This answer belongs to another user.")
    return answer


@require_GET
def answer_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    answer = _own_answer(request, pk)
    return render(request, "qa/answer_page.html", {"answer": answer})


@require_GET
def answer_instant(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The instant quote from the passages, requested by the page once they are shown (built then,
    answer.quote_for); empty if no passage sentence could be quoted."""
    answer = answering.quote_for(_own_answer(request, pk).pk)
    if not answer.instant.get("text"):
        return HttpResponse("")
    return render(request, "qa/ask.html#instant", {"answer": answer})


@require_GET
def answer_memo(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The answer as a PDF memo for the compliance file (its asker, or an auditor); audited."""
    answer = _own_answer(request, pk)
    if not answer.is_final:
        return HttpResponse("The memo can be made once the answer is finished.", status=409)
    response = HttpResponse(memo.export(answer, request.user), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="regqa-answer-{answer.pk}.pdf"'
    return response


def _sse(event: str, html: str) -> str:
    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
    return f"event: {event}\n{data}\n\n"


@require_GET
@can_ask
def answer_stream(request: HtmxHttpRequest, pk: int) -> StreamingHttpResponse:
    """Server-sent events: "status" and "token" while the model writes, then "done" with the
    finished answer (citations as links), which htmx swaps in place of the streamed text. Under
    ASGI an answer waiting for the model holds no thread (answer.queued_for_model)."""
    answer = get_object_or_404(Answer, pk=pk, user=request.user)
    pending = answer.status == Answer.Status.PENDING
    return _event_stream(
        request, pending, lambda ticket: _events(request, answer, answering.stream_answer(answer, ticket=ticket))
    )


def _event_stream(
    request: HtmxHttpRequest, for_model: bool, make: Callable[[llm.Ticket | None], Iterator[str]]
) -> StreamingHttpResponse:
    return streaming.event_stream(answering.answer_events(streaming.is_async(request), for_model, make, _waiting))


def _waiting(place: int) -> str:
    return _sse("status", answering.waiting_status(place))


def _events(request: HtmxHttpRequest, answer: Answer, steps: Iterator[tuple[str, str]]) -> Iterator[str]:
    """The (kind, text) steps of a model writing an answer as server-sent events, then "done"
    with the answer as it now stands."""
    for kind, text in steps:
        yield _sse(kind, escape(text))
    answer.refresh_from_db()
    yield _sse("done", render_to_string("qa/ask.html#answer", {"answer": answer}, request=request))


@require_POST
@can_ask
def follow_up(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """A follow-up to one of the analyst's answers: RegQA proposes it as a standalone question
    (followup.rewrite), which the analyst confirms or edits before it is asked."""
    answer = get_object_or_404(Answer, pk=pk, user=request.user)
    form = FollowUpForm(request.POST)
    if not form.is_valid():
        context = {"answer": answer, "follow_up_form": form}
        if not request.htmx:
            return render(request, "qa/answer_page.html", context, status=422)
        return render(request, "qa/ask.html#follow_up", context, status=422)
    text = form.cleaned_data["text"]
    rewritten = followup.rewrite(answer.question, text)
    confirm = AskForm(initial={"question": rewritten, "follows": answer.pk, "asked": text})
    context = {"answer": answer, "form": confirm, "rewritten": rewritten != text}
    if not request.htmx:
        return render(request, "qa/follow_up.html", context)
    return render(request, "qa/ask.html#follow_up_confirm", context)


@require_POST
@can_ask
def give_feedback(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The asker says whether the answer helped, and which cited passages were the wrong ones."""
    answer = get_object_or_404(Answer, pk=pk, user=request.user)
    if not answer.is_final:
        return HttpResponse("Feedback can be given once the answer is finished.", status=409)
    form = FeedbackForm(answer, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        feedback.give(answer, request.user, data["verdict"], data["wrong_passages"], data["comment"])
    if not request.htmx:
        return redirect("answer_detail", pk=answer.pk)
    status = 200 if form.is_valid() else 422
    return render(request, "qa/ask.html#feedback", {"answer": answer, "feedback_form": form}, status=status)


@require_POST
@can_ask
def escalate(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The analyst asks for the large model on a finished answer; the policy decides."""
    answer = get_object_or_404(Answer, pk=pk, user=request.user)
    busy = answer.escalation_state in (EscalationState.PENDING, EscalationState.STREAMING)
    if not answer.is_final or busy or answer.answered_by == "large":
        return HttpResponse("This answer cannot be sent to the large model now.", status=409)
    decision = escalating.decide(answer, requested=True)
    if decision.action == "refuse":
        audit_log.record(
            EventKind.ANSWER_ESCALATION_REFUSED,
            f"Escalation refused: {answer.question[:200]}",
            user=request.user,
            data={"answer_id": answer.pk, "policy_version": decision.policy_version, "reasons": decision.reasons},
        )
    if not request.htmx:
        return redirect("answer_detail", pk=answer.pk)
    return render(request, "qa/ask.html#answer", {"answer": answer})


@require_GET
@can_ask
def escalation_stream(request: HtmxHttpRequest, pk: int) -> StreamingHttpResponse:
    """Server-sent events of the large model's answer, then "done" with the whole answer."""
    answer = get_object_or_404(Answer, pk=pk, user=request.user)
    return _event_stream(request, False, lambda ticket: _events(request, answer, escalating.stream_escalation(answer)))


@require_http_methods(["GET", "POST"])
@permission_required("qa.manage_policy", raise_exception=True)
def policy(request: HtmxHttpRequest) -> HttpResponse:
    """The escalation policy: every save is a new version; earlier versions stay listed."""
    current = escalating.current_policy()
    if request.method == "POST":
        form = PolicyForm(request.POST)
        if form.is_valid():
            new = form.save(commit=False)
            new.created_by = request.user
            new.save()
            audit_log.record_policy(new, request.user)
            return redirect("policy")
    else:
        form = PolicyForm(instance=current if current.pk else None, initial={"note": ""})
        form.initial["note"] = ""
    versions = EscalationPolicy.objects.select_related("created_by")[:50]
    return render(
        request,
        "qa/policy.html",
        {"form": form, "current": current, "versions": versions, "large_model": escalating.endpoint_label()},
        status=200 if request.method == "GET" or form.is_valid() else 422,
    )


@require_GET
@can_ask
def history(request: HtmxHttpRequest) -> HttpResponse:
    answers = Answer.objects.filter(user_id=request.user.pk or 0)[:200]
    return render(request, "qa/history.html", {"answers": answers})


# ---------------------------------------------------------------------------------------------
# Retrieval models (admins)


def _retrieval_context(form: RetrievalTrainingForm | None = None) -> dict:
    bundles = list(RetrievalBundle.objects.select_related("created_by")[:50])
    return {
        "form": form or RetrievalTrainingForm(),
        "bundles": bundles,
        "active": bundle.active(),
        "decision": decision_model.active(),
        "polling": any(b.status in (RetrievalBundle.Status.TRAINING, RetrievalBundle.Status.WRITING) for b in bundles),
    }


@require_http_methods(["GET", "POST"])
@permission_required("qa.manage_retrieval", raise_exception=True)
def retrieval(request: HtmxHttpRequest) -> HttpResponse:
    """Bundles with their figures; a pairs file, analysts' feedback or questions to write, posted
    here, are trained on in the background."""
    if request.method == "POST":
        form = RetrievalTrainingForm(request.POST, request.FILES)
        if form.is_valid():
            _, sha256 = form.store()
            record = RetrievalBundle.objects.create(
                created_by_id=request.user.pk,
                pairs_file=form.source_names(),
                pairs_sha256=sha256,
                synthetic_requested=form.cleaned_data["synthetic"] or 0,
                folds=form.cleaned_data["folds"],
                fine_tune_embedder=form.cleaned_data["fine_tune_embedder"],
            )
            folds = form.cleaned_data["folds"]
            transaction.on_commit(lambda: tasks.train_retrieval.enqueue(record.pk, folds))
            return redirect("retrieval")
        return render(request, "qa/retrieval.html", _retrieval_context(form), status=422)
    return render(request, "qa/retrieval.html", _retrieval_context())


@require_GET
@permission_required("qa.manage_retrieval", raise_exception=True)
def retrieval_rows(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "qa/retrieval.html#rows", _retrieval_context())


@require_POST
@permission_required("qa.manage_retrieval", raise_exception=True)
def retrieval_activate(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(RetrievalBundle, pk=pk)
    try:
        bundle.activate(record, user=request.user, reason="activated by hand")
    except bundle.BundleError as exc:
        return HttpResponse(str(exc), status=409)
    return redirect("retrieval")


@require_POST
@permission_required("qa.manage_retrieval", raise_exception=True)
def retrieval_resume(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Start again a bundle whose worker stopped (the questions already written are kept)."""
    record = get_object_or_404(RetrievalBundle, pk=pk)
    if not record.resumable:
        return HttpResponse(f"{record.label} is {record.get_status_display().lower()}: nothing to resume.", status=409)
    transaction.on_commit(lambda: tasks.train_retrieval.enqueue(record.pk, record.folds))
    return redirect("retrieval")


@require_POST
@permission_required("qa.manage_retrieval", raise_exception=True)
def retrieval_rollback(request: HtmxHttpRequest) -> HttpResponse:
    try:
        bundle.rollback(user=request.user)
    except bundle.BundleError as exc:
        return HttpResponse(str(exc), status=409)
    return redirect("retrieval")
