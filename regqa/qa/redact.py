"""Replace identifiers with placeholders before text leaves the building, and put them back after.

The same identifier always gets the same placeholder within one request ("[EMAIL_1]" twice for
the same address), so the large model can still refer to it, and `restore` puts the original
back in the returned answer wherever the placeholder appears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


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


# name -> (label, pattern, extra check). Order matters: the more specific patterns run first, so
# a card number is not taken for an account number.
PATTERNS: dict[str, tuple[str, re.Pattern, object]] = {
    "email": ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), None),
    "iban": ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), None),
    "card": ("CARD", re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), _card),
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
    "account": ("ACCOUNT", re.compile(r"\b\d{8,17}\b"), None),
}
PATTERN_NAMES = list(PATTERNS)


@dataclass
class Redactor:
    """One request's redaction: the patterns and terms to apply, and the placeholders given so far."""

    patterns: list[str] = field(default_factory=lambda: list(PATTERN_NAMES))
    terms: list[str] = field(default_factory=list)
    placeholders: dict[str, str] = field(default_factory=dict)  # placeholder -> original
    _by_original: dict[tuple[str, str], str] = field(default_factory=dict)

    def _placeholder(self, label: str, original: str) -> str:
        key = (label, original.casefold() if label == "TERM" else original)
        if key not in self._by_original:
            count = sum(1 for lab, _ in self._by_original if lab == label) + 1
            placeholder = f"[{label}_{count}]"
            self._by_original[key] = placeholder
            self.placeholders[placeholder] = original
        return self._by_original[key]

    def redact(self, text: str) -> str:
        # Admin-defined terms first (longest first, whole words, any case): client names may contain
        # digits or words the patterns would split.
        for term in sorted({t.strip() for t in self.terms if t.strip()}, key=len, reverse=True):
            pattern = re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.I)
            text = pattern.sub(lambda m: self._placeholder("TERM", m.group(0)), text)
        for name in PATTERN_NAMES:
            if name not in self.patterns:
                continue
            label, pattern, check = PATTERNS[name]

            def replace(m: re.Match, label=label, check=check) -> str:
                if check is not None and not check(m):
                    return m.group(0)
                return self._placeholder(label, m.group(0))

            text = pattern.sub(replace, text)
        return text

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
