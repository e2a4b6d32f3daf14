"""Learning the ranking from labelled questions: the candidates and gold labels of each question,
folds disjoint by question, k-fold cross-validation of the untrained and trained rankings, and the
training of a final ranker on every question.

Honest by construction: a question's figures come only from a ranker that never saw it, and the
features never name a passage (rank.py), so no question is answered from another one's gold.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.utils import timezone

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind
from regqa.documents import embed

from .bundle import activate as activate_bundle
from .bundle import beats_active, write
from .evaluate import Question, file_names, score
from .models import RetrievalBundle
from .rank import FEATURES, Candidates, Library, Ranker, candidates, library, minmax_normalise, untrained_order

FIRST_STAGE_DEPTH = 100  # candidates per half when training and evaluating (first-stage Recall@100)
FUSION_WEIGHTS = (0.2, 0.35, 0.5, 0.65, 0.8)  # dense weights tried for min-max fusion
MIN_QUESTIONS = 10  # fewer labelled questions than this cannot train and cross-validate a ranker


class TrainingError(ValueError):
    """Input that cannot be trained on; the message says why, for the admin."""


@dataclass
class Labelled:
    question: Question
    group: Candidates
    labels: np.ndarray  # 1 where the candidate satisfies a gold item
    gold_of: list[set[int]]  # per candidate, the gold items it satisfies
    n_gold: int


def gold_hits(lib: Library, position: int, gold: list[dict], file_names: dict[int, str]) -> set[int]:
    hit = set()
    external = lib.external_ids[position]
    start, end = lib.pages[position]
    for i, g in enumerate(gold):
        if "passage_id" in g:
            if external and external == str(g["passage_id"]):
                hit.add(i)
        elif file_names.get(int(lib.document_ids[position])) == g.get("document") and start is not None:
            if start <= int(g["page"]) <= (end or start):
                hit.add(i)
    return hit


def check_gold(questions: Sequence[Question], lib: Library, file_names: dict[int, str]) -> dict[str, int]:
    """How many questions and gold items name passages that exist. Raises TrainingError when
    none do (a pairs file for another library, or an empty one)."""
    if not questions:
        raise TrainingError("The pairs file holds no question.")
    if len(lib.ids) == 0:
        raise TrainingError("The library has no passage to train on.")
    externals = {e for e in lib.external_ids if e}
    pages = {(file_names.get(int(d)), s, e) for d, (s, e) in zip(lib.document_ids.tolist(), lib.pages, strict=True)}
    found_items = found_questions = 0
    for q in questions:
        hits = 0
        for g in q.gold:
            if "passage_id" in g:
                hits += str(g["passage_id"]) in externals
            elif "document" in g and "page" in g:
                page = int(g["page"])
                hits += any(f == g["document"] and s is not None and s <= page <= (e or s) for f, s, e in pages)
        found_items += hits
        found_questions += hits > 0
    if found_questions == 0:
        raise TrainingError(
            "No gold passage of the pairs file is in the library: its passage ids or document pages name "
            "passages that do not exist here."
        )
    return {"questions": len(questions), "questions_with_gold_found": found_questions, "gold_found": found_items}


def label(
    questions: Sequence[Question],
    lib: Library,
    *,
    depth: int = FIRST_STAGE_DEPTH,
    fusion_dense_weight: float = 0.5,
    progress: Callable[[int], None] | None = None,
) -> list[Labelled]:
    """Candidates, features and gold labels of every question (one batch of query embeddings)."""
    names = file_names()
    vectors = embed.embed_passages([q.question for q in questions]) if questions else np.zeros((0, embed.DIMENSIONS))
    out = []
    for i, q in enumerate(questions):
        group = candidates(q.question, lib, depth, fusion_dense_weight=fusion_dense_weight, query_vector=vectors[i])
        gold_of = [gold_hits(lib, int(p), q.gold, names) for p in group.positions]
        out.append(Labelled(q, group, np.array([bool(g) for g in gold_of], dtype="int32"), gold_of, len(q.gold)))
        if progress:
            progress(i + 1)
    return out


def folds_of(questions: Sequence[Question], k: int) -> list[int]:
    """The fold of each question, from a hash of its id: disjoint by question, the same in every run."""
    if k < 2:
        raise TrainingError("Cross-validation needs at least 2 folds.")
    return [int(hashlib.sha256(q.qid.encode()).hexdigest(), 16) % k for q in questions]


def metrics(item: Labelled, order: np.ndarray, k: int) -> dict[str, float]:
    where = {int(p): i for i, p in enumerate(item.group.positions.tolist())}
    ranks = [item.gold_of[where[int(p)]] for p in order[:k]]
    return score(ranks, item.n_gold, k)


def minmax_order(group: Candidates, dense_weight: float) -> np.ndarray:
    fused = dense_weight * minmax_normalise(group.column("dense")) + (1 - dense_weight) * minmax_normalise(
        group.column("bm25")
    )
    return group.positions[np.argsort(-fused, kind="stable")]


def _ordered(item: Labelled, method: str, ranker: Ranker | None, weight: float) -> np.ndarray:
    g = item.group
    if method == "bm25":
        return g.positions[np.argsort(g.column("bm25_rank"), kind="stable")]
    if method == "dense":
        return g.positions[np.argsort(g.column("dense_rank"), kind="stable")]
    if method == "rrf":
        return untrained_order(g, "rrf")
    if method == "minmax":
        return minmax_order(g, weight)
    assert ranker is not None
    return ranker.order(g)


def summarise(
    items: Sequence[Labelled], method: str, ranker: Ranker | None, k: int, weight: float = 0.5
) -> dict[str, float]:
    rows = [metrics(item, _ordered(item, method, ranker, weight), k) for item in items]
    n = len(rows) or 1
    return {
        f"recall@{k}": sum(r["recall"] for r in rows) / n,
        f"map@{k}": sum(r["ap"] for r in rows) / n,
        f"ndcg@{k}": sum(r["ndcg"] for r in rows) / n,
        f"mrr@{k}": sum(r["rr"] for r in rows) / n,
    }


def first_stage_recall(items: Sequence[Labelled]) -> float:
    """Share of gold items found anywhere among the candidates (Recall@depth of the first stage)."""
    total = sum(i.n_gold for i in items) or 1
    return sum(len(set().union(*i.gold_of)) if i.gold_of else 0 for i in items) / total


def choose_fusion_weight(items: Sequence[Labelled], k: int) -> float:
    """The dense weight of min-max fusion that maximises Recall@k + MAP@k on `items` (training only)."""

    def quality(weight: float) -> float:
        total = 0.0
        for item in items:
            m = metrics(item, minmax_order(item.group, weight), k)
            total += m["recall"] + m["ap"]
        return total

    return max(FUSION_WEIGHTS, key=quality)


METHODS = ("bm25", "dense", "rrf", "minmax", "reranker")


def cross_validate(
    items: Sequence[Labelled],
    k_folds: int = 5,
    *,
    k: int = 10,
    train: Callable[[Sequence[Labelled]], Ranker] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train on k-1 folds, evaluate the held-out one, for every fold: each method's mean and
    standard deviation over folds, and the first stage's recall."""
    train = train or train_ranker
    assignment = folds_of([i.question for i in items], k_folds)
    per_fold: list[dict[str, Any]] = []
    for fold in range(k_folds):
        held = [item for item, f in zip(items, assignment, strict=True) if f == fold]
        rest = [item for item, f in zip(items, assignment, strict=True) if f != fold]
        if not held or not rest:
            raise TrainingError(f"Too few questions for {k_folds} folds (fold {fold + 1} would be empty).")
        ranker = train(rest)
        weight = choose_fusion_weight(rest, k)  # min-max fusion's weight, from the training folds only
        row: dict[str, Any] = {"fold": fold + 1, "train": len(rest), "test": len(held), "fusion_dense_weight": weight}
        row["first_stage_recall"] = first_stage_recall(held)
        for method in METHODS:
            row[method] = summarise(held, method, ranker if method == "reranker" else None, k, weight)
        per_fold.append(row)
        if progress:
            progress(fold + 1)
    summary: dict[str, Any] = {"folds": k_folds, "k": k, "questions": len(items), "per_fold": per_fold}
    for method in METHODS:
        for metric in per_fold[0][method]:
            values = [row[method][metric] for row in per_fold]
            summary.setdefault(method, {})[metric] = {
                "mean": statistics.fmean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    values = [row["first_stage_recall"] for row in per_fold]
    summary["first_stage_recall"] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values)}
    summary["first_stage_depth"] = FIRST_STAGE_DEPTH
    return summary


