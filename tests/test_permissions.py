import pytest
from django.urls import reverse

from .factories import AnswerFactory

PAGES = {
    "ask": reverse("ask"),
    "history": reverse("history"),
    "library": reverse("library"),
    "answer_log": reverse("answer_log"),
    "export": reverse("answer_log_csv"),
}
# who may open what (200), everyone else gets 403
ALLOWED = {
    "analyst": {"ask", "history"},
    "admin": {"ask", "history", "library"},
    "auditor": {"answer_log", "export"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("url", [*PAGES.values(), reverse("home"), "/documents/1/pages/1/"])
def test_login_is_required_everywhere(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
@pytest.mark.parametrize("role", ALLOWED)
@pytest.mark.parametrize("page", PAGES)
def test_each_role_sees_only_its_pages(client_for, role, page):
    response = client_for(role).get(PAGES[page])
    assert response.status_code == (200 if page in ALLOWED[role] else 403)


@pytest.mark.django_db
def test_auditors_and_analysts_cannot_upload(client_for):
    for role in ("analyst", "auditor"):
        assert client_for(role).post(reverse("upload"), {}).status_code == 403


@pytest.mark.django_db
def test_analysts_see_only_their_own_answers(client_for, users):
    mine = AnswerFactory(user=users["analyst"], question="My own question?")
    theirs = AnswerFactory(user=users["admin"], question="Somebody else's question?")
    client = client_for("analyst")
    history = client.get(reverse("history")).content.decode()
    assert "My own question?" in history and "Somebody else" not in history
    assert client.get(reverse("answer_detail", args=[mine.pk])).status_code == 200
    assert client.get(reverse("answer_detail", args=[theirs.pk])).status_code == 403
    assert client.get(reverse("answer_stream", args=[theirs.pk])).status_code == 404


@pytest.mark.django_db
def test_auditor_sees_every_answer_and_exports_them(client_for, users):
    AnswerFactory(user=users["analyst"], question="Analyst question?")
    AnswerFactory(user=users["admin"], question="Admin question?")
    client = client_for("auditor")
    log = client.get(reverse("answer_log")).content.decode()
    assert "Analyst question?" in log and "Admin question?" in log
    export = b"".join(client.get(reverse("answer_log_csv")).streaming_content).decode()
    assert export.splitlines()[0].startswith("id,created_at,user,question")
    assert "Analyst question?" in export and "Admin question?" in export


@pytest.mark.django_db
def test_home_sends_each_role_to_its_start_page(client_for):
    assert client_for("analyst").get(reverse("home"))["Location"] == reverse("ask")
    assert client_for("auditor").get(reverse("home"))["Location"] == reverse("answer_log")


@pytest.mark.django_db
def test_auditor_filters_the_answer_log(client_for, users):
    from regqa.documents.models import Document

    rulebook = Document.objects.create(title="Rulebook", sha256="r" * 64)
    first = AnswerFactory(
        user=users["analyst"],
        question="Capital buffers?",
        model_name="big.gguf",
        verification={"status": "verified"},
        quality_min=4,
    )
    first.documents.add(rulebook)
    AnswerFactory(user=users["analyst"], question="Liquidity rules?", status="not_covered", quality_min=1)
    AnswerFactory(
        user=users["admin"], question="Capital for admins?", verification={"status": "partial"}, quality_min=2
    )
    client = client_for("auditor")

    def shown(**params) -> list[str]:
        return [a.question for a in client.get(reverse("answer_log"), params).context["page"]]

    assert sorted(shown(q="capital")) == ["Capital buffers?", "Capital for admins?"]
    assert shown(actor="admin") == ["Capital for admins?"]
    assert shown(model="big.gguf") == ["Capital buffers?"]
    assert shown(status="not_covered") == ["Liquidity rules?"]
    assert shown(since="2999-01-01") == []
    assert shown(document=rulebook.pk) == ["Capital buffers?"]
    assert sorted(shown(quality=2)) == ["Capital for admins?", "Liquidity rules?"]
    assert shown(verification="partial") == ["Capital for admins?"]
    assert client.get(reverse("answer_log"), {"until": "not a date"}).status_code == 400
    # the CSV export takes the same filters as the page
    export = b"".join(client.get(reverse("answer_log_csv"), {"q": "capital"}).streaming_content).decode()
    assert len(export.splitlines()) == 3 and "Liquidity rules?" not in export


@pytest.mark.django_db
def test_auditors_can_open_cited_pages_but_not_manage_documents(client_for):
    from regqa.documents.models import Page

    from .factories import ChunkFactory

    chunk = ChunkFactory(text="Cited passage.")
    Page.objects.create(document=chunk.document, number=1, text="Page one text. Cited passage.")
    auditor = client_for("auditor")
    page = auditor.get(reverse("document_page", args=[chunk.document_id, 1]), {"chunk": chunk.pk})
    assert page.status_code == 200 and "<mark>Cited passage.</mark>" in page.content.decode()
    assert auditor.get(reverse("passage", args=[chunk.pk])).status_code == 200
    assert auditor.get(reverse("library")).status_code == 403
