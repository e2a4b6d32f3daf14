"""Render an answer's citations [n] as links to the passage and its page."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from regqa.qa.citations import CITATION
from regqa.qa.escalate import may_request
from regqa.qa.prompts import INJECTION

register = template.Library()


def passage_url(passage: dict, span: list[int] | tuple[int, int] | None = None) -> str:
    """The page the passage came from with the passage highlighted (and within it the span that
    supports a sentence), or the passage alone if it has no page (imported passages)."""
    query = f"span={span[0]}-{span[1]}" if span else ""
    if passage.get("page_start"):
        url = reverse("document_page", args=[passage["document_id"], passage["page_start"]])
        return f"{url}?chunk={passage['chunk_id']}{'&' + query if query else ''}#passage"
    return reverse("passage", args=[passage["chunk_id"]]) + (f"?{query}" if query else "")


@register.filter
def addresses_model(passage: dict) -> bool:
    """Whether the passage holds text addressed to an AI model (withheld from the prompt)."""
    return bool(INJECTION.search(passage.get("text", "")))


@register.filter
def page_link(passage: dict) -> str:
    return passage_url(passage)


def _with_links(text: str, by_number: dict[int, dict], spans: dict[int, list[int]]) -> str:
    def link(number: str) -> str:
        passage = by_number.get(int(number))
        if passage is None or not passage.get("sent_to_model"):
            return format_html(
                '<span class="cite invalid" title="No passage {} was given to the model">[{}]</span>', number, number
            )
        return format_html(
            '<a class="cite" href="{}" title="{}" target="_blank">[{}]</a>',
            passage_url(passage, spans.get(int(number))),
            f"{passage['document_title']} p. {passage.get('page_start') or '-'}",
            number,
        )

    parts: list[str] = []
    last = 0
    for match in CITATION.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append("".join(link(n.strip()) for n in match.group(1).split(",")))
        last = match.end()
    parts.append(escape(text[last:]))
    return "".join(parts)


@register.filter
def cited(answer) -> SafeString:
    """The answer with citations as links; when it has been verified, each sentence marked
    supported or not (with the reason as its tooltip) and each link opening the supporting span."""
    return _checked_text(answer.answer_text, answer.verification, answer.passages)


@register.filter
def instant_cited(answer) -> SafeString:
    """The instant quote from the passages (answer.instant), rendered like a checked answer."""
    return _checked_text(answer.instant.get("text", ""), answer.instant.get("verification"), answer.passages)


def _checked_text(text: str, verification: dict | None, passages: list[dict]) -> SafeString:
    by_number = {p["n"]: p for p in passages}
    sentences = (verification or {}).get("sentences")
    if not sentences:
        return mark_safe(_with_links(text, by_number, {}))
    out = []
    for s in sentences:
        spans = {c["n"]: c["span"] for c in s["checks"] if c["supported"]} or {c["n"]: c["span"] for c in s["checks"]}
        state = "supported" if s["supported"] else "unsupported"
        label = "Supported: " if s["supported"] else "Not supported: "
        out.append(
            format_html(
                '<span class="sentence {}" title="{}">{}{}</span>',
                state,
                label + s["reason"],
                mark_safe(_with_links(s["text"], by_number, spans)),
                "" if s["supported"] else mark_safe('<sup class="flag" aria-label="not supported">unsupported</sup>'),
            )
        )
    return mark_safe(" ".join(out))


@register.filter
def may_escalate(answer, user) -> bool:
    """Whether to offer this user the "ask the large model" button on this answer."""
    return may_request(answer, user)


@register.filter
def amendment_diff(amendment: dict) -> tuple[SafeString, SafeString]:
    """The cited text and what the new version says instead, with the changed words marked."""
    from regqa.qa.amended import word_diff

    return word_diff(amendment.get("old_text", ""), amendment.get("new_text", ""))


@register.filter
def thread(answer) -> list:
    """The answers a follow-up follows, oldest first."""
    from regqa.qa.followup import thread as answers_before

    return answers_before(answer)
