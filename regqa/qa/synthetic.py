"""Training questions without labels: the local model writes one question for each of N sampled
passages of the library, and each (question, its passage) becomes a training pair if the
untrained first stage already finds the passage in its top 20 (a question it cannot find is
more often a bad question than a hard one, and would teach the ranker noise).

Resumable: every passage tried is one SyntheticQuestion row, written as soon as the model is
done with it, and a run skips the passages it already has; a worker killed half-way loses at
most the passage it was on. The sample is the same on every run (a hash of seed and chunk id).
"""

from __future__ import annotations

import hashlib
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError

from regqa.documents.models import Chunk, Document

from . import llm, prompts, rank, training
from .evaluate import Question
from .models import RetrievalBundle, SyntheticQuestion

KEEP_TOP = 20  # the source passage must be in the untrained ranking's top 20
MIN_WORDS = 25  # shorter passages (headings, fragments) make poor questions
PASSAGE_WORDS = 250  # the text given to the model, at most
QUESTION_TOKENS = 64
NOT_ACTIVATED_WRITTEN = (
    "Not activated by itself: trained on written questions only, whose figures overrate it (questions written "
    "from a passage are easier than an analyst's); measure it on real questions (evaluate retrieval), then activate it"
)  # docs/benchmarks.md ("Passage windows"): one beat the untrained ranking on its own questions, lost on real ones
_PREFIX = re.compile(r"^\s*(?:question\s*\d*\s*[:.-]\s*|q\s*[:.-]\s*|\d+[.)]\s*)", re.I)


def sample(n: int, seed: int = 0) -> list[int]:
    """Chunk ids of `n` passages of ready documents long enough to ask about, the same on every run."""
    rows = Chunk.live.filter(document__status=Document.Status.READY).values_list("pk", "text")
    eligible = [pk for pk, text in rows.iterator(chunk_size=2000) if len(text.split()) >= MIN_WORDS]
    eligible.sort(key=lambda pk: hashlib.sha256(f"{seed}:{pk}".encode()).hexdigest())
    return eligible[:n]


def clean_question(reply: str) -> str:
    """The question in the model's reply: its first line, without a "Question:" prefix or quotes;
    "" when what is left is not a question of a sensible length."""
    line = next((part.strip() for part in reply.strip().splitlines() if part.strip()), "")
    line = _PREFIX.sub("", line).strip().strip("\"“”'*").strip()
    words = len(line.split())
    if not line.endswith("?") or not 4 <= words <= 60:
        return ""
    if re.search(r"\b(?:the|this|above) (?:passage|text|excerpt)\b", line, re.I):
        return ""  # the model talked about its input instead of asking about the rule
    return line


def source_rank(question: str, chunk_id: int, lib: rank.Library) -> int | None:
    """The passage's place in the untrained ranking of the library for the question (None: not
    among the first stage's candidates)."""
    position = lib.position.get(chunk_id)
    if position is None:
        return None
    order = rank.untrained_order(rank.candidates(question, lib)).tolist()
    return order.index(position) + 1 if position in order else None


def model_path() -> Path:
    return Path(settings.SYNTHETIC_MODEL_PATH or settings.LLM_MODEL_PATH)