def train_ranker(items: Sequence[Labelled]) -> Ranker:
    return Ranker.train([i.group for i in items], [i.labels for i in items])


def train_bundle(
    record: RetrievalBundle,
    questions: Sequence[Question],
    *,
    folds: int = 5,
    activate: bool = True,
    progress: Callable[[int, str], None] | None = None,
    user=None,
    actor: str = "",
) -> RetrievalBundle:
    """Train a retrieval bundle from labelled questions: cross-validate the learned ranking by
    question, train the final ranker on every question, write the bundle, and activate it only
    if its held-out figures beat the active ranking's. Bad input (no question, no gold passage
    in the library, too few questions for the folds) fails the bundle with the reason and leaves
    the active bundle untouched."""

    def step(percent: int, detail: str) -> None:
        RetrievalBundle.objects.filter(pk=record.pk).update(progress=percent, detail=detail)
        if progress:
            progress(percent, detail)

    try:
        lib = library()
        found = check_gold(questions, lib, file_names())
        if len(questions) < max(folds, MIN_QUESTIONS):
            raise TrainingError(
                f"{len(questions)} questions are too few to train and cross-validate on "
                f"(at least {max(folds, MIN_QUESTIONS)})."
            )
        step(5, f"Finding candidates for {len(questions)} questions")

        def labelled(n: int) -> None:
            if n % 100 == 0:
                step(5 + 55 * n // len(questions), f"Found the candidates of {n} of {len(questions)} questions")

        items = label(questions, lib, progress=labelled)
        step(60, f"Cross-validating over {folds} folds")
        figures = cross_validate(
            items, folds, train=train_ranker, progress=lambda f: step(60 + 30 * f // folds, f"fold {f}")
        )
        step(90, "Training the final ranker on every question")
        ranker = train_ranker(items)
        manifest = {
            "bundle": record.pk,
            "created_at": timezone.now().isoformat(),
            "features": FEATURES,
            "depth": FIRST_STAGE_DEPTH,
            "fusion_dense_weight": choose_fusion_weight(items, figures["k"]),
            "embedder": None,  # the configured embedding model (a fine-tuned one is a later step)
            "training": found | {"pairs_file": record.pairs_file, "pairs_sha256": record.pairs_sha256},
            "importance": ranker.importance(),
            "figures": figures,
        }
        write(record, ranker, manifest)
    except TrainingError as exc:
        RetrievalBundle.objects.filter(pk=record.pk).update(status=RetrievalBundle.Status.FAILED, detail=str(exc))
        record.refresh_from_db()
        return record
    except Exception as exc:
        RetrievalBundle.objects.filter(pk=record.pk).update(
            status=RetrievalBundle.Status.FAILED, detail=f"Internal error while training: {exc}"
        )
        raise
    better, why = beats_active(figures)
    RetrievalBundle.objects.filter(pk=record.pk).update(
        status=RetrievalBundle.Status.READY, progress=100, detail=why, summary=manifest["training"], figures=figures
    )
    record.refresh_from_db()
    audit_log.record(
        EventKind.RETRIEVAL_TRAINED,
        f"Retrieval {record.label} trained on {len(questions)} questions",
        user=user,
        actor=actor,
        data={
            "bundle": record.pk,
            "training": manifest["training"],
            "better": better,
            "comparison": why,
            "reranker": figures["reranker"],
            "rrf": figures["rrf"],
            "first_stage_recall": figures["first_stage_recall"],
        },
    )
    if not better:
        RetrievalBundle.objects.filter(pk=record.pk).update(
            status=RetrievalBundle.Status.REJECTED, detail=f"Not activated: {why}"
        )
    elif activate:
        activate_bundle(record, user=user, actor=actor, reason=why)
    record.refresh_from_db()
    return record
