"""Single sign-on with OpenID Connect: mozilla-django-oidc's authorization-code flow (with PKCE
and a nonce), the provider's endpoints read from its discovery document, and RegQA's rules:

- the ID token must come from the configured issuer, for this client (mozilla-django-oidc checks
  the signature against the provider's keys and the nonce; iss and aud are checked here);
- users are matched by the provider's subject (models.SsoIdentity), never by name;
- the provider's groups (REGQA_OIDC_GROUPS_CLAIM) map to RegQA's roles (REGQA_OIDC_ROLE_MAP),
  set at every login; a user whose groups map to no role is refused with a "no access" page
  (and loses the roles they had, so their API tokens stop working too);
- every login, refusal and role change is audited, the role changes with the actor
  "single sign-on (ISSUER)".
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from regqa import roles
from regqa.audit import log as audit_log
from regqa.audit.middleware import acting
from regqa.audit.models import EventKind

from .models import SsoIdentity

log = logging.getLogger("regqa.sso")

# mozilla-django-oidc's settings that the provider's discovery document supplies
DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
ROLES = (roles.ANALYSTS, roles.ADMINS, roles.AUDITORS)


class ProviderUnreachable(Exception):
    pass


class Refused(Exception):
    """A login the provider confirmed but RegQA refuses (no role, a disabled account)."""

    def __init__(self, reason: str, username: str = "", groups: list[str] | None = None, no_access: bool = False):
        super().__init__(reason)
        self.reason, self.username, self.groups, self.no_access = reason, username, groups or [], no_access


@functools.cache
def discovery(issuer: str) -> dict[str, Any]:
    """The provider's discovery document (cached once read; a failure is not cached)."""
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnreachable(f"The identity provider at {issuer} cannot be reached ({exc}).") from exc
    if document.get("issuer") != issuer:
        raise ProviderUnreachable(f"{url} names the issuer {document.get('issuer')!r}, not {issuer!r}.")
    return document


def setting(attr: str, *default):
    if attr in DISCOVERED and not hasattr(settings, attr):
        return discovery(settings.OIDC_ISSUER)[DISCOVERED[attr]]
    return import_from_settings(attr, *default)


def roles_for(groups: list[str]) -> list[str]:
    """RegQA's roles for the provider's groups (REGQA_OIDC_ROLE_MAP)."""
    mapped = {role for group in groups for role in settings.OIDC_ROLE_MAP.get(group, [])}
    return sorted(mapped)


def _groups(claims: dict[str, Any]) -> list[str]:
    value = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    return [str(g) for g in ([value] if isinstance(value, str) else value)]


def _username(claims: dict[str, Any]) -> str:
    """The user name a new user gets: the configured claim, else the e-mail, else the subject;
    made unique (a local account's name is never reused)."""
    User = get_user_model()
    base = str(claims.get(settings.OIDC_USERNAME_CLAIM) or claims.get("email") or claims["sub"])[:140]
    name, n = base, 1
    while User.objects.filter(username=name).exists():
        n += 1
        name = f"{base}.sso{n if n > 2 else ''}"
    return name


def set_roles(user, wanted: list[str]) -> None:
    """Give the user exactly these of RegQA's roles (other groups are left alone); audited."""
    current = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    if remove := current - set(wanted):
        user.groups.remove(*Group.objects.filter(name__in=remove))
    if add := set(wanted) - current:
        user.groups.add(*Group.objects.filter(name__in=add))


