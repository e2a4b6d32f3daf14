"""Single sign-on against a real OpenID Connect provider (node's oidc-provider, tests/oidc) on
127.0.0.1: login through the provider, role mapping at every login, no mapped group, a tampered
ID token, a provider that is down, local passwords switched off. Every login is audited."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from regqa import roles
from regqa.accounts import sso
from regqa.accounts.models import SsoIdentity
from regqa.api import tokens
from regqa.audit.models import AuditEvent, EventKind

from .factories import PASSWORD, UserFactory

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
ROLE_MAP = {"regqa-analysts": ["Analysts"], "regqa-admins": ["Admins"], "regqa-auditors": ["Auditors"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory):
    """The provider, its config file (accounts and their groups, rewritten by tests) and issuer."""
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("tests/oidc/node_modules is missing: run `bash scripts/oidc-deps.sh` (make test does).")
    config = tmp_path_factory.mktemp("oidc") / "config.json"
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"

    def accounts(**groups: list[str]) -> None:
        config.write_text(
            json.dumps(
                {
                    "client_id": "regqa",
                    "client_secret": "test-client-secret",
                    "redirect_uri": f"{live_server.url}/oidc/callback/",
                    "accounts": {name: {"groups": g} for name, g in groups.items()},
                }
            )
        )

    accounts()
    process = subprocess.Popen(
        ["node", "provider.mjs", str(port), str(config)],
        cwd=OIDC_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{issuer}/.well-known/openid-configuration", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the OpenID Connect provider did not start")
                time.sleep(0.2)
        yield {"issuer": issuer, "accounts": accounts}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def sso_on(provider, settings, transactional_db):
    roles.ensure_roles()
    settings.OIDC_ISSUER = provider["issuer"]
    settings.OIDC_RP_CLIENT_ID = "regqa"
    settings.OIDC_RP_CLIENT_SECRET = "test-client-secret"
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_ROLE_MAP = ROLE_MAP
    settings.OIDC_PROVIDER_NAME = "Bank ID"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "regqa.accounts.sso.Backend"]
    sso.discovery.cache_clear()
    yield provider
    sso.discovery.cache_clear()


def sso_login(base_url: str, login: str) -> tuple[requests.Session, requests.Response]:
    """A browser's way through the provider: RegQA's login button, the provider's login form
    (its development form takes any password), its consent form, back to RegQA."""
    browser = requests.Session()
    page = browser.get(f"{base_url}{reverse('login')}", timeout=10)
    button = re.search(r'id="sso-login" href="([^"]+)"', page.text)
    assert button, "the login page offers single sign-on"
    response = browser.get(urljoin(page.url, button.group(1).replace("&amp;", "&")), timeout=10)
    for prompt, fields in (("login", {"login": login, "password": "any"}), ("consent", {})):
        if f'name="prompt" value="{prompt}"' not in response.text:
            continue
        action = re.search(r'<form[^>]*action="([^"]+)"', response.text).group(1)
        response = browser.post(urljoin(response.url, action), data={"prompt": prompt, **fields}, timeout=10)
    return browser, response


def test_first_login_creates_the_user_with_the_mapped_role_audited(sso_on, live_server):
    sso_on["accounts"](alice=["regqa-analysts", "staff"])
    browser, response = sso_login(live_server.url, "alice")
    assert response.status_code == 200 and response.url.endswith(reverse("ask")), response.url
    assert "alice" in response.text
    user = get_user_model().objects.get(username="alice")
    assert sorted(user.groups.values_list("name", flat=True)) == ["Analysts"]
    assert not user.has_usable_password() and user.email == "alice@bank.example"
    identity = SsoIdentity.objects.get(user=user)
    assert identity.issuer == sso_on["issuer"] and identity.subject == "alice"
    assert identity.groups == ["regqa-analysts", "staff"]
    actor = f"single sign-on ({sso_on['issuer']})"
    assert AuditEvent.objects.get(kind=EventKind.USER_CREATED).actor == actor
    assert AuditEvent.objects.get(kind=EventKind.USER_ROLES_CHANGED).data["now"] == ["Analysts"]
    login = AuditEvent.objects.get(kind=EventKind.LOGIN)
    assert login.actor == "alice" and login.data["method"] == "sso" and login.data["roles"] == ["Analysts"]
    assert browser.get(f"{live_server.url}{reverse('library')}", timeout=10).status_code == 403  # not an admin


def test_roles_follow_the_providers_groups_at_every_login(sso_on, live_server):
    sso_on["accounts"](bob=["regqa-analysts"])
    sso_login(live_server.url, "bob")
    bob = get_user_model().objects.get(username="bob")
    _, token = tokens.issue(bob, "notebook", 1)

    sso_on["accounts"](bob=["regqa-admins", "regqa-auditors"])
    _, response = sso_login(live_server.url, "bob")
    assert response.status_code == 200
    assert sorted(bob.groups.values_list("name", flat=True)) == ["Admins", "Auditors"]
    changes = AuditEvent.objects.filter(kind=EventKind.USER_ROLES_CHANGED).order_by("seq")
    assert [c.data["now"] for c in changes][-1] == ["Admins", "Auditors"]
    assert {c.actor for c in changes} == {f"single sign-on ({sso_on['issuer']})"}

    # taken out of every RegQA group at the provider: refused, and the roles (and what the
    # API token could do) are gone
    sso_on["accounts"](bob=["staff"])
    _, response = sso_login(live_server.url, "bob")
    assert response.status_code == 403 and "No access to RegQA" in response.text
    assert not bob.groups.exists()
    api = requests.get(f"{live_server.url}/api/answers", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert api.status_code == 403


def test_a_user_whose_groups_map_to_no_role_gets_a_no_access_page(sso_on, live_server):
    sso_on["accounts"](carol=["staff", "it-helpdesk"])
    browser, response = sso_login(live_server.url, "carol")
    assert response.status_code == 403 and response.url.endswith(reverse("sso_refused"))
    assert "No access to RegQA" in response.text and "staff, it-helpdesk" in response.text
    assert not get_user_model().objects.filter(username="carol").exists()
    refused = AuditEvent.objects.get(kind=EventKind.LOGIN_FAILED)
    assert (
        refused.actor == "carol" and refused.data["method"] == "sso" and "none of the groups" in refused.data["reason"]
    )
    assert browser.get(f"{live_server.url}{reverse('ask')}", timeout=10).url.startswith(f"{live_server.url}/login/")


def test_a_tampered_id_token_is_refused(sso_on, live_server, monkeypatch):
    """The provider's real token with its claims changed (the signature no longer matches)."""
    sso_on["accounts"](mallory=["staff"])
    genuine = sso.Backend.get_token

    def tampered(self, payload):
        token = genuine(self, payload)
        header, claims, signature = token["id_token"].split(".")
        data = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        data["sub"] = "admin"  # pretend to be someone else
        forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
        return {**token, "id_token": f"{header}.{forged}.{signature}"}

    monkeypatch.setattr(sso.Backend, "get_token", tampered)
    browser, response = sso_login(live_server.url, "mallory")
    assert (
        response.status_code == 403 and "Sign-in failed" in response.text and "could not be verified" in response.text
    )
    assert not get_user_model().objects.filter(username__in=["mallory", "admin"]).exists()
    assert AuditEvent.objects.get(kind=EventKind.LOGIN_FAILED).data["method"] == "sso"
    assert not AuditEvent.objects.filter(kind=EventKind.LOGIN).exists()


