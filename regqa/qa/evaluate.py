"""Retrieval evaluation: the product's own retrieval, scored against gold passages or pages.

A gold item is either {"passage_id": ID} (a chunk's external id) or {"document": FILE, "page": N}
(1-based page of an ingested PDF; a chunk hits it when it comes from that file and its pages
include N). Metrics follow trec_eval at cut-off k; a gold item counts once, at the first rank
that hits it (several chunks of one gold page are not several relevant documents).
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from regqa.documents.models import Chunk, Document

from . import escalate
from .answer import answer_question
from .citations import CITATION
from .llm import model_name
from .models import Answer
from .quality import CRITERIA
from .retrieve import Passage, retrieve
from .routing import Usage, route


@dataclass
class Question:
    qid: str
    question: str
    gold: list[dict]
    reference: str = ""  # a reference answer, for answer evaluation


def read_questions(path: Path) -> list[Question]:
    with open(path, encoding="utf-8") as fh:
        return read_questions_text(fh.read(), path.name)


def read_questions_text(text: str, name: str = "the file") -> list[Question]:
    """Questions from JSON Lines text; a line that is not a question record is an error naming it."""
    questions = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                data = json.loads(line)
                questions.append(
                    Question(
                        str(data["qid"]), str(data["question"]), list(data.get("gold", [])), data.get("answer", "")
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{name}, line {number}: not a question record ({exc})") from exc
    return questions


def hits_per_rank(passages: Sequence[Any], gold: list[dict], file_names: dict[int, str]) -> list[set[int]]:
    """For each retrieved passage, the indexes of the gold items it satisfies. A passage that
    collapsed near-duplicates names their sources too (`also_in`): each counts as retrieved there."""
    ranks = []
    for p in passages:
        hit = set()
        sources = [(p.document_id, p.page_start, p.page_end)]
        sources += [(o["document_id"], o.get("page_start"), o.get("page_end")) for o in getattr(p, "also_in", [])]
        for i, g in enumerate(gold):
            if "passage_id" in g:
                if p.external_id and p.external_id == str(g["passage_id"]):
                    hit.add(i)
                continue
            for document_id, start, end in sources:
                if file_names.get(document_id) == g.get("document") and start is not None:
                    if start <= int(g["page"]) <= (end or start):
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
    names = file_names()
    per_question: list[dict[str, Any]] = []
    latencies: list[float] = []
    for q in questions:
        started = time.perf_counter()
        # below the passages shown, the first k of them: at k = CONTEXT_PASSAGES, what the model reads
        passages = retrieve(q.question, k=max(k, settings.RETRIEVE_TOP_K), mode=mode)[:k]
        latencies.append((time.perf_counter() - started) * 1000)
        metrics = score(hits_per_rank(passages, q.gold, names), len(q.gold), k)
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


# ---------------------------------------------------------------------------------------------
# Answer evaluation: the whole ask pipeline against reference answers.

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def answer_tokens(text: str) -> list[str]:
    """SQuAD-style normalisation: citations and punctuation out, lower case, no articles."""
    text = CITATION.sub(" ", text.lower())
    return _ARTICLES.sub(" ", _PUNCT.sub(" ", text)).split()


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: longest common subsequence of tokens."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return 0.0
    previous = [0] * (len(ref) + 1)
    for p in pred:
        current = [0]
        for j, r in enumerate(ref, start=1):
            current.append(previous[j - 1] + 1 if p == r else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _median_p95(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(0.95 * len(values)))]


def _passage(p: dict) -> Passage:
    return Passage.load(p)


def score_answer(answer, q: Question, answerable: bool, file_names: dict[int, str]) -> dict:
    """One answer's row: status, timings, and (if answered) citation hit, verification, judge
    scores, token-F1 and ROUGE-L against the reference."""

    row = {
        "qid": q.qid,
        "answer_id": answer.pk,  # bench/answer_thresholds.py re-decides stored answers by id
        "answerable": answerable,
        "status": answer.status,
        "answer": answer.answer_text,
        "error": answer.error,
        "first_token_ms": answer.first_token_ms,
        "total_ms": answer.total_ms,
        "check_ms": answer.check_ms,
        "model_ran": bool(answer.model_name),
        "scores": {k: v["score"] for k, v in answer.quality.items()},
    }
    if answer.status in (Answer.Status.ANSWERED, Answer.Status.QUOTED):
        cited = {c["n"] for c in answer.citations if c["valid"]}
        cited_passages = [_passage(p) for p in answer.passages if p["n"] in cited]
        row |= {
            "citation_hit": any(hits_per_rank(cited_passages, q.gold, file_names)) if q.gold else None,
            "sentences": answer.verification.get("total", 0),
            "supported": answer.verification.get("supported", 0),
        }
        if q.reference:
            row |= {
                "f1": token_f1(answer.answer_text, q.reference),
                "rouge_l": rouge_l(answer.answer_text, q.reference),
            }
    return row


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(per_question: list[dict], model: str) -> dict:
    """The figures of `evaluate answers` from the rows of score_answer."""

    answerable_rows = [r for r in per_question if r["answerable"]]
    answered = [r for r in answerable_rows if r["status"] == Answer.Status.ANSWERED]
    quoted = [r for r in answerable_rows if r["status"] == Answer.Status.QUOTED]
    shown = answered + quoted  # answers an analyst reads: citations and sentences are checked on both
    probe = [r for r in per_question if not r["answerable"]]
    ran = [r for r in per_question if r["model_ran"] and r["total_ms"] is not None]
    ttft = _median_p95([r["first_token_ms"] for r in ran if r["first_token_ms"]])
    total = _median_p95([r["total_ms"] for r in ran])
    hits = [r["citation_hit"] for r in shown if r.get("citation_hit") is not None]
    with_reference = [r for r in answerable_rows if "f1" in r or r["status"] != Answer.Status.ANSWERED]
    return {
        "model": model,
        "questions": len(answerable_rows),
        "answered": len(answered),
        "quoted": len(quoted),
        "probe_quoted": sum(r["status"] == Answer.Status.QUOTED for r in probe),
        "failed": sum(r["status"] == Answer.Status.FAILED for r in per_question),
        "token_f1": _mean([r["f1"] for r in answered if "f1" in r]),
        # over every answerable question, a declined one scoring 0: compares modes that decline differently
        "token_f1_all": _mean([r.get("f1", 0.0) for r in with_reference]) if any("f1" in r for r in answered) else None,
        "rouge_l": _mean([r["rouge_l"] for r in answered if "rouge_l" in r]),
        "citation_hit_rate": _mean([float(h) for h in hits]),
        "sentences_supported": (
            sum(r["supported"] for r in shown) / max(1, sum(r["sentences"] for r in shown)) if shown else None
        ),
        "false_refusal_rate": (
            sum(r["status"] == Answer.Status.NOT_COVERED for r in answerable_rows) / len(answerable_rows)
            if answerable_rows
            else None
        ),
        "unanswerable": len(probe),
        "correct_refusal_rate": (
            sum(r["status"] == Answer.Status.NOT_COVERED for r in probe) / len(probe) if probe else None
        ),
        "judge": {k: _mean([r["scores"][k] for r in answered if k in r["scores"]]) for k in CRITERIA},
        "first_token_ms_median": ttft[0],
        "first_token_ms_p95": ttft[1],
        "total_ms_median": total[0],
        "total_ms_p95": total[1],
        "check_share_median": statistics.median(
            [r["check_ms"] / r["total_ms"] for r in ran if r["check_ms"] and r["total_ms"]] or [0.0]
        ),
        "per_question": per_question,
    }


def file_names() -> dict[int, str]:
    """Each document's file name (page-level gold names the file)."""
    return dict(Chunk.objects.values_list("document_id", "document__original_name").distinct().order_by())


