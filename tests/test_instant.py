"""An answer from the documents at once: the passage sentences closest to the question, quoted,
cited and checked, shown while the model writes (and kept if the model fails)."""

from __future__ import annotations

from django.urls import reverse

from regqa.qa import llm
from regqa.qa.models import Answer

from .test_ask_flow import ask, rulebook, sse_events  # noqa: F401  # rulebook is a fixture

QUESTION = "What does company mean in the definitions?"


def test_the_quote_is_shown_with_the_passages_before_the_model_runs(client_for, rulebook, fake_llm):  # noqa: F811
    page = ask(client_for("analyst"), QUESTION).content.decode()
    answer = Answer.objects.get()
    assert answer.status == Answer.Status.PENDING and not fake_llm.calls  # the model has not run yet
    instant = answer.instant
    sentences = instant["verification"]["sentences"]
    assert 1 <= len(sentences) <= 3 and all(s["supported"] and s["citations"] for s in sentences)
    assert instant["text"] == " ".join(s["text"] for s in sentences)
    quoted = {p["n"]: p for p in answer.passages}[sentences[0]["citations"][0]]
    assert sentences[0]["text"].split(" [")[0].rstrip(".") in quoted["text"]  # verbatim from that passage
    assert 0 < instant["ms"] < 5000
    assert f'id="instant-{answer.pk}"' in page and "From the documents, at once" in page
    link = reverse("document_page", args=[rulebook.pk, quoted["page_start"]]) + f"?chunk={quoted['chunk_id']}"
    assert link in page.replace("&amp;", "&")  # its citation opens the page


def test_the_verified_answer_replaces_the_quote(client_for, rulebook, fake_llm):  # noqa: F811
    client = client_for("analyst")
    ask(client, QUESTION)
    answer = Answer.objects.get()
    events = sse_events(client.get(reverse("answer_stream", args=[answer.pk])))
    assert events[-1][0] == "done" and "From the documents, at once" not in events[-1][1]
    answer.refresh_from_db()
    assert answer.status == Answer.Status.ANSWERED


def test_the_quote_stays_when_the_model_fails(client_for, rulebook, fake_llm, monkeypatch):  # noqa: F811
    def down(messages):
        raise llm.ModelUnavailable("The model server at http://127.0.0.1:9 cannot be reached.")
        yield  # a generator, as the model's stream is

    monkeypatch.setattr(fake_llm, "stream_json", down)
    client = client_for("analyst")
    ask(client, QUESTION)
    answer = Answer.objects.get()
    done = sse_events(client.get(reverse("answer_stream", args=[answer.pk])))[-1][1]
    answer.refresh_from_db()
    assert answer.status == Answer.Status.FAILED
    assert "cannot be reached" in done and "From the documents, at once" in done
    assert answer.instant["verification"]["sentences"][0]["text"].split(" [")[0] in done


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
