"""The learned answer/decline decision: "do these passages state an answer to this question?"

A calibrated logistic regression over signals available when the answer is decided: how strongly
the best passages match (dense and BM25 scores and their margins), how much of the question's
words, figures and rule numbers the passages hold, and the question's type. Logistic regression
because the data are small (hundreds to a few thousand questions), its probabilities come out
calibrated without a separate step (checked by the reliability bins `train` reports), and its
coefficients say which signals drove a decision, which is what the analyst is shown.

Trained by `manage.py train_decision` on questions with gold passages: answerable when a gold
passage is among the passages the model would read; not answerable when it is not, when the
gold documents are withheld from retrieval, and for the hand-written probe. The model file holds
its threshold (chosen by cross-validation for the false-refusal rate in REGQA_DECISION_FALSE_REFUSALS)
and its cross-validated figures. No model calls here: these signals are known before the local
model runs, so a decline costs the analyst no model time (the model could not change it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from regqa.documents import embed, lexical
from regqa.documents.chunking import is_heading

from .bundle import active_ranker
from .prompts import INJECTION
from .verify import content_terms, figures, is_yes_no, passage_spans

SIGNALS = [
    "best_dense",  # cosine similarity of the best passage
    "dense_margin",  # best minus second best
    "mean_dense_top3",
    "best_bm25",  # BM25 score of the best passage for the question, per question word
    "bm25_margin",
    "term_share_best",  # share of the question's content words in the best-matching passage
    "term_share_all",  # share found in any of the passages the model reads
    "figures_found",  # share of the question's figures found in those passages (1 when it has none)
    "rule_found",  # the question names a rule number and a passage carries it (-1: none named)
    "question_words",  # how many content words the question has
    "yes_no",  # the question asks for yes or no
    "definition",  # "what is", "what does ... mean", "define"
    "list",  # "which", "what are", "list"
    "comparison",  # "compare", "difference", "versus"
    "same_document",  # share of the passages read that come from the first passage's document
]
# The passages' sentences (those RegQA could quote, `quotable`), each against the question: a passage
# that states an answer usually has one sentence that says it. They cost an embedding (about 0.3 s
# on 2 cores), computed only for a model that reads them (one trained before them does not).
SENTENCE_SIGNALS = [
    "best_sentence",  # cosine similarity of the sentence closest in meaning to the question
    "sentence_margin",  # best minus second best
    "mean_sentence_top3",
    "sentence_term_share",  # the largest share of the question's content words in one sentence
    "sentence_match",  # the largest similarity x word share of one sentence
]
SIGNALS += SENTENCE_SIGNALS
# With a retrieval bundle active, its reranker's scores too (a bundle's decision model is trained on
# them, out of fold: training.cross_validate); a model without a bundle never reads them.
RERANK_SIGNALS = [
    "best_rerank",  # the learned ranker's score of the best passage the model reads
    "rerank_margin",  # best minus second best
    "mean_rerank_top3",
]
DEFINITION = re.compile(r"^\s*(?:what (?:is|are) (?:a|an|the)?\b|define\b|what does .{1,80} mean)", re.I)
LIST = re.compile(r"^\s*(?:which\b|what are\b|list\b|name the\b)", re.I)
COMPARISON = re.compile(r"\b(?:compare|comparison|difference|differ|versus|vs\.?|whereas)\b", re.I)

# Read in the explanation: what a signal means when it pulls the decision one way or the other.
PHRASES = {
    "best_dense": ("the best passage matches the question closely", "no passage matches the question closely"),
    "dense_margin": ("one passage stands out", "no passage stands out from the others"),
    "mean_dense_top3": ("the top passages all match the question", "the top passages match the question weakly"),
    "best_bm25": (
        "the question's exact words are in a passage",
        "few of the question's exact words are in the passages",
    ),
    "bm25_margin": (
        "one passage holds the question's words far more than the rest",
        "no passage holds the question's words much more than the rest",
    ),
    "term_share_best": (
        "one passage holds most of the question's words",
        "no passage holds most of the question's words",
    ),
    "term_share_all": ("the passages hold the question's words", "the passages lack some of the question's words"),
    "figures_found": (
        "the figures the question names are in the passages",
        "figures the question names are not in the passages",
    ),
    "rule_found": (
        "the rule the question names is in the passages",
        "the rule the question names is not in the passages",
    ),
    "question_words": ("the question is specific", "the question is short"),
    "yes_no": ("it is a yes/no question", "it is not a yes/no question"),
    "definition": ("it asks for a definition", "it does not ask for a definition"),
    "list": ("it asks for a list", "it does not ask for a list"),
    "comparison": ("it asks for a comparison", "it does not ask for a comparison"),
    "best_sentence": ("one sentence matches the question closely", "no sentence matches the question closely"),
    "sentence_margin": ("one sentence stands out", "no sentence stands out from the others"),
    "mean_sentence_top3": ("several sentences match the question", "few sentences match the question"),
    "sentence_term_share": (
        "one sentence holds most of the question's words",
        "no sentence holds most of the question's words",
    ),
    "sentence_match": (
        "one sentence matches the question in meaning and words",
        "no sentence matches the question in both meaning and words",
    ),
    "same_document": ("the passages come from one document", "the passages are spread over several documents"),
    "best_rerank": ("the learned ranking rates the best passage highly", "the learned ranking rates no passage highly"),
    "rerank_margin": ("the learned ranking puts one passage ahead", "the learned ranking sees no clear best passage"),
    "mean_rerank_top3": (
        "the learned ranking rates the passages highly",
        "the learned ranking rates the passages low",
    ),
}


class DecisionError(ValueError):
    """Training input the decision cannot be learned from; the message says why."""


def signals(question: str, passages: list[dict[str, Any]], sentences: bool = True) -> dict[str, float]:
    """The decision's signals for a question and the passages the model would read (dicts with
    text, section, score: the dense similarity; and rerank, the learned ranker's score, when a
    retrieval bundle ranked them: then RERANK_SIGNALS too); SENTENCE_SIGNALS unless `sentences` is
    false. Plain values, JSON-ready."""
    sent = [p for p in passages if p.get("sent_to_model", True)] or passages
    dense = sorted((float(p.get("score") or 0.0) for p in sent), reverse=True) + [0.0, 0.0]
    terms = content_terms(question)
    passage_terms = [content_terms(f"{p.get('section') or ''} {p['text']}") for p in sent]
    shares = [len(terms & t) / len(terms) if terms else 0.0 for t in passage_terms]
    found_terms = set().union(*passage_terms) if passage_terms else set()
    wanted_figures = figures(question)
    text = " ".join(f"{p.get('section') or ''} {p['text']}" for p in sent)
    asked_rules = set(lexical.rule_tokens(question))
    bm25 = _bm25(question, sent)
    first_document = sent[0].get("document_id") if sent else None
    values = {
        "best_dense": dense[0],
        "dense_margin": dense[0] - dense[1],
        "mean_dense_top3": float(np.mean(dense[:3])),
        "best_bm25": bm25[0] / max(len(terms), 1),
        "bm25_margin": (bm25[0] - bm25[1]) / max(len(terms), 1),
        "term_share_best": max(shares, default=0.0),
        "term_share_all": len(terms & found_terms) / len(terms) if terms else 0.0,
        "figures_found": len(wanted_figures & figures(text)) / len(wanted_figures) if wanted_figures else 1.0,
        "rule_found": (1.0 if asked_rules & set(lexical.rule_tokens(text)) else 0.0) if asked_rules else -1.0,
        "question_words": float(len(terms)),
        "yes_no": float(is_yes_no(question)),
        "definition": float(bool(DEFINITION.search(question))),
        "list": float(bool(LIST.search(question))),
        "comparison": float(bool(COMPARISON.search(question))),
        "same_document": sum(p.get("document_id") == first_document for p in sent) / max(len(sent), 1),
    } | (_sentence_signals(question, terms, sent) if sentences else {})
    reranked = [float(p["rerank"]) for p in sent if p.get("rerank") is not None]
    if reranked and len(reranked) == len(sent):
        rr = sorted(reranked, reverse=True)
        values |= {
            "best_rerank": rr[0],
            "rerank_margin": rr[0] - rr[1] if len(rr) > 1 else 0.0,
            "mean_rerank_top3": float(np.mean(rr[:3])),
        }
    return values


def quotable(passages: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(passage number, sentence) for the sentences of the passages that RegQA may quote: 4 to 80
    words, no heading (it names a subject, states nothing), no instruction to an AI model; spacing
    normalised, each ending with a stop. The decision's sentence signals and the quotes read them."""
    out = []
    for p in passages:
        for a, b in passage_spans(p["text"]):
            sentence = " ".join(p["text"][a:b].split())
            if is_heading(sentence.rstrip(".:;")):
                continue
            if 4 <= len(sentence.split()) <= 80 and not INJECTION.search(sentence):
                out.append((p.get("n", 0), sentence if sentence[-1] in ".:;!?" else f"{sentence}."))
    return out