def evaluate_answers(
    questions: list[Question], user, unanswerable: Sequence[Question] = (), progress: Callable[[], None] | None = None
) -> dict:
    """Ask every question through the full pipeline (retrieve, local model, verification,
    quality check) and score the answers; `unanswerable` questions should be declined.
    The escalation policy is not applied: this measures the local pipeline."""

    names = file_names()
    per_question = []
    for q, answerable in [(q, True) for q in questions] + [(q, False) for q in unanswerable]:
        answer = answer_question(user, q.question, route=False)
        per_question.append(score_answer(answer, q, answerable, names))
        if progress:
            progress()
    return summarise(per_question, model_name())


def evaluate_routing(
    questions: list[Question],
    user,
    policy,
    unanswerable: Sequence[Question] = (),
    progress: Callable[[], None] | None = None,
) -> dict:
    """Every question three ways in one run: always local, always large (the configured
    OpenAI-compatible endpoint, same passages, same redaction), and routed by `policy` in
    automatic mode (the large answer where the router escalates, else the local one)."""

    names = file_names()
    rows: dict[str, list[dict]] = {"local": [], "large": [], "routed": []}
    for q, answerable in [(q, True) for q in questions] + [(q, False) for q in unanswerable]:
        local = answer_question(user, q.question, route=False)
        passages = escalate.passages_now(local)
        common = (q.question, passages, local.status, local.quality, {"evaluation"}, policy, Usage())
        routed = route(*common, endpoint=settings.LARGE_LLM_BASE_URL)
        forced = route(*common, requested=True, endpoint=settings.LARGE_LLM_BASE_URL)
        local_row = score_answer(local, q, answerable, names)
        if forced.action == "escalate":
            large = Answer.objects.create(
                user=user,
                question=local.question,
                passages=local.passages,
                status=local.status,
                answer_text=local.answer_text,
                quality=local.quality,
                model_name=local.model_name,
                retrieval_ms=local.retrieval_ms,
            )
            escalate.apply(large, forced)
            for _ in escalate.stream_escalation(large, decide_again=False):
                pass
            large.refresh_from_db()
            # time of the large answer: retrieval, then the large model (the local step is not needed)
            large.first_token_ms = (large.retrieval_ms or 0) + (
                large.routing.get("large_ms", {}).get("first_token") or 0
            )
            large.total_ms = (large.retrieval_ms or 0) + (large.routing.get("large_ms", {}).get("total") or 0)
            large_row = score_answer(large, q, answerable, names) | {"escalation": large.escalation_state}
        else:  # nothing to send (no passages): the large model cannot answer either
            large_row = local_row | {"escalation": "not sent: " + "; ".join(forced.reasons)}
        escalated = routed.action == "escalate"
        routed_row = (large_row if escalated else local_row) | {"escalated": escalated, "reasons": routed.reasons}
        if escalated:  # the analyst waits for both models
            routed_row["total_ms"] = (local_row["total_ms"] or 0) + (large_row["total_ms"] or 0)
            routed_row["first_token_ms"] = local_row["first_token_ms"]
        rows["local"].append(local_row)
        rows["large"].append(large_row)
        rows["routed"].append(routed_row)
        if progress:
            progress()
    out = {
        "local": summarise(rows["local"], model_name()),
        "large": summarise(rows["large"], f"{settings.LARGE_LLM_MODEL} at {settings.LARGE_LLM_BASE_URL}"),
        "routed": summarise(rows["routed"], "routed"),
    }
    answerable_routed = [r for r in rows["routed"] if r["answerable"]]
    out["routed"]["escalated_share"] = _mean([float(r["escalated"]) for r in answerable_routed])
    out["routed"]["escalated_share_all"] = _mean([float(r["escalated"]) for r in rows["routed"]])
    return out


