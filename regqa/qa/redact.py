"""Replace identifiers with placeholders before text leaves the building, and put them back after.

Matching works on what a human reads, not on the raw code points: the text is normalised (NFKC:
ligatures, full-width digits), invisible characters are dropped (zero-width spaces and joiners,
soft hyphens, a hyphen that breaks a word at a line end), dashes and spaces of every kind are
folded to "-" and " ", and each match is mapped back to the original characters it came from,
which are what gets replaced. So "4111\u200b1111 1111 1111", "GB82-west-1234…" in lower case or
an e-mail with a soft hyphen are caught as their plain forms are.

The same identifier always gets the same placeholder within one request ("[EMAIL_1]" twice for
the same address), so the large model can still refer to it, and `restore` puts the original
back in the returned answer wherever the placeholder appears.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

INVISIBLE = {"\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e"}
DASHES = set("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")
LINE_BREAK_HYPHEN = re.compile(r"-[ \t]*\r?\n[ \t]*(?=\w)")  # "Glo-\nbex": a word broken at a line end


def readable(text: str) -> tuple[str, list[int]]:
    """The text as a human reads it, and for each of its characters the index of the original
    character it comes from (one more entry at the end: len(text))."""
    out: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        if char in INVISIBLE:
            continue
        if char in DASHES:
            folded = "-"
        elif char.isspace() and char not in "\n\r":
            folded = " "
        else:
            folded = unicodedata.normalize("NFKC", char)
        out.extend(folded)
        origin.extend([i] * len(folded))
    plain = "".join(out)
    # drop a hyphen that only breaks a word at a line end, with the line break around it
    keep = [True] * len(plain)
    for m in LINE_BREAK_HYPHEN.finditer(plain):
        for j in range(m.start(), m.end()):
            keep[j] = False
    if not all(keep):
        origin = [o for o, k in zip(origin, keep, strict=True) if k]
        plain = "".join(c for c, k in zip(plain, keep, strict=True) if k)
    return plain, origin + [len(text)]


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, char in enumerate(digits):
        d = int(char)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


def _iban(match: re.Match) -> bool:
    """The ISO 13616 check: the country and check digits moved to the end, letters as numbers, mod 97 = 1."""
    code = re.sub(r"[^A-Za-z0-9]", "", match.group(0)).upper()
    if not 15 <= len(code) <= 34:
        return False
    number = "".join(str(int(c, 36)) for c in code[4:] + code[:4])
    return int(number) % 97 == 1


# name -> (label, pattern, extra check). Order matters: the more specific patterns run first, so
# a card number is not taken for an account number.
PATTERNS: dict[str, tuple[str, re.Pattern, object]] = {
    "email": ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), None),
    # any case, grouped by spaces or hyphens; the check digits must hold, so prose is never taken for one
    "iban": ("IBAN", re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]{4}){2,7}(?:[ -]?[A-Za-z0-9]{1,3})?\b"), _iban),
    "card": ("CARD", re.compile(r"\b\d(?:[ .-]?\d){12,18}\b"), _card),
    "national_id": (
        "NATIONAL_ID",
        # US SSN, UK National Insurance number, UAE Emirates ID.
        re.compile(
            r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b|\b784-?\d{4}-?\d{7}-?\d\b"
        ),
        None,
    ),
    "phone": (
        "PHONE",
        re.compile(
            r"(?<![\w.])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,3}"  # +44 20 7946 0958
            r"|\(\d{3}\) ?\d{3}-\d{4}|\d{3}-\d{3}-\d{4})\b"  # (212) 555-0143, 212-555-0143
        ),
        None,
    ),
    # "A/C12345678", "a/c no. 1234567", "Acct #12345678", or a bare run of 8-17 digits
    "account": (
        "ACCOUNT",
        re.compile(r"(?i)\b(?:a/c|acct|account)\.?\s*(?:no\.?|number|#)?\s*:?\s*#?\d{6,17}\b|\b\d{8,17}\b"),
        None,
    ),
}
PATTERN_NAMES = list(PATTERNS)


@dataclass
class Redactor:
    """One request's redaction: the patterns and terms to apply, and the placeholders given so far."""

    patterns: list[str] = field(default_factory=lambda: list(PATTERN_NAMES))
    terms: list[str] = field(default_factory=list)
    placeholders: dict[str, str] = field(default_factory=dict)  # placeholder -> original
    _by_original: dict[tuple[str, str], str] = field(default_factory=dict)

    def _placeholder(self, label: str, original: str, seen_as: str) -> str:
        """The placeholder of an identifier (`seen_as`: its readable form, so the same identifier
        written with other invisible characters or dashes gets the same placeholder)."""
        if label in ("TERM", "EMAIL"):
            key = (label, seen_as.casefold())
        else:  # numbers: the same digits and letters, however grouped
            key = (label, "".join(c for c in seen_as.casefold() if c.isalnum()))
        if key not in self._by_original:
            count = sum(1 for lab, _ in self._by_original if lab == label) + 1
            placeholder = f"[{label}_{count}]"
            self._by_original[key] = placeholder
            self.placeholders[placeholder] = original
        return self._by_original[key]

    def redact(self, text: str) -> str:
        # Admin-defined terms first (longest first, whole words, any case, read as the text is: a
        # ligature or a soft hyphen does not hide one): client names may contain digits or words
        # the patterns would split.
        terms = {readable(t.strip())[0] for t in self.terms if t.strip()}
        for term in sorted(terms, key=len, reverse=True):
            words = [re.escape(w) for w in term.split()]
            pattern = re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.I)
            text = self._apply(text, "TERM", pattern, None)
        for name in PATTERN_NAMES:
            if name in self.patterns:
                label, pattern, check = PATTERNS[name]
                text = self._apply(text, label, pattern, check)
        return text

    def _apply(self, text: str, label: str, pattern: re.Pattern, check) -> str:
        """Find `pattern` in the readable form of `text`; replace, in the original text, the
        characters each match came from by its placeholder."""
        plain, origin = readable(text)
        pieces, last = [], 0
        for m in pattern.finditer(plain):
            if m.start() == m.end() or (check is not None and not check(m)):
                continue
            start, end = origin[m.start()], origin[m.end() - 1] + 1
            if start < last:
                continue
            pieces += [text[last:start], self._placeholder(label, text[start:end], " ".join(m.group(0).split()))]
            last = end
        return "".join(pieces) + text[last:] if pieces else text

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for placeholder in self.placeholders:
            label = placeholder[1:].rsplit("_", 1)[0]
            out[label] = out.get(label, 0) + 1
        return out


def restore(text: str, placeholders: dict[str, str]) -> str:
    """Put the originals back where the returned text uses their placeholders."""
    if not placeholders:
        return text
    pattern = re.compile("|".join(re.escape(p) for p in sorted(placeholders, key=len, reverse=True)))
    return pattern.sub(lambda m: placeholders[m.group(0)], text)
