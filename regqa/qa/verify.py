"""Check an answer's citations against the passages they name, sentence by sentence.

A sentence is supported by a passage when
- every figure in it (numbers, percentages, dates, section numbers) appears in the passage,
- it adds something to the question (a sentence that only restates the question is no answer), and
- what it adds appears in the passage, near the rest of the sentence's words (lexical overlap
  within three consecutive passage sentences), or the passage says the same thing in other words
  (cosine similarity of sentence embeddings) while sharing some of those words.
The supporting span is the passage sentence closest to the answer sentence; citation links
highlight it. Sentences without a citation are checked against every passage given to the
model, so a correct but uncited sentence is reported as such rather than as unsupported.
"""

from __future__ import annotations

import re

import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from regqa.documents import embed

from .citations import CITATION, cited_numbers
from .schemas import SentenceCheck, SpanCheck, Verification, VerificationStatus

Check = SpanCheck
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+")
FIGURE = re.compile(r"(?<![\w.])\$?\d[\d,]*(?:\.\d+)?%?")
# Sentence ends: . ! ? followed by space and an upper-case letter, digit or quote. Citations
# written after the full stop ("... rate. [2]") stay with the sentence they follow.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(§\[])")
LEADING_CITATIONS = re.compile(r"^(?:\[\d+(?:\s*,\s*\d+)*\]\s*)+\.?")

LEXICAL_SUPPORT = 0.6  # share of a sentence's content words found in the passage
SEMANTIC_SUPPORT = 0.6  # cosine similarity to the closest passage sentence...
SEMANTIC_MIN_LEXICAL = 0.3  # ...together with at least this word overlap

_AUX = r"(?:is|are|was|were|does|do|did|may|can|could|must|should|would|will|has|have|shall)\b"
# "Is ...?", "Q1: May ...?", and "When ..., must ...?" ask for yes or no.
YES_NO = re.compile(rf"(?:q\d+[:.]\s*)?(?:{_AUX}|(?:when|if|where|under|for)\b[^?]*,\s*{_AUX})", re.I)

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


# A bare conclusion ("Yes." "No." "It depends.") belongs to the sentence that gives its reason.
CONCLUSION = re.compile(r"^(?:yes|no|it depends)[.,:;!]?$", re.I)


def split_sentences(text: str) -> list[str]:
    merged: list[str] = []
    for part in SENTENCE_END.split(text.strip()):
        lead = LEADING_CITATIONS.match(part)
        if merged and lead:  # "... is limited. [2] Next" : the [2] belongs to the sentence before
            merged[-1] = f"{merged[-1]} {lead.group().strip()}"
            part = part[lead.end() :]
        if part.strip():
            if merged and CONCLUSION.match(merged[-1]):
                merged[-1] = f"{merged[-1]} {part.strip()}"
            else:
                merged.append(part.strip())
    return merged


def passage_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the sentences of a passage."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def is_yes_no(question: str) -> bool:
    return bool(YES_NO.match(question.strip()))


def check_support(
    sentence: str,
    sentence_vector: np.ndarray,
    n: int,
    passage: dict,
    vectors: dict,
    question_terms: set[str],
    yes_no: bool = False,
    question_figures: frozenset[str] = frozenset(),
) -> Check:
    """Whether passage n supports the sentence. What must be found is what the sentence adds to
    the question: its words that the question does not already contain, near each other in the
    passage (within a window of three passage sentences). The answer to a yes/no question may
    only restate it ("No, a member bank may not ..."): then all its words must be found."""
    text = passage["text"]
    section = passage.get("section") or ""
    terms = content_terms(CITATION.sub(" ", sentence))
    new_terms = terms - question_terms
    if not new_terms and yes_no:
        new_terms = terms
    spans, span_vectors = vectors[n]
    if not spans:
        spans, span_vectors = [(0, len(text))], np.zeros((1, len(sentence_vector)), dtype="float32")
    similarities = span_vectors @ sentence_vector
    span_terms = [content_terms(text[a:b]) for a, b in spans]
    section_terms = content_terms(section)
    best = None
    for i, span in enumerate(spans):
        window = set().union(*span_terms[max(0, i - 1) : i + 2]) | section_terms
        lexical = len(terms & window) / len(terms) if terms else 1.0
        added = len(new_terms & window) / len(new_terms) if new_terms else 0.0
        key = (added + lexical + float(similarities[i]), i)
        if best is None or key > best[0]:
            best = (key, span, lexical, added, float(similarities[i]))
    assert best is not None  # spans is never empty (see above)
    _, span, lexical, added, semantic = best

    def result(supported: bool, reason: str) -> Check:
        return Check(
            n=n, supported=supported, lexical=round(lexical, 3), semantic=round(semantic, 3), span=span, reason=reason
        )

    missing = figures(sentence) - figures(text + " " + section) - question_figures
    if missing:
        return result(False, f"{', '.join(sorted(missing))} does not appear in passage [{n}]")
    if not new_terms:
        return result(False, "it only restates the question")
    if added >= LEXICAL_SUPPORT and lexical >= LEXICAL_SUPPORT:
        return result(True, f"its words appear together in passage [{n}]")
    if semantic >= SEMANTIC_SUPPORT and added >= SEMANTIC_MIN_LEXICAL:
        return result(True, f"passage [{n}] says the same")
    return result(
        False, f"passage [{n}] does not say this ({added:.0%} of what it adds is there, similarity {semantic:.2f})"
    )


def verify_answer(answer_text: str, passages: list[dict], question: str = "") -> dict:
    """Per-sentence verification of an answer against the passages given to the model
    (dicts with "n" and "text"). Returns a JSON-ready dict with the overall status:
    "verified" (every sentence supported), "partial", or "unverified" (none supported)."""
    given = {p["n"]: p for p in passages}
    question_terms = content_terms(question)
    yes_no = is_yes_no(question)
    question_figures = frozenset(figures(question))  # "section 9(20)" may be repeated from the question
    sentences = split_sentences(answer_text)
    if not sentences:
        return Verification(status=VerificationStatus.UNVERIFIED, supported=0, total=0, sentences=[]).dump()
    # One batch of embeddings: the answer's sentences and every sentence of every passage.
    spans = {n: passage_spans(p["text"]) for n, p in given.items()}
    texts = [CITATION.sub(" ", s) for s in sentences]
    for n, p in given.items():
        texts += [p["text"][a:b] for a, b in spans[n]]
    matrix = embed.embed_sentences(texts)
    vectors, row = {}, len(sentences)
    for n in given:
        vectors[n] = (spans[n], matrix[row : row + len(spans[n])])
        row += len(spans[n])

    results = []
    for i, sentence in enumerate(sentences):
        numbers = cited_numbers(sentence)
        invalid = [n for n in numbers if n not in given]
        candidates = [n for n in numbers if n in given] if numbers else list(given)
        checks = [
            check_support(sentence, matrix[i], n, given[n], vectors, question_terms, yes_no, question_figures)
            for n in candidates
        ]
        good = [c for c in checks if c.supported]
        best = max(good or checks, key=lambda c: (c.supported, c.lexical + c.semantic), default=None)
        if good and best:
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
    if supported == len(results):
        status = VerificationStatus.VERIFIED
    else:
        status = VerificationStatus.PARTIAL if supported else VerificationStatus.UNVERIFIED
    return Verification(status=status, supported=supported, total=len(results), sentences=results).dump()
