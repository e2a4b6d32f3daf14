from __future__ import annotations

from django import forms
from django.conf import settings

from regqa.documents.models import Document


def _choices(field: str) -> list[tuple[str, str]]:
    values = (
        Document.objects.filter(status=Document.Status.READY)
        .exclude(**{field: ""})
        .order_by(field)
        .values_list(field, flat=True)
        .distinct()
    )
    return [("", "any")] + [(v, v) for v in values]


class AskForm(forms.Form):
    question = forms.CharField(
        max_length=settings.MAX_QUESTION_CHARS,
        strip=True,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "e.g. What counts as an extension of credit under Regulation O?"}
        ),
        error_messages={"required": "Please type a question."},
    )
    # Optional filters: which documents the question is asked of.
    issuer = forms.ChoiceField(label="Regulator / issuer", required=False)
    jurisdiction = forms.ChoiceField(required=False)
    doc_type = forms.ChoiceField(label="Document type", required=False)
    effective_from = forms.DateField(
        label="In effect from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    effective_until = forms.DateField(
        label="In effect until", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    FILTERS = ("issuer", "jurisdiction", "doc_type", "effective_from", "effective_until")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in ("issuer", "jurisdiction", "doc_type"):
            self.fields[name].choices = _choices(name)

    def clean_question(self) -> str:
        question = self.cleaned_data["question"]
        if sum(c.isalnum() for c in question) < 3:
            raise forms.ValidationError("Please type a question in words.")
        return question

    def filters(self) -> dict:
        """The filters that were set, as strings (stored with the answer)."""
        data = getattr(self, "cleaned_data", {})
        return {k: str(data[k]) for k in self.FILTERS if data.get(k)}
