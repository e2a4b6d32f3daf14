from django import forms
from django.conf import settings


class AskForm(forms.Form):
    question = forms.CharField(
        max_length=settings.MAX_QUESTION_CHARS,
        strip=True,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "e.g. What counts as an extension of credit under Regulation O?"}
        ),
        error_messages={"required": "Please type a question."},
    )

    def clean_question(self) -> str:
        question = self.cleaned_data["question"]
        if sum(c.isalnum() for c in question) < 3:
            raise forms.ValidationError("Please type a question in words.")
        return question
