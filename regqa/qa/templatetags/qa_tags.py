"""Render an answer's citations [n] as links to the passage and its page."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from regqa.qa.answer import CITATION

register = template.Library()


def passage_url(passage: dict) -> str:
    if passage.get("page_start"):
        url = reverse("document_page", args=[passage["document_id"], passage["page_start"]])
        return f"{url}?chunk={passage['chunk_id']}#passage"
    return reverse("passage", args=[passage["chunk_id"]])


@register.filter
def page_link(passage: dict) -> str:
    return passage_url(passage)


@register.filter
def cited(answer) -> SafeString:
    by_number = {p["n"]: p for p in answer.passages}

    def link(number: str) -> str:
        passage = by_number.get(int(number))
        if passage is None or not passage.get("sent_to_model"):
            return format_html(
                '<span class="cite invalid" title="No passage {} was given to the model">[{}]</span>', number, number
            )
        return format_html(
            '<a class="cite" href="{}" title="{}" target="_blank">[{}]</a>',
            passage_url(passage),
            f"{passage['document_title']} p. {passage.get('page_start') or '-'}",
            number,
        )

    parts = []
    last = 0
    text = answer.answer_text
    for match in CITATION.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append("".join(link(n.strip()) for n in match.group(1).split(",")))
        last = match.end()
    parts.append(escape(text[last:]))
    return mark_safe("".join(parts))
