"""Retrieval evaluation: the product's own retrieval, scored against gold passages or pages.

A gold item is either {"passage_id": ID} (a chunk's external id) or {"document": FILE, "page": N}
(1-based page of an ingested PDF; a chunk hits it when it comes from that file and its pages
include N). Metrics follow trec_eval at cut-off k; a gold item counts once, at the first rank
that hits it (several chunks of one gold page are not several relevant documents).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from regqa.documents.models import Chunk

from .retrieve import Passage, retrieve


@dataclass
class Question:
    qid: str
    question: str
    gold: list[dict]


def read_questions(path: Path) -> list[Question]:
    questions = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    data = json.loads(line)
                    questions.append(Question(str(data["qid"]), data["question"], list(data.get("gold", []))))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path.name}, line {number}: not a question record ({exc})") from exc
    return questions


def hits_per_rank(passages: list[Passage], gold: list[dict], file_names: dict[int, str]) -> list[set[int]]:
    """For each retrieved passage, the indexes of the gold items it satisfies."""
    ranks = []
    for p in passages:
        hit = set()
        for i, g in enumerate(gold):
            if "passage_id" in g:
                if p.external_id and p.external_id == str(g["passage_id"]):
                    hit.add(i)
            elif file_names.get(p.document_id) == g.get("document") and p.page_start is not None:
                if p.page_start <= int(g["page"]) <= (p.page_end or p.page_start):
                    hit.add(i)
        ranks.append(hit)
    return ranks


def score(ranks: list[set[int]], n_gold: int, k: int) -> dict[str, float]:
    """Recall@k, AP@k (normalised by min(gold, k)), nDCG@k (binary gains) and RR@k."""
    found: set[int] = set()
    relevant = []
    for hit in ranks[:k]:
        new = hit - found
        relevant.append(bool(new))
        found |= new
    if n_gold == 0:
        return {"recall": 0.0, "ap": 0.0, "ndcg": 0.0, "rr": 0.0}
    precision_sum, seen = 0.0, 0
    for rank, is_relevant in enumerate(relevant, start=1):
        if is_relevant:
            seen += 1
            precision_sum += seen / rank
    dcg = sum(1 / math.log2(rank + 1) for rank, rel in enumerate(relevant, start=1) if rel)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(n_gold, k) + 1))
    first = next((rank for rank, rel in enumerate(relevant, start=1) if rel), None)
    return {
        "recall": len(found) / n_gold,
        "ap": precision_sum / min(n_gold, k),
        "ndcg": dcg / ideal,
        "rr": 1 / first if first else 0.0,
    }


def evaluate_retrieval(
    questions: list[Question], k: int = 10, mode: str | None = None, progress: Callable[[], None] | None = None
) -> dict:
    file_names = dict(Chunk.objects.values_list("document_id", "document__original_name").distinct().order_by())
    per_question, latencies = [], []
    for q in questions:
        started = time.perf_counter()
        passages = retrieve(q.question, k=k, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        metrics = score(hits_per_rank(passages, q.gold, file_names), len(q.gold), k)
        per_question.append({"qid": q.qid, **metrics, "retrieved": [p.external_id or p.chunk_id for p in passages]})
        if progress:
            progress()
    n = len(per_question) or 1
    latencies.sort()
    return {
        "mode": mode,
        "k": k,
        "questions": len(per_question),
        f"recall@{k}": sum(q["recall"] for q in per_question) / n,
        f"map@{k}": sum(q["ap"] for q in per_question) / n,
        f"ndcg@{k}": sum(q["ndcg"] for q in per_question) / n,
        f"mrr@{k}": sum(q["rr"] for q in per_question) / n,
        "latency_ms_median": statistics.median(latencies) if latencies else 0.0,
        "latency_ms_p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else 0.0,
        "per_question": per_question,
    }
