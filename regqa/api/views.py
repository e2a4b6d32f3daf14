"""The user's API tokens page: create one (shown once), see when each was last used, revoke."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import tokens
from .models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “GRC tool”.")
    days = forms.IntegerField(label="Valid for (days)", min_value=1, initial=90)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the longest life is a setting, read when the form is made (tests change it)
        self.fields["days"] = forms.IntegerField(
            label="Valid for (days)", min_value=1, max_value=settings.API_TOKEN_MAX_DAYS, initial=90
        )


@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    """Any signed-in user manages their own tokens; a token can do what its owner's role can."""
    form = TokenForm(request.POST or None)
    shown = ""
    status = 200
    if request.method == "POST":
        if form.is_valid():
            _, shown = tokens.issue(request.user, form.cleaned_data["name"], form.cleaned_data["days"])
            form = TokenForm()
            status = 201
        else:
            status = 422
    rows = ApiToken.objects.filter(user_id=request.user.pk or 0)
    context = {"form": form, "tokens": rows, "shown": shown, "max_days": settings.API_TOKEN_MAX_DAYS}
    return render(request, "api/tokens.html", context, status=status)


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(ApiToken, pk=pk, user_id=request.user.pk or 0)
    tokens.revoke(row, by=request.user)
    return redirect("api_tokens")
