"""The orchestration of one answer: retrieve -> prompt -> stream -> verify -> decide -> route -> record.

`start_answer` retrieves and stores the passages at once (the page shows them while the model
works); `stream_answer` then runs the local model, yields the text as it is written, settles the
outcome and stores it with its timings. Each step lives in its own module; this one only calls
them in order, and holds no prompt text, model code or decision rule of its own.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from regqa import streaming
from regqa.audit import log as audit_log
from regqa.audit.models import EventKind
from regqa.documents import embed, index, lexical
from regqa.documents.models import Document

from . import escalate, followup, llm, prompts
from . import quality as quality_check
from .citations import cited_numbers
from .decision import answerable_threshold, decline_message, explain, learned_probability, quote_passages, settle
from .models import Answer, EscalationState
from .retrieve import filtered_documents, is_covered, retrieve
from .schemas import Routing, RoutingAction
from .verify import verify_answer

log = logging.getLogger("regqa.answer")


def warm_up() -> None:
    """Load the embedder, both indexes and the local model before the first question needs them."""
    embed.embed_query("warm-up")
    index.get_index().warm_up()
    lexical.get_lexical_index().search("warm-up", 1)
    try:
        model = llm.get_model()
        if isinstance(model, llm.ServerModel):
            model.check()
    except llm.ModelUnavailable as exc:
        log.error("%s", exc)  # questions will say so too; the rest of the app still works


def answerability(question: str, passages: list[dict[str, Any]]) -> float | None:
    """The local model's probability that the passages state the answer (None if it cannot
    tell: a model without a chat template, or a failure, which must not cost the answer).
    The caller holds one of the model's slots."""
    messages = prompts.answerability_messages(question, passages)
    model = llm.get_model()
    try:
        return model.yes_probability(messages)
    except Exception:
        log.exception("answerability: the model's yes/no probability could not be read")
        return None


def start_answer(
    user, question: str, filters: dict | None = None, route: bool = True, follows: Answer | None = None, asked: str = ""
) -> Answer:
    """Retrieve passages and store them. Returns an Answer that is final if nothing is relevant.
    `filters` (issuer, jurisdiction, doc_type, effective_from/until) restrict the documents.
    `follows`: the answer this question follows up, `asked` the follow-up as the analyst typed it
    (`question` is then the standalone rewrite, as the analyst confirmed or edited it)."""
    question = question.strip()
    filters = filters or {}
    started = time.perf_counter()
    passages = retrieve(question, documents=filtered_documents(filters))
    retrieval_ms = (time.perf_counter() - started) * 1000
    stored = [
        p.as_dict() | {"n": i + 1, "sent_to_model": i < settings.CONTEXT_PASSAGES} for i, p in enumerate(passages)
    ]
    answer = Answer(user=user, question=question, passages=stored, filters=filters, retrieval_ms=round(retrieval_ms, 1))
    if follows is not None:
        answer.parent = follows
        answer.follow_up = followup.record(follows, asked, question)
    answer.retrieval_bundle = passages[0].bundle if passages else ""
    sent = [p for p in stored if p["sent_to_model"]]
    learned = learned_probability(question, sent) if is_covered(passages) else None
    if not is_covered(passages):
        best = max((p.score for p in passages), default=0.0)
        why = f"Not covered: no passage reaches the relevance threshold ({best:.2f} < {settings.MIN_RELEVANCE:.2f})."
        decline_early(
            answer, stored, searched(filters), {"outcome": "not covered", "by": "relevance", "explanation": why}
        )
    elif learned is not None and learned[1] < learned[0].threshold:
        # decided from signals known now: the analyst does not wait for a draft that cannot change it
        decline_early(answer, stored, searched(filters), explain("early", {}, learned, None))
    answer.quality_min = quality_check.lowest_score(answer.quality)
    close_abandoned()
    with transaction.atomic():  # the answer and its audit record are saved together, or neither
        answer.save()
        answer.documents.set({p.document_id for p in passages})
        if answer.is_final:
            if route:
                route_answer(answer)
            audit_log.record_answer(answer)
        else:
            audit_log.record_question(answer)
    return answer


_quoting = threading.Lock()  # one quote at a time: each uses all the cores the embedder has
QUOTED_WHILE = (Answer.Status.PENDING, Answer.Status.STREAMING, Answer.Status.FAILED)