SENTENCES_COMPARED = 12  # sentences embedded per question: those sharing most words with it


def most_overlapping(candidates: list[tuple[int, str]], terms: set[str]) -> list[tuple[int, str]]:
    """The SENTENCES_COMPARED candidates sharing most content words with `terms`, in passage order:
    the only ones compared by meaning (embedding every sentence of three long passages takes about
    0.4 s on 2 cores; these about 0.1 s)."""
    if len(candidates) <= SENTENCES_COMPARED:
        return candidates
    overlap = [len(terms & content_terms(sentence)) for _, sentence in candidates]
    keep = sorted(range(len(candidates)), key=lambda i: -overlap[i])[:SENTENCES_COMPARED]
    return [candidates[i] for i in sorted(keep)]


def _sentence_signals(question: str, terms: set[str], passages: list[dict[str, Any]]) -> dict[str, float]:
    """How closely the passages' best sentences match the question, in meaning and in words. The
    same sentences and query text as the instant quote's (decision.quote_passages with no draft), so
    the quote finds their vectors cached."""
    sentences = [sentence for _, sentence in most_overlapping(quotable(passages), terms)]
    if not sentences:
        return dict.fromkeys(SENTENCE_SIGNALS, 0.0)
    vectors = embed.embed_sentences([question, *sentences])
    similarity = (vectors[1:] @ vectors[0]).tolist()
    shares = [len(terms & content_terms(s)) / len(terms) if terms else 0.0 for s in sentences]
    top = sorted(similarity, reverse=True) + [0.0, 0.0]
    return {
        "best_sentence": top[0],
        "sentence_margin": top[0] - top[1],
        "mean_sentence_top3": float(np.mean(top[:3])),
        "sentence_term_share": max(shares),
        "sentence_match": max(a * b for a, b in zip(similarity, shares, strict=True)),
    }


