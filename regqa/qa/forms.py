"""The ask form (question and document filters) and the escalation policy form: input checks only,
no answering and no saving of policy versions (views do that)."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib.auth.models import Group

from regqa.documents.models import Document

from .feedback import NoFeedback, training_set
from .models import Answer, EscalationPolicy, Feedback
from .training import sources_label, store_pairs


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

    # A follow-up (followup.py): the answer it follows, and the follow-up as the analyst typed it.
    follows = forms.IntegerField(required=False, widget=forms.HiddenInput)
    asked = forms.CharField(required=False, max_length=settings.MAX_QUESTION_CHARS, widget=forms.HiddenInput)

    FILTERS = ("issuer", "jurisdiction", "doc_type", "effective_from", "effective_until")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in ("issuer", "jurisdiction", "doc_type"):
            self.fields[name].choices = _choices(name)  # type: ignore[attr-defined]  # ChoiceFields

    def clean_question(self) -> str:
        question = self.cleaned_data["question"]
        if sum(c.isalnum() for c in question) < 3:
            raise forms.ValidationError("Please type a question in words.")
        return question

    def filters(self) -> dict:
        """The filters that were set, as strings (stored with the answer)."""
        data = getattr(self, "cleaned_data", {})
        return {k: str(data[k]) for k in self.FILTERS if data.get(k)}


class PolicyForm(forms.ModelForm):
    """A new version of the escalation policy, started from the one in force."""

    allowed_groups = forms.MultipleChoiceField(
        label="Roles that may escalate", required=False, widget=forms.CheckboxSelectMultiple
    )
    redact_patterns = forms.MultipleChoiceField(
        label="Redact before sending",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=[
            ("email", "E-mail addresses"),
            ("phone", "Phone numbers"),
            ("iban", "IBANs"),
            ("account", "Account numbers (8-17 digits)"),
            ("card", "Card numbers (checked with Luhn)"),
            ("national_id", "National IDs (US SSN, UK NI, Emirates ID)"),
        ],
    )

    class Meta:
        model = EscalationPolicy
        fields = [
            "mode", "allowed_groups", "max_sensitivity", "redact_patterns", "redact_terms",
            "user_daily_escalations", "global_daily_escalations", "user_daily_tokens", "global_daily_tokens",
            "min_retrieval_score", "min_groundedness", "min_citation_accuracy", "escalate_on_decline",
            "escalate_complex", "note",
        ]  # fmt: skip
        widgets = {"redact_terms": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = sorted(set(Group.objects.values_list("name", flat=True)) | {"superuser"})
        self.fields["allowed_groups"].choices = [(n, n) for n in names]  # type: ignore[attr-defined]
        for name in ("min_retrieval_score", "min_groundedness", "min_citation_accuracy"):
            self.fields[name].validators.append(_at_most_5)
            self.fields[name].widget.attrs["max"] = 5

    def clean(self):
        data = super().clean() or {}
        if data.get("mode") != "off" and not data.get("allowed_groups"):
            self.add_error("allowed_groups", "Choose at least one role, or switch escalation off.")
        return data


def _at_most_5(value: int) -> None:
    if value > 5:
        raise forms.ValidationError("Scores run from 1 to 5 (0 turns the trigger off).")


class RetrievalTrainingForm(forms.Form):
    """What to train a retrieval bundle on: a labelled questions file, the answers analysts found
    helpful, questions the local model writes, or several of them."""

    pairs = forms.FileField(
        required=False,
        label="Labelled questions (JSON Lines, optional)",
        help_text='One question a line: {"qid", "question", "gold": [{"passage_id": ...} '
        'or {"document": FILE, "page": N}]}.',
    )
    feedback = forms.BooleanField(
        required=False,
        label="Include analysts' feedback",
        help_text="Also train on the answers their askers marked helpful: the question, and the passages the "
        "answer cites that nobody marked wrong.",
    )
    synthetic = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=5000,
        initial=0,
        label="Questions to write",
        help_text="With no labelled questions: the local model writes one training question for each of this "
        "many passages of the library (about 2-5 s each on 2 cores).",
    )
    folds = forms.IntegerField(min_value=2, max_value=10, initial=5, help_text="Cross-validation folds, by question.")
    fine_tune_embedder = forms.BooleanField(
        required=False,
        label="Fine-tune the embedder",
        help_text="Retrain the embedding model itself (kept with the bundle, with its own vectors of the library) "
        "instead of adapting the question side only: usually better, much slower (about 15 minutes a fold for "
        "2,200 questions on 2 cores of an AMD EPYC with AVX-512, more without AVX-512; 4-5x that when "
        "REGQA_ENCODER_SETTINGS lists three settings to choose from).",
    )

    MAX_BYTES = 50 * 1024 * 1024

    def clean(self):
        data = super().clean() or {}
        if self.errors:
            return data
        upload = data.get("pairs")
        if not upload and not data.get("synthetic") and not data.get("feedback"):
            raise forms.ValidationError(
                "Give a labelled questions file, analysts' feedback or a number of questions to write (or several)."
            )
        if upload and upload.size > self.MAX_BYTES:
            raise forms.ValidationError({"pairs": "The file is larger than 50 MB."})
        try:
            self.content, questions, self.feedback_added = training_set(
                upload.read() if upload else b"",
                upload.name if upload else "the file",
                bool(data.get("feedback")),
                other_sources=bool(data.get("synthetic")),
            )
        except UnicodeDecodeError as exc:
            raise forms.ValidationError({"pairs": "The file is not UTF-8 text."}) from exc
        except NoFeedback as exc:
            raise forms.ValidationError(str(exc)) from exc
        except ValueError as exc:
            raise forms.ValidationError({"pairs": str(exc)}) from exc
        if upload and len(questions) == (self.feedback_added or 0):
            raise forms.ValidationError({"pairs": "The file holds no question."})
        return data

    def store(self) -> tuple[Path | None, str]:
        """Keep the questions to train on (the file's, then the feedback pairs it does not hold) under
        the data directory (training.store_pairs), if there are any."""
        if not self.content.strip():
            return None, ""
        return store_pairs(self.content)

    def source_names(self) -> str:
        """What the bundle is trained on, as its row on the page says."""
        data = self.cleaned_data
        return sources_label(
            data["pairs"].name if data["pairs"] else None,
            self.feedback_added if data["feedback"] else None,
            data["synthetic"] or 0,
        )


class FeedbackForm(forms.Form):
    """Helpful or not, which cited passages were the wrong ones, and a comment."""

    verdict = forms.ChoiceField(
        choices=Feedback.Verdict.choices, error_messages={"required": "Choose helpful or not helpful."}
    )
    wrong_passages = forms.TypedMultipleChoiceField(coerce=int, required=False)
    comment = forms.CharField(max_length=2000, required=False, strip=True)

    def __init__(self, answer: Answer, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cited = sorted({int(c["n"]) for c in answer.citations if c.get("valid")})
        self.fields["wrong_passages"].choices = [(n, f"[{n}]") for n in cited]  # type: ignore[attr-defined]


class FollowUpForm(forms.Form):
    text = forms.CharField(
        label="Follow-up question",
        max_length=settings.MAX_QUESTION_CHARS,
        strip=True,
        error_messages={"required": "Please type a follow-up question."},
    )

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        if sum(c.isalnum() for c in text) < 3:
            raise forms.ValidationError("Please type a follow-up question in words.")
        return text