class Backend(OIDCAuthenticationBackend):
    """The authentication backend of the OIDC callback (first in line for it; returns None for
    password logins, which carry no authorization code)."""

    get_settings = staticmethod(setting)

    def __init__(self, *args, **kwargs) -> None:
        # Django makes a backend for every request of a logged-in user (get_user): the provider's
        # endpoints are read when someone logs in, not then.
        self.UserModel = get_user_model()

    def authenticate(self, request, **kwargs):
        if not settings.OIDC_ISSUER or request is None or "code" not in request.GET:
            return None
        try:
            self.OIDC_OP_TOKEN_ENDPOINT = setting("OIDC_OP_TOKEN_ENDPOINT")
            self.OIDC_OP_USER_ENDPOINT = setting("OIDC_OP_USER_ENDPOINT")
            self.OIDC_OP_JWKS_ENDPOINT = setting("OIDC_OP_JWKS_ENDPOINT")
            self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
            self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
            self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
            self.OIDC_RP_IDP_SIGN_KEY = None
            return super().authenticate(request, **kwargs)
        except Refused as exc:
            _refused(request, exc.reason, exc.username, exc.groups, exc.no_access)
        except ProviderUnreachable as exc:
            _refused(request, str(exc))
        except (SuspiciousOperation, requests.RequestException) as exc:
            log.warning("single sign-on refused: %s", exc)
            _refused(request, f"The identity provider's answer could not be verified ({exc}).")
        return None

    def verify_token(self, token, **kwargs):
        """mozilla-django-oidc checks the signature (the provider's keys) and the nonce; this also
        checks who issued the token and for whom."""
        payload = super().verify_token(token, **kwargs)
        if payload.get("iss") != settings.OIDC_ISSUER:
            raise SuspiciousOperation(f"the ID token was issued by {payload.get('iss')!r}")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation(f"the ID token is for {audience!r}, not this client")
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims with the userinfo endpoint's (some providers put groups in one,
        some in the other); both must name the same subject."""
        info = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("the userinfo endpoint names another subject than the ID token")
        return {**payload, **info}

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        groups = _groups(claims)
        wanted = roles_for(groups)
        identity = (
            SsoIdentity.objects.select_related("user")
            .filter(issuer=settings.OIDC_ISSUER, subject=str(claims["sub"]))
            .first()
        )
        claimed = str(claims.get(settings.OIDC_USERNAME_CLAIM) or claims.get("email") or claims["sub"])
        with acting(f"single sign-on ({settings.OIDC_ISSUER})"):
            if identity is None:
                if not wanted:
                    raise Refused(_no_role(groups), claimed, groups, no_access=True)
                user = self.UserModel(username=_username(claims), email=str(claims.get("email", ""))[:254])
                user.set_unusable_password()  # signs in through the provider only
                user.save()
                identity = SsoIdentity.objects.create(
                    user=user, issuer=settings.OIDC_ISSUER, subject=str(claims["sub"])
                )
            user = identity.user
            if not user.is_active:
                raise Refused("This RegQA account is disabled.", user.get_username(), groups)
            set_roles(user, wanted)
            identity.last_login_at, identity.groups = timezone.now(), groups
            identity.save(update_fields=["last_login_at", "groups"])
        if not wanted:
            raise Refused(_no_role(groups), user.get_username(), groups, no_access=True)
        return user


def _no_role(groups: list[str]) -> str:
    return (
        "Your account at the identity provider is in none of the groups that give access to RegQA"
        f" (it is in: {', '.join(groups) or 'no groups'})."
    )


def _refused(request: HttpRequest, reason: str, username: str = "", groups=None, no_access: bool = False) -> None:
    """Audit a refused single sign-on and keep the reason for the page the browser is sent to."""
    audit_log.record(
        EventKind.LOGIN_FAILED,
        f"Single sign-on refused for {username or 'an unknown user'}: {reason}"[:300],
        actor=username or "unknown",
        data={"method": "sso", "reason": reason, "groups": groups or [], "ip": request.META.get("REMOTE_ADDR", "")},
    )
    request.session["sso_refused"] = {"reason": reason, "no_access": no_access}


class LoginStart(OIDCAuthenticationRequestView):
    """Redirects the browser to the provider (with state, nonce and a PKCE challenge)."""

    get_settings = staticmethod(setting)

    def __init__(self, *args, **kwargs) -> None:
        View.__init__(self, *args, **kwargs)  # the endpoints are read in get(), when they are needed

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except ProviderUnreachable as exc:
            log.error("%s", exc)
            return render(request, "accounts/sso_refused.html", {"reason": str(exc)}, status=503)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class Callback(OIDCAuthenticationCallbackView):
    @property
    def failure_url(self) -> str:
        return reverse("sso_refused")


def refused(request: HttpRequest) -> HttpResponse:
    """Where a refused single sign-on lands: why, and for a user with no role, what to ask for."""
    why = request.session.pop("sso_refused", None) or {"reason": "Single sign-on did not complete."}
    return render(request, "accounts/sso_refused.html", why, status=403)