def test_an_id_token_for_another_client_is_refused(sso_on, live_server, settings, monkeypatch):
    sso_on["accounts"](dave=["regqa-analysts"])
    monkeypatch.setattr(settings, "OIDC_RP_CLIENT_ID", "regqa")
    original = sso.Backend.verify_token

    def other_audience(self, token, **kwargs):
        settings.OIDC_RP_CLIENT_ID = "another-app"  # as if the token had been issued to another client
        try:
            return original(self, token, **kwargs)
        finally:
            settings.OIDC_RP_CLIENT_ID = "regqa"

    monkeypatch.setattr(sso.Backend, "verify_token", other_audience)
    _, response = sso_login(live_server.url, "dave")
    assert response.status_code == 403 and "not this client" in response.text
    assert not get_user_model().objects.filter(username="dave").exists()


def test_a_local_account_is_never_taken_over_by_a_provider_account_of_the_same_name(sso_on, live_server):
    local = UserFactory(username="erin", role=roles.ADMINS)
    sso_on["accounts"](erin=["regqa-analysts"])
    sso_login(live_server.url, "erin")
    linked = SsoIdentity.objects.get(subject="erin").user
    assert linked.username == "erin.sso" and linked.pk != local.pk
    assert sorted(local.groups.values_list("name", flat=True)) == ["Admins"] and local.check_password(PASSWORD)


def test_a_provider_that_is_down_gets_a_clear_page_and_a_start_up_warning(db, settings, client):
    settings.OIDC_ISSUER = f"http://127.0.0.1:{_free_port()}"
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET, settings.OIDC_ROLE_MAP = "regqa", "x", ROLE_MAP
    sso.discovery.cache_clear()
    response = client.get(reverse("oidc_authentication_init"))
    assert response.status_code == 503 and "cannot be reached" in response.content.decode()
    from regqa.accounts.apps import provider_reachable

    warnings = provider_reachable()
    assert [w.id for w in warnings] == ["regqa.W010"] and "cannot be reached" in warnings[0].msg
    call_command("check")  # a warning, not an error: local logins still work
    sso.discovery.cache_clear()


def test_local_passwords_can_be_switched_off(db, settings, client):
    roles.ensure_roles()
    UserFactory(username="frank", role=roles.ANALYSTS)
    settings.OIDC_ISSUER, settings.OIDC_PROVIDER_NAME = "http://127.0.0.1:9", "Bank ID"
    settings.LOCAL_LOGIN = False
    settings.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "regqa.accounts.sso.Backend"]
    page = client.get(reverse("login")).content.decode()
    assert "Log in with Bank ID" in page and 'name="password"' not in page
    response = client.post(reverse("login"), {"username": "frank", "password": PASSWORD})
    assert "Passwords are switched off" in response.content.decode()
    assert client.get(reverse("ask")).status_code == 302  # still not logged in
