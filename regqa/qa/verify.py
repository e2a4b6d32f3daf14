"""Check an answer's citations against the passages they name, sentence by sentence.

A sentence is supported by a passage when
- every figure in it (numbers, percentages, dates, section numbers) appears in the passage, and
- its content words appear there (lexical overlap), or it says the same thing in other words
  (cosine similarity of sentence embeddings) while still sharing some of the passage's words.
The supporting span is the passage sentence closest to the answer sentence; citation links
highlight it. Sentences without a citation are checked against every passage given to the
model, so a correct but uncited sentence is reported as such rather than as unsupported.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from regqa.documents import embed

CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+")
FIGURE = re.compile(r"(?<![\w.])\$?\d[\d,]*(?:\.\d+)?%?")
# Sentence ends: . ! ? followed by space and an upper-case letter, digit or quote. Citations
# written after the full stop ("... rate. [2]") stay with the sentence they follow.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(§\[])")
LEADING_CITATIONS = re.compile(r"^(?:\[\d+(?:\s*,\s*\d+)*\]\s*)+\.?")

LEXICAL_SUPPORT = 0.6  # share of a sentence's content words found in the passage
SEMANTIC_SUPPORT = 0.6  # cosine similarity to the closest passage sentence...
SEMANTIC_MIN_LEXICAL = 0.3  # ...together with at least this word overlap

_stemmer = Stemmer.Stemmer("english")
_STOP = set(STOPWORDS_EN) | {"also", "may", "must", "shall", "would", "could", "however", "therefore"}


def content_terms(text: str) -> set[str]:
    words = [w.lower() for w in WORD.findall(text)]
    return set(_stemmer.stemWords([w for w in words if w not in _STOP and len(w) > 1]))


def figures(text: str) -> set[str]:
    """Numbers as written in a text, normalised ("1,000" -> "1000", "5%" -> "5"); single digits
    are left out (list numbering, "one" written as "1")."""
    out = set()
    for match in FIGURE.findall(CITATION.sub(" ", text)):
        value = match.lstrip("$").rstrip("%").replace(",", "").rstrip(".")
        if value and not (len(value) == 1 and value.isdigit()):
            out.add(value)
    return out


def split_sentences(text: str) -> list[str]:
    merged: list[str] = []
    for part in SENTENCE_END.split(text.strip()):
        lead = LEADING_CITATIONS.match(part)
        if merged and lead:  # "... is limited. [2] Next" : the [2] belongs to the sentence before
            merged[-1] = f"{merged[-1]} {lead.group().strip()}"
            part = part[lead.end() :]
        if part.strip():
            merged.append(part.strip())
    return merged


def cited_numbers(sentence: str) -> list[int]:
    seen: list[int] = []
    for match in CITATION.finditer(sentence):
        for number in match.group(1).split(","):
            if int(number) not in seen:
                seen.append(int(number))
    return seen


def passage_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the sentences of a passage."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


@dataclass
class Check:
    n: int  # passage number
    supported: bool
    lexical: float
    semantic: float
    span: tuple[int, int]  # supporting span in the passage text
    reason: str


@dataclass
class SentenceCheck:
    text: str
    citations: list[int]
    supported: bool
    reason: str
    checks: list[Check] = field(default_factory=list)
    passage: int | None = None  # the passage that supports it (or came closest)
    span: tuple[int, int] | None = None


def check_support(sentence: str, sentence_vector: np.ndarray, n: int, passage: dict, vectors: dict) -> Check:
    text = passage["text"]
    terms = content_terms(CITATION.sub(" ", sentence))
    passage_terms = content_terms(text + " " + (passage.get("section") or ""))
    lexical = len(terms & passage_terms) / len(terms) if terms else 1.0
    spans, span_vectors = vectors[n]
    similarities = span_vectors @ sentence_vector
    best = int(np.argmax(similarities)) if len(spans) else 0
    semantic = float(similarities[best]) if len(spans) else 0.0
    span = spans[best] if spans else (0, len(text))
    missing = figures(sentence) - figures(text + " " + (passage.get("section") or ""))
    if missing:
        reason = f"{', '.join(sorted(missing))} does not appear in passage [{n}]"
        return Check(n, False, round(lexical, 3), round(semantic, 3), span, reason)
    if lexical >= LEXICAL_SUPPORT:
        return Check(n, True, round(lexical, 3), round(semantic, 3), span, f"its words appear in passage [{n}]")
    if semantic >= SEMANTIC_SUPPORT and lexical >= SEMANTIC_MIN_LEXICAL:
        return Check(n, True, round(lexical, 3), round(semantic, 3), span, f"passage [{n}] says the same")
    reason = f"passage [{n}] does not say this ({lexical:.0%} of its words, similarity {semantic:.2f})"
    return Check(n, False, round(lexical, 3), round(semantic, 3), span, reason)


def verify_answer(answer_text: str, passages: list[dict]) -> dict:
    """Per-sentence verification of an answer against the passages given to the model
    (dicts with "n" and "text"). Returns a JSON-ready dict with the overall status:
    "verified" (every sentence supported), "partial", or "unverified" (none supported)."""
    given = {p["n"]: p for p in passages}
    sentences = split_sentences(answer_text)
    if not sentences:
        return {"status": "unverified", "supported": 0, "total": 0, "sentences": []}
    # One batch of embeddings: the answer's sentences and every sentence of every passage.
    spans = {n: passage_spans(p["text"]) for n, p in given.items()}
    texts = [CITATION.sub(" ", s) for s in sentences]
    for n, p in given.items():
        texts += [p["text"][a:b] for a, b in spans[n]]
    matrix = embed.embed_passages(texts)
    vectors, row = {}, len(sentences)
    for n in given:
        vectors[n] = (spans[n], matrix[row : row + len(spans[n])])
        row += len(spans[n])

    results = []
    for i, sentence in enumerate(sentences):
        numbers = cited_numbers(sentence)
        invalid = [n for n in numbers if n not in given]
        candidates = [n for n in numbers if n in given] if numbers else list(given)
        checks = [check_support(sentence, matrix[i], n, given[n], vectors) for n in candidates]
        good = [c for c in checks if c.supported]
        best = max(good or checks, key=lambda c: (c.supported, c.lexical + c.semantic), default=None)
        if good:
            reason = best.reason if numbers else f"no citation, but {best.reason}"
        elif invalid and not checks:
            reason = f"cites [{', '.join(map(str, invalid))}], which names no passage given to the model"
        elif best:
            reason = best.reason if numbers else f"no citation, and no passage supports it ({best.reason})"
        else:
            reason = "no passage to check it against"
        if invalid and good:
            reason += f"; [{', '.join(map(str, invalid))}] names no passage given to the model"
        results.append(
            SentenceCheck(
                text=sentence,
                citations=numbers,
                supported=bool(good),
                reason=reason,
                checks=checks,
                passage=best.n if best else None,
                span=best.span if best else None,
            )
        )
    supported = sum(r.supported for r in results)
    status = "verified" if supported == len(results) else "partial" if supported else "unverified"
    return {"status": status, "supported": supported, "total": len(results), "sentences": [asdict(r) for r in results]}