def _bm25(question: str, passages: list[dict[str, Any]]) -> list[float]:
    """BM25 scores of the passages for the question (best first, two at least), from the library's index."""
    ids, scores = lexical.get_lexical_index().all_scores(question)
    by_id = dict(zip(ids, scores.tolist(), strict=True)) if len(scores) else {}
    values = sorted((by_id.get(int(p.get("chunk_id") or 0), 0.0) for p in passages), reverse=True)
    return values + [0.0, 0.0]


@dataclass
class DecisionModel:
    """Standardised logistic regression: P(stated) = sigmoid(w . (x - mean) / scale + b)."""

    coefficients: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]
    threshold: float  # decline below this probability (before the model runs: its signals are known then)
    figures: dict[str, Any]
    signals: tuple[str, ...] = tuple(SIGNALS)
    source: str = ""  # where it came from, for the explanation: "" (train_decision) or the bundle's label

    def reads_sentences(self) -> bool:
        return any(name in SENTENCE_SIGNALS for name in self.signals)

    def applies_to(self, values: dict[str, float]) -> bool:
        """Whether every signal it reads is known (a bundle's model needs the bundle's reranker scores)."""
        return all(name in values for name in self.signals)

    def _z(self, values: dict[str, float]) -> np.ndarray:
        x = np.array([values[name] for name in self.signals], dtype="float64")
        return (x - np.array(self.mean)) / np.array(self.scale)

    def probability(self, values: dict[str, float]) -> float:
        logit = float(self._z(values) @ np.array(self.coefficients) + self.intercept)
        return 1.0 / (1.0 + math.exp(-logit))

    def drivers(self, values: dict[str, float], n: int = 2) -> list[str]:
        """The signals that pushed this decision hardest, as phrases, in the direction they pushed."""
        contributions = self._z(values) * np.array(self.coefficients)
        order = np.argsort(-np.abs(contributions))[:n]
        return [PHRASES[self.signals[i]][0 if contributions[i] > 0 else 1] for i in order]

    def as_json(self) -> dict[str, Any]:
        return {
            "signals": list(self.signals),
            "coefficients": self.coefficients,
            "intercept": self.intercept,
            "mean": self.mean,
            "scale": self.scale,
            "threshold": self.threshold,
            "figures": self.figures,
        }

    def __or__(self, source: str) -> DecisionModel:
        """The same model, saying where it came from."""
        return DecisionModel(**{**self.__dict__, "source": source})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecisionModel:
        return cls(
            coefficients=list(data["coefficients"]),
            intercept=float(data["intercept"]),
            mean=list(data["mean"]),
            scale=list(data["scale"]),
            threshold=float(data["threshold"]),
            figures=dict(data.get("figures", {})),
            signals=tuple(data["signals"]),
        )


# ---------------------------------------------------------------------------------------------
# Training


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[list[float], float, list[float], list[float]]:
    from sklearn.linear_model import LogisticRegression  # scikit-learn loads in ~0.5 s: only when training

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit((x - mean) / scale, y)
    return model.coef_[0].tolist(), float(model.intercept_[0]), mean.tolist(), scale.tolist()


def _predict(params: tuple[list[float], float, list[float], list[float]], x: np.ndarray) -> np.ndarray:
    coefficients, intercept, mean, scale = params
    z = (x - np.array(mean)) / np.array(scale)
    return 1.0 / (1.0 + np.exp(-(z @ np.array(coefficients) + intercept)))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")


