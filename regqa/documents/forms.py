"""The upload and metadata forms of the library: input checks only (upload.py accepts the files)."""

from __future__ import annotations

from django import forms
from django.conf import settings

from .models import Document


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented recipe)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "application/pdf,.pdf", "multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            if not data and self.required:
                raise forms.ValidationError(self.error_messages["required"], code="required")
            return [single(d, initial) for d in data]
        return [single(data, initial)]


class MetadataForm(forms.ModelForm):
    class Meta:
        model = Document
        fields = ["title", "issuer", "jurisdiction", "doc_type", "effective_date", "sensitivity", "tags"]
        widgets = {"effective_date": forms.DateInput(attrs={"type": "date"})}


class UploadForm(forms.Form):
    """One or more PDFs with the metadata they share; each title comes from its PDF unless given."""

    files = MultipleFileField(label="PDF files", error_messages={"required": "Choose one or more PDF files to upload."})  # type: ignore[assignment]  # shadows Form.files by design
    title = forms.CharField(max_length=300, required=False, help_text="Only for a single file; default: from the PDF.")
    issuer = forms.CharField(label="Regulator / issuer", max_length=200, required=False)
    jurisdiction = forms.CharField(max_length=100, required=False)
    doc_type = forms.CharField(label="Document type", max_length=100, required=False)
    effective_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sensitivity = forms.ChoiceField(choices=Document.Sensitivity.choices, required=False)
    tags = forms.CharField(max_length=300, required=False, help_text="Comma-separated.")
    supersedes = forms.ModelChoiceField(
        queryset=Document.objects.filter(status=Document.Status.READY),
        required=False,
        label="New version of",
        help_text="The older version leaves the index once this one is ready; answers that cited it keep it.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sensitivity"].initial = settings.DEFAULT_SENSITIVITY

    def clean(self):
        data = super().clean() or {}
        files = data.get("files") or []
        if len(files) > 1 and data.get("title"):
            self.add_error("title", "A title can only be given when uploading one file.")
        if len(files) > 1 and data.get("supersedes"):
            self.add_error("supersedes", "Upload a new version one file at a time.")
        return data
