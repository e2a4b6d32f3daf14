from __future__ import annotations

from collections.abc import Iterator

from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import reswap, retarget

from . import answer as answering
from .forms import AskForm
from .models import Answer

can_ask = permission_required("qa.ask_question", raise_exception=True)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    if user.has_perm("qa.ask_question"):
        return redirect("ask")
    if user.has_perm("qa.view_answer_log"):
        return redirect("answer_log")
    return render(request, "qa/no_role.html")


@require_http_methods(["GET", "POST"])
@can_ask
def ask(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "qa/ask.html", {"form": AskForm()})
    form = AskForm(request.POST)
    if not form.is_valid():
        if not request.htmx:
            return render(request, "qa/ask.html", {"form": form}, status=422)
        # Show the errors in place of the form, not in the result area the form targets.
        response = render(request, "qa/ask.html#form", {"form": form}, status=422)
        return reswap(retarget(response, "#ask-form"), "outerHTML")
    answer = answering.start_answer(request.user, form.cleaned_data["question"], form.filters())
    if not request.htmx:
        return redirect("answer_detail", pk=answer.pk)
    return render(request, "qa/ask.html#result", {"answer": answer})


def _own_answer(request: HttpRequest, pk: int) -> Answer:
    answer = get_object_or_404(Answer, pk=pk)
    if answer.user_id != request.user.pk and not request.user.has_perm("qa.view_answer_log"):
        raise PermissionDenied("This answer belongs to another user.")
    return answer


@require_GET
def answer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    answer = _own_answer(request, pk)
    return render(request, "qa/answer_page.html", {"answer": answer})


def _sse(event: str, html: str) -> str:
    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
    return f"event: {event}\n{data}\n\n"


@require_GET
@can_ask
def answer_stream(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Server-sent events: "status" and "token" while the model writes, then "done" with the
    finished answer (citations as links), which htmx swaps in place of the streamed text."""
    answer = get_object_or_404(Answer, pk=pk, user=request.user)

    def events() -> Iterator[str]:
        for kind, text in answering.stream_answer(answer):
            yield _sse(kind, escape(text))
        answer.refresh_from_db()
        yield _sse("done", render_to_string("qa/ask.html#answer", {"answer": answer}, request=request))

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@require_GET
@can_ask
def history(request: HttpRequest) -> HttpResponse:
    answers = Answer.objects.filter(user=request.user)[:200]
    return render(request, "qa/history.html", {"answers": answers})