def generate(record: RetrievalBundle, *, progress: Callable[[int, str], None] | None = None) -> dict[str, int]:
    """Write the questions of `record` (record.synthetic_requested passages), continuing after the
    passages already done; returns the counts of each outcome."""
    wanted = sample(record.synthetic_requested)
    done = set(SyntheticQuestion.objects.filter(bundle=record).values_list("chunk_id", flat=True))
    todo = [pk for pk in wanted if pk not in done]
    path = model_path()
    RetrievalBundle.objects.filter(pk=record.pk).update(
        status=RetrievalBundle.Status.WRITING, synthetic_model=path.name
    )
    model = llm.load(path) if todo else None
    lib = rank.library()
    chunks = Chunk.live.select_related("document").defer("windows").in_bulk(todo)
    times: list[float] = []
    try:
        for pk in todo:
            chunk = chunks.get(pk)
            if chunk is None:  # deleted since it was sampled: count it as tried
                continue
            passage = {
                "n": 1,
                "text": " ".join(chunk.text.split()[:PASSAGE_WORDS]),
                "document_title": chunk.document.title,
                "page_start": chunk.page_start,
                "page_end": chunk.page_end,
                "section": chunk.section,
            }
            started = time.perf_counter()
            assert model is not None
            with llm.slots:
                reply = model.write(prompts.question_writer_messages(passage), QUESTION_TOKENS)
            seconds = time.perf_counter() - started
            times.append(seconds)
            question = clean_question(reply)
            found = source_rank(question, pk, lib) if question else None
            outcome: str
            if not question:
                outcome = SyntheticQuestion.Outcome.UNUSABLE
            elif found is None or found > KEEP_TOP:
                outcome = SyntheticQuestion.Outcome.NOT_RETRIEVED
            else:
                outcome = SyntheticQuestion.Outcome.KEPT
            try:
                SyntheticQuestion.objects.create(
                    bundle=record, chunk_id=pk, question=question or reply[:500], outcome=outcome,
                    source_rank=found, seconds=round(seconds, 3),
                )  # fmt: skip
            except IntegrityError:
                continue  # another run of the same bundle wrote it first
            finished = len(done) + len(times)
            left = (len(wanted) - finished) * statistics.fmean(times)
            detail = (
                f"Writing training questions: {finished} of {len(wanted)} passages, "
                f"{SyntheticQuestion.objects.filter(bundle=record, outcome=SyntheticQuestion.Outcome.KEPT).count()} "
                f"kept; about {format_duration(left)} left"
            )
            percent = 100 * finished // max(len(wanted), 1)
            RetrievalBundle.objects.filter(pk=record.pk).update(progress=percent, detail=detail)
            if progress:
                progress(percent, detail)
    finally:
        if model is not None and model is not llm.get_model_if_loaded():
            model.close()  # a writer loaded for this run only: free its memory in the long-lived worker

    counts = {o.value: 0 for o in SyntheticQuestion.Outcome}
    for outcome in SyntheticQuestion.objects.filter(bundle=record).values_list("outcome", flat=True):
        counts[outcome] += 1
    return counts


def pairs(record: RetrievalBundle) -> list[Question]:
    """The kept questions as training pairs, each with its own passage as the gold one."""
    kept = SyntheticQuestion.objects.filter(bundle=record, outcome=SyntheticQuestion.Outcome.KEPT)
    return [Question(f"synthetic-{s.pk}", s.question, [{"chunk_id": s.chunk_id}]) for s in kept.order_by("pk")]


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def train(
    record: RetrievalBundle,
    labelled: list[Question],
    *,
    folds: int = 5,
    activate: bool = True,
    adapt: bool = True,
    progress: Callable[[int, str], None] | None = None,
    user=None,
    actor: str = "",
) -> RetrievalBundle:
    """Write the bundle's synthetic questions (resuming), then train it on them and on `labelled`.
    A model that cannot be loaded fails the bundle with the reason; the questions written so far
    stay, for a resume."""
    try:
        counts = generate(record, progress=progress)
    except llm.ModelUnavailable as exc:
        RetrievalBundle.objects.filter(pk=record.pk).update(status=RetrievalBundle.Status.FAILED, detail=str(exc))
        record.refresh_from_db()
        return record
    RetrievalBundle.objects.filter(pk=record.pk).update(status=RetrievalBundle.Status.TRAINING)
    record.refresh_from_db()
    written = SyntheticQuestion.objects.filter(bundle=record)
    about = {
        "synthetic": counts,
        "synthetic_model": record.synthetic_model,
        "synthetic_seconds_per_question": round(
            statistics.fmean(s for s in written.values_list("seconds", flat=True)), 2
        )
        if written.exists()
        else None,
        "labelled_questions": len(labelled),
    }
    only_written = not labelled
    scored, unscored = (pairs(record), []) if only_written else (labelled, pairs(record))
    record = training.train_bundle(
        record, scored, folds=folds, activate=activate and not only_written, adapt=adapt,
        progress=progress, user=user, actor=actor, about=about, written=unscored,
    )  # fmt: skip
    if only_written and record.status == RetrievalBundle.Status.READY:
        RetrievalBundle.objects.filter(pk=record.pk).update(detail=f"{record.detail}. {NOT_ACTIVATED_WRITTEN}")
        record.refresh_from_db()
    return record