def quote_for(pk: int) -> Answer:
    """The answer with its instant quote (answer.instant), built now if it has none. Its own request,
    made by the page once the passages are shown, so asking stays a fast retrieval (several analysts
    asking at once on a busy machine all see their passages within a second) and the quote follows.
    Built while the model writes or after it failed (the quote then stays); stored with an empty
    text if no sentence is supported, so it is built once."""
    answer = Answer.objects.get(pk=pk)
    if not _needs_quote(answer):  # built already: no wait behind other answers' quotes
        return answer
    with _quoting:
        answer.refresh_from_db()  # another request may have built it while this one waited
        if not _needs_quote(answer):
            return answer
        sent = [p for p in answer.passages if p.get("sent_to_model")]
        started = time.perf_counter()
        answer.instant = instant_quote(answer.question, sent) or {
            "text": "",
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        Answer.objects.filter(pk=pk).update(instant=answer.instant)  # the stream's own save leaves it alone
        return answer


def _needs_quote(answer: Answer) -> bool:
    return not answer.instant and answer.status in QUOTED_WHILE


def instant_quote(question: str, sent: list[dict[str, Any]]) -> dict[str, Any]:
    """An answer from the documents at once: the one to three sentences of the passages given to
    the model that are closest to the question, each cited and checked like an answer sentence,
    shown (labelled as quoted) while the model writes. Only supported sentences are kept; {} if none."""
    started = time.perf_counter()
    try:
        quote = quote_passages(question, "", sent, limit=3)
        quoted_from = set(cited_numbers(quote))
        checked = verify_answer(quote, [p for p in sent if p["n"] in quoted_from], question) if quote else {}
    except Exception:
        log.exception("the instant quote failed; the model's answer still comes")
        return {}
    supported = [s for s in checked.get("sentences", []) if s.get("supported")]
    if not supported:
        return {}
    checked = checked | {"sentences": supported, "supported": len(supported), "total": len(supported)}
    text = " ".join(s["text"] for s in supported)
    return {"text": text, "verification": checked, "ms": round((time.perf_counter() - started) * 1000, 1)}


def close_abandoned() -> int:
    """Close answers still pending after REGQA_ANSWER_ABANDONED_MINUTES (their stream was never
    opened: a closed tab), each with an audit event. Returns how many."""
    cutoff = timezone.now() - datetime.timedelta(minutes=settings.ANSWER_ABANDONED_MINUTES)
    closed = 0
    for pk in Answer.objects.filter(status=Answer.Status.PENDING, created_at__lt=cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            if not Answer.objects.filter(pk=pk, status=Answer.Status.PENDING).update(status=Answer.Status.ABANDONED):
                continue  # a stream claimed it meanwhile
            answer = Answer.objects.get(pk=pk)
            audit_log.record(
                EventKind.ANSWER_ABANDONED,
                f"Abandoned (never opened): {answer.question[:200]}",
                user=answer.user,
                data={"answer_id": pk, "created_at": answer.created_at.isoformat()},
            )
            closed += 1
    return closed


def searched(filters: dict) -> str:
    """What a question searched, in words: how many documents, and the filters."""
    if filters:
        count = len(filtered_documents(filters) or [])
    else:
        count = Document.objects.filter(status=Document.Status.READY).count()
    words = f"searched {count} document{'' if count == 1 else 's'}"
    return words + (", filtered by " + ", ".join(f"{k} {v}" for k, v in filters.items()) if filters else "")


def decline_early(answer: Answer, stored: list[dict[str, Any]], where: str, decision: dict[str, Any]) -> None:
    """Decline before the model runs, saying what was searched and why."""
    answer.status = Answer.Status.NOT_COVERED
    answer.answer_text = decline_message(stored, where)
    answer.verification = {"decision": decision}
    answer.quality = {"retrieval_strength": quality_check.retrieval_strength(stored)}
    answer.total_ms = answer.retrieval_ms


def route_answer(answer: Answer) -> None:
    """Apply the escalation policy to a finished local answer (escalate.decide). A routing
    failure never costs the analyst the local answer: it is logged and noted on the answer."""
    try:
        escalate.decide(answer)
    except Exception as exc:
        log.exception("answer %s: routing failed", answer.pk)
        answer.routing = Routing(action=RoutingAction.LOCAL, reasons=[f"routing failed: {exc}"]).dump()
        answer.save(update_fields=["routing"])


def waiting_status(place: int) -> str:
    ahead = "the next answer" if place == 1 else f"number {place} in the queue"
    return f"Waiting for the model: other answers are being written; yours is {ahead}."


# every field but the instant quote, which its own request may store while the model writes
WRITTEN_BY_STREAM = [f.name for f in Answer._meta.concrete_fields if not f.primary_key and f.name != "instant"]


def stream_answer(answer: Answer, route: bool = True, ticket: llm.Ticket | None = None) -> Iterator[tuple[str, str]]:
    """Run the local model for a pending answer, yielding ("status"|"token", text) events.

    Waits in this thread for one of the model's slots, unless `ticket` already holds one (an async
    stream waited for it, `queued_for_model`); the slot is given back as soon as the model is done.
    Only one stream may write an answer: a second connection for the same answer (a browser
    reconnecting) gets nothing and should show the stored result instead.
    """
    claimed = Answer.objects.filter(pk=answer.pk, status=Answer.Status.PENDING).update(status=Answer.Status.STREAMING)
    if not claimed:
        return
    answer.status = Answer.Status.STREAMING
    answer.model_name = llm.model_name()
    sent = [p for p in answer.passages if p.get("sent_to_model")]
    messages = prompts.build_messages(answer.question, sent)
    pieces: list[str] = []  # answer text as shown
    raw: list[str] = []  # the model's JSON
    started = checked = time.perf_counter()
    retrieval_ms = answer.retrieval_ms or 0.0
    answerable: float | None = None
    try:
        ticket = ticket or llm.slots.join()
        try:
            for place in ticket.wait():
                yield "status", waiting_status(place)
            model = llm.get_model()
            # the draft first, so the analyst reads it sooner; it is labelled a draft until checked
            yield "status", "Writing a draft answer (checked against the passages before it counts)..."
            field = llm.AnswerFieldStream()
            for piece in model.stream_json(messages):
                raw.append(piece)
                text = field.feed(piece)
                if text:
                    if not pieces:
                        answer.first_token_ms = round(retrieval_ms + (time.perf_counter() - started) * 1000, 1)
                    pieces.append(text)
                    yield "token", text
            checked = time.perf_counter()  # the check: the yes/no question, then the verification
            if answerable_threshold(sent) > 0:
                yield "status", "Asking the model whether the passages state the answer..."
                answerable = answerability(answer.question, sent)
        finally:
            ticket.release()  # the next answer may start while this one is checked
        text, cited, found = llm.parse_model_output("".join(raw), "".join(pieces)) if raw else ("", [], False)
        if text:
            yield "status", "Checking the citations..."
        settle(answer, text, cited, found, sent, answerable, searched(answer.filters))
        if text:
            answer.check_ms = round((time.perf_counter() - checked) * 1000, 1)
    except llm.ModelUnavailable as exc:
        log.error("answer %s: %s", answer.pk, exc)
        answer.status = Answer.Status.FAILED
        answer.error = str(exc)
    except GeneratorExit:
        answer.status = Answer.Status.FAILED
        answer.answer_text = "".join(pieces)
        answer.error = "Stopped: the browser disconnected before the answer was finished."
        raise
    except Exception as exc:
        log.exception("answer %s: generation failed", answer.pk)
        answer.status = Answer.Status.FAILED
        answer.error = f"The local model failed while writing the answer: {exc}"
    finally:
        answer.total_ms = round(retrieval_ms + (time.perf_counter() - started) * 1000, 1)
        answer.quality_min = quality_check.lowest_score(answer.quality)
        answer.save(update_fields=WRITTEN_BY_STREAM)
        if route:
            route_answer(answer)
        audit_log.record_answer(answer, prompt=messages, model_sha256=llm.model_sha256())


async def queued_for_model[T](
    make: Callable[[llm.Ticket | None], Iterable[T]], waiting: Callable[[int], T]
) -> AsyncIterator[T]:
    """An answer's stream under an async server: wait for one of the model's slots on the event
    loop, holding no thread (yielding `waiting(place)` when the place in the queue changes), then
    run `make(ticket)`, which calls stream_answer with the ticket, in a thread of its own
    (streaming.Pump); that thread gives the slot back, also when the browser has gone."""
    ticket = llm.slots.join()
    try:
        async for place in ticket.wait_async():
            yield waiting(place)
    except BaseException:  # the browser went away while waiting: leave the queue
        ticket.release()
        raise
    async for piece in streaming.Pump(make(ticket), on_end=ticket.release):
        yield piece


def answer_events[T](
    is_async: bool,
    for_model: bool,
    make: Callable[[llm.Ticket | None], Iterable[T]],
    waiting: Callable[[int], T],
    head: tuple[T, ...] = (),
) -> Iterable[T] | AsyncIterable[T]:
    """A stream of events as the server serves it, `head` first. Under WSGI `make(None)` as it is
    (stream_answer waits for the model in the request's thread); under ASGI a stream `for_model`
    (a pending answer) waits for one of the model's slots on the event loop (queued_for_model),
    and any other is pumped."""
    if not is_async:
        return itertools.chain(head, make(None))
    if not for_model:
        return streaming.Pump(itertools.chain(head, make(None)))

    async def queued() -> AsyncIterator[T]:
        for piece in head:
            yield piece
        async for piece in queued_for_model(make, waiting):
            yield piece

    return queued()


def answer_question(user, question: str, filters: dict | None = None, route: bool = True) -> Answer:
    """The whole ask flow without streaming (commands, the API, evaluation). `route=False` keeps
    the answer local whatever the policy says (the evaluation measures each way on its own)."""
    answer = start_answer(user, question, filters, route=route)
    if answer.status == Answer.Status.PENDING:
        for _ in stream_answer(answer, route=route):
            pass
    if answer.escalation_state == EscalationState.PENDING:
        for _ in escalate.stream_escalation(answer):
            pass
    return answer
