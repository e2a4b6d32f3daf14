"""Several workers share the queue: a document is never ingested twice at once, and an ingestion
cut off by a restart resumes by itself when a worker starts (`manage.py worker`)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from regqa.audit.models import AuditEvent, EventKind
from regqa.documents import ingest
from regqa.documents.models import Document

from . import processes
from .conftest import PDFS, make_pdf
from .processes import ROOT, manage_env


def processing(worker: str, heartbeat_ago: float = 0, **fields) -> Document:
    document = Document.objects.create(title="Records rule", sha256=os.urandom(32).hex(), **fields)
    document.file.save("records.pdf", ContentFile(make_pdf(["Records are kept for six years by the bank."])))
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.PROCESSING,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_ago),
        ingest_worker=worker,
        progress=40,
    )
    document.refresh_from_db()
    return document


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.django_db
def test_a_document_another_worker_is_ingesting_is_not_started_again(fake_embedder):
    document = processing("other-host:4242")
    result = ingest.ingest_document(document.pk)
    document.refresh_from_db()
    assert result.status == document.status == Document.Status.PROCESSING
    assert document.ingest_worker == "other-host:4242" and document.progress == 40 and document.chunks.count() == 0


@pytest.mark.django_db
def test_a_worker_resumes_ingestions_whose_worker_is_gone_and_only_those(
    fake_embedder, settings, django_capture_on_commit_callbacks
):
    host = socket.gethostname()
    killed_here = processing(f"{host}:{dead_pid()}")  # this machine, the process is gone
    running_here = processing(f"{host}:{os.getppid()}")  # this machine, still running
    busy_elsewhere = processing("other-host:7", heartbeat_ago=60)  # another machine, recent heartbeat
    silent_elsewhere = processing("other-host:8", heartbeat_ago=settings.INGEST_STALLED_SECONDS + 5)
    with django_capture_on_commit_callbacks(execute=True):
        resumed = ingest.resume_interrupted()
    assert sorted(resumed) == sorted([killed_here.pk, silent_elsewhere.pk])
    for document in (killed_here, silent_elsewhere):
        document.refresh_from_db()
        assert document.status == Document.Status.QUEUED and "interrupted" in document.status_detail
        assert DBTaskResult.objects.filter(args_kwargs__args__0=document.pk).count() == 1
    for document in (running_here, busy_elsewhere):
        document.refresh_from_db()
        assert document.status == Document.Status.PROCESSING
    retried = AuditEvent.objects.filter(kind=EventKind.DOCUMENT_RETRIED)
    assert retried.count() == 2 and {e.actor for e in retried} == {"worker start"}
    assert ingest.resume_interrupted() == []  # a second worker starting finds nothing left to resume
    assert ingest.ingest_document(killed_here.pk).status == Document.Status.READY


def _status(data_dir: Path) -> tuple[str, int]:
    with sqlite3.connect(data_dir / "db.sqlite3", timeout=30) as db:
        return db.execute("SELECT status, chunk_count FROM documents_document").fetchone()


def _wait(data_dir: Path, wanted: str, seconds: float) -> tuple[str, int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = _status(data_dir)
        if state[0] == wanted:
            return state
        time.sleep(0.2)
    return _status(data_dir)


@pytest.mark.slow
def test_a_worker_killed_mid_ingestion_is_resumed_by_the_next_workers_without_a_click(tmp_path):
    """Real processes on a real database file: a worker is killed (SIGKILL) while it ingests; two
    workers then start at once, one resumes the document, it is ingested once and becomes ready."""
    manage = [sys.executable, "manage.py"]
    for step in (["migrate", "-v0"], ["ingest_pdfs", str(PDFS / "12cfr211.pdf")]):
        done = processes.manage(tmp_path, *step)
        assert done.returncode == 0, done.stderr
    worker = [*manage, "worker", "--interval", "0.2", "--no-startup-delay"]
    env = manage_env(tmp_path, REGQA_WINDOW_WORDS="0")  # about resuming, not windows: ingestion takes half the time
    first = subprocess.Popen(worker, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        assert _wait(tmp_path, "processing", 120)[0] == "processing"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    time.sleep(1)
    assert _status(tmp_path)[0] == "processing"  # what a restart used to leave "Interrupted"
    second = [subprocess.Popen(worker, cwd=ROOT, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        status, chunks = _wait(tmp_path, "ready", 300)
    finally:
        for process in second:
            process.kill()  # the test is over: no graceful shutdown waiting for a task
        outputs = [process.communicate(timeout=30)[1].decode() for process in second]
    assert status == "ready" and chunks > 20
    assert sum("Resumed the interrupted ingestion of 1 document" in out for out in outputs) == 1
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        kinds = [row[0] for row in db.execute("SELECT kind FROM audit_auditevent WHERE kind = 'document.retried'")]
    assert kinds == ["document.retried"]
