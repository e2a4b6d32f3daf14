"""An answer as a PDF memo for the compliance file (ReportLab): the question, who asked and when,
the answer with its sentence-by-sentence verification, the quality scores, the routing decision,
each cited passage with its document, version and page, the model, and the audit entry (sequence
number and hash) that records the answer, so the memo can be checked against the audit trail."""

from __future__ import annotations

import io
from pathlib import Path
from xml.sax.saxutils import escape

import reportlab
from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from regqa.audit import log as audit_log
from regqa.audit.models import AuditEvent, EventKind

from .models import Answer
from .quality import CRITERIA

FONTS = Path(reportlab.__file__).parent / "fonts"  # Bitstream Vera, shipped with ReportLab


def _fonts() -> tuple[str, str]:
    """A TrueType font covering more than Latin-1 (curly quotes, dashes), registered once."""
    if "RegQA" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("RegQA", str(FONTS / "Vera.ttf")))
        pdfmetrics.registerFont(TTFont("RegQA-Bold", str(FONTS / "VeraBd.ttf")))
    return "RegQA", "RegQA-Bold"


def _styles() -> dict[str, ParagraphStyle]:
    regular, bold = _fonts()
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontName=regular, fontSize=9.5, leading=12.5)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontName=bold, fontSize=15, leading=19),
        "h": ParagraphStyle("h", parent=base["Heading2"], fontName=bold, fontSize=11.5, leading=14, spaceBefore=8),
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=8, leading=10, textColor=colors.HexColor("#444444")),
        "quote": ParagraphStyle("quote", parent=body, leftIndent=8 * mm, fontSize=8.5, leading=11),
    }


def audit_entry(answer: Answer) -> AuditEvent | None:
    """The audit event that records this answer as it was settled (the last one)."""
    return AuditEvent.objects.filter(kind=EventKind.ANSWER, data__answer_id=answer.pk).order_by("-seq").first()


def _p(text: object, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)


def memo_pdf(answer: Answer) -> bytes:
    s = _styles()
    story: list = [_p("RegQA answer memo", s["title"])]
    when = timezone.localtime(answer.created_at).strftime("%Y-%m-%d %H:%M %Z")
    facts = [
        ("Question", answer.question),
        ("Asked by", f"{answer.user.get_username()} on {when}"),
        ("Outcome", answer.get_status_display()),
        ("Answered by", f"{answer.answered_by} model {answer.model_name or '(no model call)'}"),
        ("Retrieval", answer.retrieval_bundle or "the untrained ranking"),
    ]
    if answer.filters:
        facts.append(("Document filters", ", ".join(f"{k} {v}" for k, v in answer.filters.items())))
    event = audit_entry(answer)
    facts.append(("Audit entry", f"#{event.seq}, hash {event.hash}" if event else "none recorded"))
    # the hash in the small font: at the body's size 64 hex digits can overflow the column and be
    # split mid-hash, which breaks it for anyone copying it into `audit verify`
    rows = [[_p(k, s["small"]), _p(v, s["small" if k == "Audit entry" else "body"])] for k, v in facts]
    table = Table(rows, colWidths=[32 * mm, 138 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))
    story += [table, _p("Answer", s["h"]), _p(answer.answer_text or answer.error or "(no answer)", s["body"])]

    checked = answer.verification or {}
    if checked.get("sentences"):
        story.append(_p("Verification", s["h"]))
        summary = f"{checked.get('supported', 0)} of {checked.get('total', 0)} sentences supported"
        story.append(_p(f"{summary} ({checked.get('status')}).", s["body"]))
        for sentence in checked["sentences"]:
            mark = "Supported" if sentence.get("supported") else "NOT supported"
            story.append(_p(f"{mark}: {sentence.get('text', '')} ({sentence.get('reason', '')})", s["quote"]))
    if checked.get("decision", {}).get("explanation"):
        story.append(_p(f"Decision: {checked['decision']['explanation']}", s["small"]))

    if answer.quality:
        story.append(_p("Quality scores", s["h"]))
        rows = [
            [_p(name, s["body"]), _p(f"{answer.quality[key]['score']}/5", s["body"]),
             _p(answer.quality[key].get("explanation", ""), s["small"])]
            for key, name in CRITERIA.items() if key in answer.quality
        ]  # fmt: skip
        widths = [38 * mm, 14 * mm, 118 * mm]
        story.append(Table(rows, colWidths=widths, style=[("VALIGN", (0, 0), (-1, -1), "TOP")]))

    route = answer.route
    if route:
        story.append(_p("Routing", s["h"]))
        version = f"policy version {route.policy_version}" if route.policy_version is not None else "no policy"
        story.append(_p(f"{route.action} ({version}): {'; '.join(route.reasons) or 'no reason recorded'}", s["body"]))

    cited = {int(c["n"]) for c in answer.citations if c.get("valid")}
    story.append(_p("Cited passages", s["h"]))
    if not cited:
        story.append(_p("The answer cites no passage.", s["body"]))
    for p in answer.snapshot:
        if p.n not in cited:
            continue
        pages = f"p. {p.page_start}" + (f"-{p.page_end}" if p.page_end and p.page_end != p.page_start else "")
        where = f"[{p.n}] {p.document_title}, version {p.document_version}, {pages if p.page_start else 'no page'}"
        if p.document_sha256:
            where += f" (file SHA-256 {p.document_sha256[:16]}…)"
        story += [_p(where, s["body"]), _p(p.text, s["quote"]), Spacer(1, 3)]
    if answer.source_amended:
        amended = "Source amended: a newer version of a cited document changed or removed the cited text."
        story.append(_p(amended, s["h"]))
    story.append(Spacer(1, 6))
    story.append(_p(f"Made by RegQA on {timezone.localtime().strftime('%Y-%m-%d %H:%M %Z')}.", s["small"]))

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=A4, title=f"RegQA answer {answer.pk}", author="RegQA", leftMargin=20 * mm, rightMargin=20 * mm
    )
    document.build(story)
    return buffer.getvalue()


def export(answer: Answer, user) -> bytes:
    """The memo for `user` (the page and the API), recorded in the audit trail as an export."""
    pdf = memo_pdf(answer)
    audit_log.record(
        EventKind.LOG_EXPORTED,
        f"Answer memo exported: {answer.question[:200]}",
        user=user,
        data={"format": "memo.pdf", "answer_id": answer.pk, "bytes": len(pdf)},
    )
    return pdf