def threshold_for(y: np.ndarray, p: np.ndarray, false_refusals: float) -> float:
    """The highest threshold that declines at most `false_refusals` of the answerable examples."""
    answerable = np.sort(p[y == 1])
    if len(answerable) == 0:
        return 0.5
    index = int(math.floor(false_refusals * len(answerable)))
    return float(answerable[min(index, len(answerable) - 1)]) - 1e-9 if index > 0 else float(answerable[0]) - 1e-9


def group_folds(groups: Sequence[str], folds: int) -> np.ndarray:
    """The fold of each example, from a hash of its group (a question and the copies made from it)."""
    return np.array([int(hashlib.sha256(g.encode()).hexdigest(), 16) % folds for g in groups])


def train(
    rows: list[dict[str, float]],
    labels: list[int],
    groups: list[str],
    *,
    folds: int = 5,
    false_refusals: float | None = None,
    names: Sequence[str] = tuple(SIGNALS),
) -> DecisionModel:
    """Cross-validate by group (a question and the copies made from it are one group), choose the
    threshold on the out-of-fold probabilities, and fit the final model on everything."""
    if not rows:
        raise DecisionError("The training file holds no question.")
    y = np.array(labels, dtype="int64")
    if len(set(y.tolist())) < 2:
        kind = "answerable" if y[0] == 1 else "unanswerable"
        raise DecisionError(
            f"Every training example is {kind}: the decision needs both answerable and unanswerable questions "
            "(add --unanswerable, or keep --withhold on)."
        )
    x = np.array([[r[name] for name in names] for r in rows], dtype="float64")

    fold_of = group_folds(groups, folds)
    oof = np.zeros(len(y))
    for f in range(folds):
        test = fold_of == f
        if not test.any() or len(set(y[~test].tolist())) < 2:
            raise DecisionError(f"Too few questions of each kind for {folds} folds.")
        oof[test] = _predict(_fit(x[~test], y[~test]), x[test])
    target = settings.DECISION_FALSE_REFUSALS if false_refusals is None else false_refusals
    threshold = threshold_for(y, oof, target)
    declined = oof < threshold
    bins = []
    for low in np.arange(0.0, 1.0, 0.2):
        inside = (oof >= low) & (oof < low + 0.2 + (1e-9 if low >= 0.8 else 0))
        if inside.any():
            bins.append({"from": round(float(low), 1), "predicted": float(oof[inside].mean()),
                         "observed": float(y[inside].mean()), "n": int(inside.sum())})  # fmt: skip
    figures_ = {
        "examples": len(y),
        "answerable": int(y.sum()),
        "unanswerable": int((1 - y).sum()),
        "folds": folds,
        "roc_auc": roc_auc(y, oof),
        "false_refusal_target": target,
        "false_refusals": float(declined[y == 1].mean()),
        "correct_refusals": float(declined[y == 0].mean()),
        "calibration": bins,
    }
    coefficients, intercept, mean, scale = _fit(x, y)
    return DecisionModel(coefficients, intercept, mean, scale, threshold, figures_, tuple(names))


# ---------------------------------------------------------------------------------------------
# The active model


def path() -> Path:
    return Path(settings.DATA_DIR) / "decision" / "model.json"


def save(model: DecisionModel) -> Path:
    """Write the model atomically (a half-written file is never read)."""
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(model.as_json(), indent=1))
    os.replace(partial, target)
    return target


_cache: tuple[float, DecisionModel] | None = None


def active() -> DecisionModel | None:
    """The decision model answers use: the active retrieval bundle's own (trained on the same
    ranking, out of fold, with its reranker's scores as signals; not one trained on written
    questions only, see training.train_bundle), else the one `train_decision` saved (re-read when
    its file changes), else None."""
    learned = active_ranker()
    if learned is not None and learned.decision is not None and learned.decision.get("used", True):
        key = (learned.bundle.pk, learned.bundle.created_at.isoformat())  # as bundle.active_ranker caches it
        if key not in _bundle_models:
            _bundle_models[key] = DecisionModel.from_json(learned.decision) | learned.bundle.label
        return _bundle_models[key]
    return trained()


_bundle_models: dict[tuple[int, str], DecisionModel] = {}  # parsed once per loaded bundle, not per question


def trained() -> DecisionModel | None:
    """The model `train_decision` saved (re-read when its file changes), or None."""
    global _cache
    target = path()
    try:
        stamp = target.stat().st_mtime
    except FileNotFoundError:
        return None
    if _cache is None or _cache[0] != stamp:
        _cache = (stamp, DecisionModel.from_json(json.loads(target.read_text())))
    return _cache[1]