# ---------------------------------------------------------------------------------------------
# Examples for the answer/decline decision (manage.py train_decision, evaluate decision)


@dataclass
class DecisionExample:
    qid: str
    source: str  # "answerable", "withheld" (gold documents kept out of retrieval) or "probe"
    signals: dict[str, float]
    stated: int  # 1: a gold passage or page is among the passages the model would read
    passages: list[dict[str, Any]]  # those passages, as an answer stores them


def decision_examples(
    questions: Sequence[Question],
    unanswerable: Sequence[Question] = (),
    *,
    withhold: bool = True,
    progress: Callable[[], None] | None = None,
) -> list[DecisionExample]:
    """Retrieve for every question as the ask page does and label whether the passages the model
    would read hold a gold item. With `withhold`, each question is asked again with its gold
    documents kept out of retrieval (then nothing states its answer); `unanswerable` questions
    (the probe) are labelled 0. No model runs."""
    from .decision_model import signals

    names = file_names()
    by_file = {name: pk for pk, name in names.items()}
    external = dict(Chunk.live.exclude(external_id="").values_list("external_id", "document_id"))
    ready = list(Document.objects.filter(status=Document.Status.READY).values_list("pk", flat=True))
    out = []

    def example(q: Question, source: str, documents: list[int] | None, answerable: bool) -> DecisionExample:
        found = retrieve(q.question, documents=documents)
        sent = [p for p in found[: settings.CONTEXT_PASSAGES]]
        stated = answerable and any(hits_per_rank(sent, q.gold, names))
        stored = [p.as_dict() | {"n": i + 1, "sent_to_model": True} for i, p in enumerate(sent)]
        return DecisionExample(q.qid, source, signals(q.question, stored), int(stated), stored)

    for q in questions:
        out.append(example(q, "answerable", None, True))
        if withhold:
            gold_documents = {external.get(str(g.get("passage_id"))) for g in q.gold} | {
                by_file.get(g.get("document", "")) for g in q.gold
            }
            out.append(example(q, "withheld", [d for d in ready if d not in gold_documents], False))
        if progress:
            progress()
    for q in unanswerable:
        out.append(example(q, "probe", None, False))
        if progress:
            progress()
    return out
