"""The audit trail: every event type recorded, append-only, tamper-evident."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from regqa.audit import log
from regqa.audit.models import AppendOnlyError, AuditEvent

from .conftest import make_pdf
from .test_ask_flow import ask, rulebook, sse_events  # noqa: F401  (rulebook is a fixture)


@pytest.mark.django_db
def test_chain_links_every_entry_and_verifies(users):
    before = AuditEvent.objects.count()  # creating the users was recorded too
    first = log.record("log.exported", "first", user=users["admin"], data={"n": 1, "text": "é"})
    second = log.record("log.exported", "second", actor="system")
    assert AuditEvent.objects.get(seq=1).prev_hash == log.GENESIS
    assert first.seq == before + 1 and second.seq == before + 2 and second.prev_hash == first.hash
    assert first.actor == "admin" and first.role == "Admins"
    result = log.verify()
    assert result.ok and result.checked == before + 2 and result.last_hash == second.hash


@pytest.mark.django_db
def test_edits_and_deletes_are_refused_by_the_app(users):
    event = log.record("log.exported", "original")
    event.summary = "changed"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(summary="changed")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).summary == "original"


@pytest.mark.django_db
def test_database_triggers_refuse_raw_sql_changes():
    from importlib import import_module

    migration = import_module("regqa.audit.migrations.0002_append_only_triggers")
    with connection.cursor() as cur:
        migration.install(cur.execute, connection.vendor)  # rolled back with the test
    event = log.record("log.exported", "original")
    for sql in ("UPDATE audit_auditevent SET summary = 'x'", "DELETE FROM audit_auditevent"):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql)
    assert AuditEvent.objects.get(pk=event.pk).summary == "original"


@pytest.mark.django_db
def test_verify_names_the_tampered_entry_and_a_missing_one():
    for n in range(5):
        log.record("log.exported", f"event {n}", data={"n": n})
    with connection.cursor() as cur:  # an attacker with database access (no triggers here)
        cur.execute("UPDATE audit_auditevent SET summary = 'rewritten' WHERE seq = 3")
    result = log.verify()
    assert not result.ok and result.broken_seq == 3 and "changed" in result.reason
    with pytest.raises(CommandError, match="entry #3 was changed"):
        call_command("audit", "verify", stdout=io.StringIO())

    with connection.cursor() as cur:
        cur.execute("UPDATE audit_auditevent SET summary = 'event 2' WHERE seq = 3")
        cur.execute("DELETE FROM audit_auditevent WHERE seq = 4")
    result = log.verify()
    assert result.broken_seq == 4 and "missing" in result.reason


@pytest.mark.django_db
def test_answers_are_recorded_with_passages_and_prompt(client_for, rulebook, fake_llm):  # noqa: F811
    client = client_for("analyst")
    ask(client, "What does company mean in the definitions?")
    answer_id = client.get(reverse("history")).context["answers"][0].pk
    sse_events(client.get(reverse("answer_stream", args=[answer_id])))
    event = AuditEvent.objects.filter(kind="answer").get()
    assert event.actor == "analyst" and event.role == "Analysts"
    assert event.data["answer_id"] == answer_id and event.data["status"] == "answered"
    assert event.data["passages"][0]["text"].startswith("§ 215.2 Definitions")
    assert event.data["prompt"][1]["content"].startswith("Passages:")
    assert event.data["model"] == "fake-model.gguf"
    # the routing decision, with the policy version that made it (no policy saved: escalation off)
    assert event.data["routing"]["action"] == "local" and event.data["routing"]["policy_version"] == 0
    assert event.data["routing"]["reasons"] == ["escalation is switched off by the policy"]
    assert log.verify().ok


@pytest.mark.django_db
def test_uploads_deletes_exports_and_failed_logins_are_recorded(client, client_for, fake_embedder):
    user_changes = AuditEvent.objects.filter(kind="user.changed").count()  # from creating the users
    admin = client_for("admin")
    admin.post(reverse("upload"), {"files": SimpleUploadedFile("rule.pdf", make_pdf(["§ 1 Scope.\nA rule."]))})
    from regqa.documents.models import Document

    document = Document.objects.get()
    admin.post(reverse("document_delete", args=[document.pk]))
    auditor = client_for("auditor")
    b"".join(auditor.get(reverse("answer_log_csv")).streaming_content)
    client.logout()
    client.post(reverse("login"), {"username": "analyst", "password": "wrong"})
    from .factories import PASSWORD

    client.post(reverse("login"), {"username": "analyst", "password": PASSWORD})
    kinds = list(
        AuditEvent.objects.exclude(kind__startswith="user.").exclude(kind__startswith="role.")
        .order_by("seq").values_list("kind", "actor")
    )  # fmt: skip
    assert kinds == [
        ("login", "admin"),
        ("document.uploaded", "admin"),
        ("document.deleted", "admin"),
        ("login", "auditor"),
        ("log.exported", "auditor"),
        ("login.failed", "analyst"),
        ("login", "analyst"),
    ]
    # the last_login save at each login is not recorded as a user change
    assert AuditEvent.objects.filter(kind="user.changed").count() == user_changes
    assert AuditEvent.objects.get(kind="document.deleted").data["sha256"] == document.sha256
    assert log.verify().ok


@pytest.mark.django_db
def test_only_auditors_see_the_trail_and_it_shows_the_chain_state(client_for):
    log.record("log.exported", "something happened")
    assert client_for("analyst").get(reverse("audit_trail")).status_code == 403
    page = client_for("auditor").get(reverse("audit_trail") + "?verify=1").content.decode()
    assert f"Chain intact: {AuditEvent.objects.count()} entries verified" in page and "something happened" in page


def _events(users):
    log.record(
        "answer",
        "Answered: capital question",
        user=users["analyst"],
        data={"question": "What capital?", "model": "big.gguf"},
    )
    log.record("document.uploaded", "Uploaded: Rulebook", user=users["admin"])
    log.record("answer", "Answered: liquidity question", user=users["analyst"], data={"question": "What liquidity?"})


@pytest.mark.django_db
def test_jsonl_export_has_a_manifest_that_matches_the_chain(client_for, users):
    import json

    from regqa.audit.models import AuditEvent as Event

    _events(users)
    client = client_for("auditor")
    response = client.get(reverse("audit_export", args=["jsonl"]), {"actor": "analyst", "kind": "answer"})
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    head, entries = lines[0]["manifest"], lines[1:]
    assert head["count"] == 2 == len(entries)
    assert head["filter"]["actor"] == "analyst" and head["exported_by"] == "auditor"
    answers = list(Event.objects.filter(kind="answer").order_by("seq"))
    assert [e["seq"] for e in entries] == [a.seq for a in answers]
    assert head["first"] == {"seq": answers[0].seq, "hash": answers[0].hash}
    assert head["last"] == {"seq": answers[1].seq, "hash": answers[1].hash}
    # every exported entry can be re-hashed by anyone, without the database
    for entry in entries:
        event = Event(**{k: v for k, v in entry.items() if k != "hash"})
        event.created_at = Event.objects.get(seq=entry["seq"]).created_at
        assert log.compute_hash(event) == entry["hash"]
    # the export itself is an audited action, outside the exported set
    assert Event.objects.order_by("-seq").first().kind == "log.exported"
    assert log.verify().ok


@pytest.mark.django_db
def test_csv_export_filters_by_text_and_kind(client_for, users):
    import csv

    _events(users)
    client = client_for("auditor")
    response = client.get(reverse("audit_export", args=["csv"]), {"q": "liquidity", "kind": "answer"})
    rows = list(csv.reader(b"".join(response.streaming_content).decode().splitlines()))
    assert rows[0] == [
        "seq",
        "created_at",
        "kind",
        "actor",
        "role",
        "summary",
        "data",
        "prev_hash",
        "hash",
        "key_id",
        "mac",
    ]
    assert len(rows) == 2 and rows[1][5] == "Answered: liquidity question"
    manifest = client.get(reverse("audit_export", args=["csv"]), {"q": "liquidity", "manifest": 1}).json()
    assert manifest["count"] == 1 and manifest["filter"]["text"] == "liquidity"
    by_model = client.get(reverse("audit_export", args=["csv"]), {"model": "big.gguf", "manifest": 1}).json()
    assert by_model["count"] == 1 and by_model["first"]["seq"] == AuditEvent.objects.get(data__model="big.gguf").seq
    assert client.get(reverse("audit_export", args=["xml"])).status_code == 404
    assert client.get(reverse("audit_export", args=["csv"]), {"since": "yesterday"}).status_code == 400
    assert client_for("analyst").get(reverse("audit_export", args=["csv"])).status_code == 403


@pytest.mark.django_db
def test_export_command_writes_entries_and_manifest(users, tmp_path):
    import json

    _events(users)
    out = tmp_path / "trail.jsonl"
    call_command("audit", "export", "--kind", "answer", "--output", str(out), stderr=io.StringIO())
    lines = out.read_text().splitlines()
    manifest = json.loads((tmp_path / "trail.jsonl.manifest.json").read_text())
    assert manifest["count"] == 2 == len(lines) - 1
    assert json.loads(lines[-1])["hash"] == manifest["last"]["hash"]
    with pytest.raises(CommandError, match="not a date"):
        call_command("audit", "export", "--since", "soon")


@pytest.mark.django_db
def test_user_and_role_changes_are_recorded(users):
    from django.contrib.auth.models import Group

    analyst = users["analyst"]
    analyst.groups.add(Group.objects.get(name="Auditors"))
    analyst.is_active = False
    analyst.save()
    changes = AuditEvent.objects.filter(data__user="analyst").order_by("seq")
    kinds = [e.kind for e in changes]
    assert kinds[0] == "user.created" and "user.changed" in kinds
    added = changes.filter(kind="user.roles_changed").last()
    assert added.data == {"user": "analyst", "action": "add", "groups": ["Auditors"], "now": ["Analysts", "Auditors"]}
    assert changes.last().data["active"] is False
    assert log.verify().ok


@pytest.mark.django_db
def test_permission_and_role_changes_in_the_django_admin_are_audited_with_who_made_them(client, users):
    from django.contrib.auth.models import Group, Permission

    boss = users["admin"].__class__.objects.create_superuser("boss", "boss@bank.example", "pw-boss-123")
    client.force_login(boss)
    auditors = Group.objects.get(name="Auditors")
    ask = Permission.objects.get(codename="ask_question")
    form = {"name": "Auditors", "permissions": [*auditors.permissions.values_list("pk", flat=True), ask.pk]}
    assert client.post(reverse("admin:auth_group_change", args=[auditors.pk]), form).status_code == 302
    granted = AuditEvent.objects.filter(kind="role.permissions_changed").order_by("seq").last()
    assert granted.actor == "boss" and granted.data["role"] == "Auditors" and granted.data["action"] == "add"
    assert granted.data["permissions"] == ["qa.ask_question"] and "qa.ask_question" in granted.data["now"]

    analyst = users["analyst"]
    form = {"username": "analyst", "is_active": "on", "groups": [g.pk for g in analyst.groups.all()],
            "user_permissions": [ask.pk], "last_login_0": "", "last_login_1": "",
            "date_joined_0": "2026-12-01", "date_joined_1": "10:00:00"}  # fmt: skip
    client.post(reverse("admin:auth_user_change", args=[analyst.pk]), form)
    single = AuditEvent.objects.filter(kind="user.permissions_changed").order_by("seq").last()
    assert (
        single.actor == "boss"
        and single.data["user"] == "analyst"
        and single.data["permissions"] == ["qa.ask_question"]
    )
    assert AuditEvent.objects.filter(kind="user.changed", data__user="analyst").order_by("seq").last().actor == "boss"

    client.post(reverse("admin:auth_group_add"), {"name": "Reviewers", "permissions": []})
    created = AuditEvent.objects.filter(kind="role.created").order_by("seq").last()
    assert created.actor == "boss" and created.data == {"role": "Reviewers"}
    # outside a request (a command, the shell) the change is the system's
    Group.objects.get(name="Reviewers").permissions.add(ask)
    assert AuditEvent.objects.filter(kind="role.permissions_changed").order_by("seq").last().actor == "system"
    assert log.verify().ok
