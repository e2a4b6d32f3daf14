"""The anchored audit chain: seals under a key the database never holds, checkpoints outside the
database, key rotation, and the four attacks of someone with write access to the database file."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse

from regqa.audit import anchor, log
from regqa.audit.models import AuditEvent

from . import processes


@pytest.mark.django_db
def test_every_entry_is_sealed_and_checkpointed_outside_the_database(settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # checkpoints are written once the entry is committed
        first = log.record("log.exported", "first")
        second = log.record("log.exported", "second")
    ring = anchor.keyring()
    assert first.key_id == ring.current and len(first.mac) == 64 and first.mac != second.mac
    assert ring.sealed_from == 1  # the key file was created before the first entry
    assert settings.AUDIT_KEY_FILE.stat().st_mode & 0o077 == 0  # readable by its owner only
    secret = json.loads(settings.AUDIT_KEY_FILE.read_text())["keys"][0]["secret"]
    assert all(
        secret not in json.dumps(row, default=str) for row in AuditEvent.objects.values()
    )  # never in the database
    points = [json.loads(line) for line in settings.AUDIT_CHECKPOINT_FILE.read_text().splitlines()]
    assert [p["seq"] for p in points] == [1, 2] and points[1]["hash"] == second.hash
    result = log.verify()
    assert result.ok and result.checked == 2 and result.checkpoints == 2


@pytest.mark.django_db
def test_rotating_the_key_keeps_older_entries_verifiable():
    old = log.record("log.exported", "before rotation")
    new_key = anchor.rotate()
    new = log.record("log.exported", "after rotation")
    assert old.key_id == "k1" and new.key_id == new_key == "k2"
    assert log.verify().ok


@pytest.mark.django_db
def test_a_forged_checkpoint_or_a_lost_key_is_reported(settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        log.record("log.exported", "one")
    with settings.AUDIT_CHECKPOINT_FILE.open("a") as out:  # the attacker cannot seal a checkpoint
        out.write(json.dumps({"seq": 1, "hash": "0" * 64, "at": "now", "key_id": "k1", "mac": "f" * 64}) + "\n")
    result = log.verify()
    assert not result.ok and "checkpoint line 2 is not genuine" in result.reason
    settings.AUDIT_CHECKPOINT_FILE.unlink()
    data = json.loads(settings.AUDIT_KEY_FILE.read_text())
    data["keys"][0]["id"], data["current"] = "k9", "k9"  # the key that sealed entry 1 is gone
    settings.AUDIT_KEY_FILE.write_text(json.dumps(data))
    result = log.verify()
    assert not result.ok and "sealed with key k1, which the key file does not hold" in result.reason


@pytest.mark.django_db
def test_entries_written_before_sealing_are_checked_by_their_hashes_only(settings):
    log.record("log.exported", "before anchoring")
    with connection.cursor() as cur:  # as the code before sealing wrote it (no triggers in tests)
        cur.execute("UPDATE audit_auditevent SET key_id = NULL, mac = NULL WHERE seq = 1")
    settings.AUDIT_KEY_FILE.unlink()
    later = log.record("log.exported", "after anchoring")
    assert anchor.keyring().sealed_from == 2 and later.seq == 2
    assert log.verify().ok
    with connection.cursor() as cur:  # an entry from the sealed era stripped of its seal
        cur.execute("UPDATE audit_auditevent SET key_id = NULL, mac = NULL WHERE seq = 2")
    result = log.verify()
    assert not result.ok and "entry #2 carries no seal" in result.reason


@pytest.mark.django_db
def test_the_export_manifest_carries_a_checkpoint_and_entries_their_seals(client_for):
    client = client_for("auditor")
    response = client.get(reverse("audit_export", args=["jsonl"]))
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    manifest, entries = lines[0]["manifest"], lines[1:]
    assert manifest["checkpoint"]["seq"] == entries[-1]["seq"] and manifest["checkpoint"]["mac"]
    assert all(e["mac"] and e["key_id"] for e in entries)
    assert log.verify().ok


# ---------------------------------------------------------------------------------------------
# The four attacks, on a real database file, checked by `manage.py audit verify` as an auditor would


def manage(data_dir: Path, *args: str, code: str = "") -> subprocess.CompletedProcess:
    return processes.manage(data_dir, *args, code=code, REGQA_SECRET_KEY="test-anchor")


REWRITE = """
from django.db import connection
from regqa.audit import log
from regqa.audit.models import AuditEvent
with connection.cursor() as cur:
    cur.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
previous = log.GENESIS
for event in AuditEvent.objects.order_by("seq"):
    if event.seq == 3:
        event.summary = "nothing happened here"
    event.prev_hash = previous
    event.hash = log.compute_hash(event)  # the algorithm is public
    with connection.cursor() as cur:
        cur.execute("UPDATE audit_auditevent SET summary=%s, prev_hash=%s, hash=%s WHERE seq=%s",
                    [event.summary, event.prev_hash, event.hash, event.seq])
    previous = event.hash
"""


def attack(db: Path, *sql: str) -> None:
    with sqlite3.connect(db) as con:  # the database administrator: triggers are no obstacle
        con.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        con.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")
        for statement in sql:
            con.execute(statement)


@pytest.mark.slow
def test_audit_verify_flags_every_attack_on_a_real_database_file(tmp_path):
    base = tmp_path / "base"
    assert manage(base, "migrate", "--noinput").returncode == 0
    made = manage(
        base, "shell", code="from regqa.audit import log\nfor n in range(10): log.record('log.exported', f'event {n}')"
    )
    assert made.returncode == 0, made.stderr
    ok = manage(base, "audit", "verify")
    assert ok.returncode == 0 and "OK: 10 entries" in ok.stdout and "10 checkpoints" in ok.stdout

    def copy(name: str) -> Path:
        shutil.copytree(base, tmp_path / name)
        return tmp_path / name

    edited = copy("edited")
    attack(edited / "db.sqlite3", "UPDATE audit_auditevent SET summary = 'x' WHERE seq = 4")
    deleted = copy("deleted")
    attack(deleted / "db.sqlite3", "DELETE FROM audit_auditevent WHERE seq = 5")
    truncated = copy("truncated")
    attack(truncated / "db.sqlite3", "DELETE FROM audit_auditevent WHERE seq > 7")
    rewritten = copy("rewritten")
    assert manage(rewritten, "shell", code=REWRITE).returncode == 0

    expected = {
        edited: "entry #4 was changed after it was written",
        deleted: "entry #5 is missing",
        truncated: "entries after #7 are missing: the checkpoint of",
        rewritten: "entry #3 was rewritten: its seal does not match",
    }
    for where, message in expected.items():
        result = manage(where, "audit", "verify")
        assert result.returncode != 0 and message in result.stderr, (where.name, result.stdout, result.stderr)
