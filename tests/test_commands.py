import io
import json

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from regqa.documents.models import Document

from .conftest import make_pdf


@pytest.mark.django_db
def test_ingest_pdfs_uses_titles_and_is_idempotent(tmp_path, fake_embedder):
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(make_pdf(["§ 1.1 Scope.\nRule one applies to member banks."]))
    (folder / "b.pdf").write_bytes(make_pdf(["§ 2.1 Scope.\nRule two applies to branches."]))
    (folder / "notes.pdf").write_bytes(b"not really a pdf")
    (folder / "titles.json").write_text(json.dumps({"a.pdf": "Rulebook A"}))
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_pdfs", str(folder), "--now", stdout=out, stderr=err)
    assert sorted(Document.objects.values_list("title", "status")) == [("Rulebook A", "ready"), ("b", "ready")]
    assert "notes.pdf: This is not a PDF" in err.getvalue()
    out = io.StringIO()
    call_command("ingest_pdfs", str(folder), "--now", stdout=out, stderr=io.StringIO())
    assert Document.objects.count() == 2
    assert "a.pdf: already in the library" in out.getvalue()


@pytest.mark.django_db
def test_ingest_pdfs_takes_metadata_from_titles_json_and_refuses_bad_values(tmp_path, fake_embedder):
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(make_pdf(["§ 1.1 Scope.\nRule one applies to member banks."]))
    entry = {"title": "Rulebook A", "issuer": "FRB", "jurisdiction": "United States", "doc_type": "Regulation",
             "effective_date": "2022-01-01", "sensitivity": "public", "tags": "12 CFR"}  # fmt: skip
    (folder / "titles.json").write_text(json.dumps({"a.pdf": entry}))
    call_command("ingest_pdfs", str(folder), "--now", stdout=io.StringIO())
    document = Document.objects.get()
    assert (document.title, document.issuer, document.jurisdiction, document.doc_type) == (
        "Rulebook A", "FRB", "United States", "Regulation"
    )  # fmt: skip
    assert str(document.effective_date) == "2022-01-01" and document.sensitivity == "public"

    (folder / "b.pdf").write_bytes(make_pdf(["§ 2.1 Scope.\nRule two applies to branches."]))
    (folder / "titles.json").write_text(json.dumps({"b.pdf": {"title": "B", "effective_date": "1st of May"}}))
    with pytest.raises(CommandError, match="b.pdf: .*YYYY-MM-DD"):
        call_command("ingest_pdfs", str(folder / "b.pdf"), "--now", stdout=io.StringIO())
    (folder / "titles.json").write_text(json.dumps({"b.pdf": {"titel": "B"}}))
    with pytest.raises(CommandError, match="unknown fields"):
        call_command("ingest_pdfs", str(folder / "b.pdf"), "--now", stdout=io.StringIO())
    assert Document.objects.count() == 1


def test_the_demo_library_carries_its_metadata():
    from .conftest import PDFS

    entries = json.loads((PDFS / "titles.json").read_text())
    assert set(entries) == {p.name for p in PDFS.glob("*.pdf")}
    assert all(e["issuer"] and e["jurisdiction"] and e["doc_type"] and e["effective_date"] for e in entries.values())


@pytest.mark.django_db
def test_bootstrap_creates_roles_and_demo_users_with_a_stable_password(settings):
    out = io.StringIO()
    call_command("bootstrap", "--demo-users", stdout=out)
    password = (settings.DATA_DIR / "demo-password.txt").read_text().strip()
    call_command("bootstrap", "--demo-users", stdout=io.StringIO())  # second run changes nothing
    assert f"password: {password}" in out.getvalue()
    users = get_user_model().objects.order_by("username")
    assert [(u.username, [g.name for g in u.groups.all()]) for u in users] == [
        ("admin", ["Admins"]),
        ("analyst", ["Analysts"]),
        ("auditor", ["Auditors"]),
    ]
    request = RequestFactory().post("/accounts/login/")  # the login throttle needs the request
    assert authenticate(request, username="analyst", password=password) is not None
    analyst = users.get(username="analyst")
    assert analyst.has_perm("qa.ask_question") and not analyst.has_perm("documents.manage_documents")
    from regqa.qa.models import EscalationPolicy

    policy = EscalationPolicy.objects.get()  # one demo policy, not one per run
    assert policy.mode == "on_request" and policy.allowed_groups == ["Analysts", "Admins"]
    assert users.get(username="admin").has_perm("qa.manage_policy") and not analyst.has_perm("qa.manage_policy")
