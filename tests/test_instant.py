"""An answer from the documents at once: the passage sentences closest to the question, quoted,
cited and checked, shown while the model writes (and kept if the model fails)."""

from __future__ import annotations

from django.urls import reverse

from regqa.qa import llm
from regqa.qa.models import Answer

from .test_ask_flow import ask, rulebook, sse_events  # noqa: F401  # rulebook is a fixture

QUESTION = "What does company mean in the definitions?"


def instant(client, answer: Answer) -> str:
    """What the page's request for the instant quote returns (made once the passages are shown)."""
    response = client.get(reverse("answer_instant", args=[answer.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.content.decode()


def test_the_quote_follows_the_passages_before_the_model_runs(client_for, rulebook, fake_llm):  # noqa: F811
    client = client_for("analyst")
    page = ask(client, QUESTION).content.decode()
    answer = Answer.objects.get()
    # the ask returns the passages with no quote yet: asking stays a fast retrieval
    assert answer.instant == {} and reverse("answer_instant", args=[answer.pk]) in page
    quote = instant(client, answer)
    answer.refresh_from_db()
    assert answer.status == Answer.Status.PENDING and not fake_llm.calls  # the model has not run yet
    sentences = answer.instant["verification"]["sentences"]
    assert 1 <= len(sentences) <= 3 and all(s["supported"] and s["citations"] for s in sentences)
    assert answer.instant["text"] == " ".join(s["text"] for s in sentences)
    quoted = {p["n"]: p for p in answer.passages}[sentences[0]["citations"][0]]
    assert sentences[0]["text"].split(" [")[0].rstrip(".") in quoted["text"]  # verbatim from that passage
    assert 0 < answer.instant["ms"] < 5000
    assert f'id="instant-{answer.pk}"' in quote and "From the documents, at once" in quote
    link = reverse("document_page", args=[rulebook.pk, quoted["page_start"]]) + f"?chunk={quoted['chunk_id']}"
    assert link in quote.replace("&amp;", "&")  # its citation opens the page
    assert instant(client, answer) == quote  # built once, then served as stored
    # the answer page, opened again, shows it with the passages
    assert f'id="instant-{answer.pk}"' in client.get(reverse("answer_detail", args=[answer.pk])).content.decode()


def test_the_quote_is_only_for_the_asker_or_an_auditor(client_for, users, rulebook, fake_llm):  # noqa: F811
    from .factories import UserFactory

    ask(client_for("analyst"), QUESTION)
    answer = Answer.objects.get()
    other = UserFactory(username="other-analyst", role="Analysts")
    client = client_for("auditor")
    assert "From the documents, at once" in instant(client, answer)
    client.force_login(other)
    assert client.get(reverse("answer_instant", args=[answer.pk])).status_code == 403


def test_the_verified_answer_replaces_the_quote(client_for, rulebook, fake_llm):  # noqa: F811
    client = client_for("analyst")
    ask(client, QUESTION)
    answer = Answer.objects.get()
    instant(client, answer)
    events = sse_events(client.get(reverse("answer_stream", args=[answer.pk])))
    assert events[-1][0] == "done" and "From the documents, at once" not in events[-1][1]
    answer.refresh_from_db()
    assert answer.status == Answer.Status.ANSWERED


def test_a_quote_built_while_the_model_writes_is_kept(client_for, rulebook, fake_llm, monkeypatch):  # noqa: F811
    """The page asks for the quote while the stream runs; the stream's own save must not undo it."""
    from regqa.qa import answer as answering

    client = client_for("analyst")
    ask(client, QUESTION)
    answer = Answer.objects.get()
    writing = fake_llm.stream_json

    def quote_midway(messages):
        answering.quote_for(answer.pk)  # the page's request, while the model writes
        yield from writing(messages)

    monkeypatch.setattr(fake_llm, "stream_json", quote_midway)
    sse_events(client.get(reverse("answer_stream", args=[answer.pk])))
    answer.refresh_from_db()
    assert answer.status == Answer.Status.ANSWERED and answer.instant["text"]


def test_the_quote_stays_when_the_model_fails(client_for, rulebook, fake_llm, monkeypatch):  # noqa: F811
    def down(messages):
        raise llm.ModelUnavailable("The model server at http://127.0.0.1:9 cannot be reached.")
        yield  # a generator, as the model's stream is

    monkeypatch.setattr(fake_llm, "stream_json", down)
    client = client_for("analyst")
    ask(client, QUESTION)
    answer = Answer.objects.get()
    # the model failed before the page asked for the quote: the failure asks for it
    done = sse_events(client.get(reverse("answer_stream", args=[answer.pk])))[-1][1]
    answer.refresh_from_db()
    assert answer.status == Answer.Status.FAILED and "cannot be reached" in done
    assert reverse("answer_instant", args=[answer.pk]) in done
    quote = instant(client, answer)
    answer.refresh_from_db()
    assert "From the documents, at once" in quote
    assert answer.instant["verification"]["sentences"][0]["text"].split(" [")[0] in quote
    page = client.get(reverse("answer_detail", args=[answer.pk])).content.decode()
    assert "cannot be reached" in page and "From the documents, at once" in page  # and it stays


def test_no_quote_when_no_sentence_is_supported(client_for, rulebook, fake_llm, monkeypatch):  # noqa: F811
    from regqa.qa import answer as answering

    monkeypatch.setattr(answering, "quote_passages", lambda q, d, p, limit: "The moon is made of cheese [1].")
    client = client_for("analyst")
    ask(client, QUESTION)
    answer = Answer.objects.get()
    assert instant(client, answer) == ""
    answer.refresh_from_db()
    assert answer.instant["text"] == ""  # tried once: the page does not ask again
    assert (
        reverse("answer_instant", args=[answer.pk])
        not in client.get(reverse("answer_detail", args=[answer.pk])).content.decode()
    )


def test_no_quote_for_a_question_the_documents_do_not_cover(client_for, rulebook, fake_llm):  # noqa: F811
    page = ask(client_for("analyst"), "What is the best recipe for sourdough bread?").content.decode()
    answer = Answer.objects.get()
    assert answer.status == Answer.Status.NOT_COVERED and answer.instant == {}
    assert "From the documents, at once" not in page


def test_only_supported_sentences_are_quoted(rulebook, fake_llm, monkeypatch):  # noqa: F811
    from regqa.qa import answer as answering

    monkeypatch.setattr(answering, "quote_passages", lambda q, d, p, limit: "The moon is made of cheese [1].")
    passages = [{"n": 1, "text": "Company means any corporation or partnership.", "chunk_id": 1}]
    assert answering.instant_quote("What is a company?", passages) == {}
