"""The login page: single sign-on's button, and the password form unless REGQA_LOCAL_LOGIN=off."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest
from django.http.response import HttpResponseBase


@login_not_required
def login(request: HttpRequest) -> HttpResponseBase:
    context = {"sso": settings.OIDC_ISSUER and settings.OIDC_PROVIDER_NAME, "local": settings.LOCAL_LOGIN}
    if request.method == "POST" and not settings.LOCAL_LOGIN:  # no password backend: it cannot succeed
        context["local_off"] = "Passwords are switched off here: log in with single sign-on."
    return auth_views.LoginView.as_view(extra_context=context)(request)
