"""The answer evaluation: metrics by hand, and `evaluate answers` end to end with a fake model."""

import io
import json

import pytest
from django.core.management import call_command

from regqa.qa.evaluate import rouge_l, token_f1
from regqa.qa.quality import CRITERIA

from .conftest import FIXTURES
from .fakes import reply

PASSAGES = FIXTURES / "eval" / "passages.jsonl"


def test_token_f1_ignores_case_articles_punctuation_and_citations():
    # prediction: bank must appoint officer (4); reference: bank must appoint reporting officer (5)
    assert token_f1("The bank must appoint an officer [1].", "A bank must appoint a reporting officer") == (
        pytest.approx(2 * 1.0 * 0.8 / 1.8)
    )
    assert token_f1("", "anything") == 0.0
    assert token_f1("bank bank", "bank") == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # repeats count once each


def test_rouge_l_uses_the_longest_common_subsequence():
    # LCS of "officer must appoint bank" and "bank must appoint officer" is "must appoint": 2 of 4
    assert rouge_l("officer must appoint bank", "bank must appoint officer") == pytest.approx(0.5)
    assert rouge_l("bank must appoint officer", "the bank must appoint an officer") == pytest.approx(1.0)
    assert rouge_l("nothing shared", "bank") == 0.0


@pytest.mark.django_db
def test_evaluate_answers_end_to_end(fake_embedder, fake_llm, tmp_path):
    call_command("import_passages", str(PASSAGES), "--document-name", "Rulebook", verbosity=0)
    questions = tmp_path / "questions.jsonl"
    reference = "A Relevant Person must appoint a Money Laundering Reporting Officer resident in the country."
    questions.write_text(
        json.dumps(
            {
                "qid": "q1",
                "question": "Who must appoint a Money Laundering Reporting Officer?",
                "answer": reference,
                "gold": [{"passage_id": "p-mlro"}],
            }
        )
        + "\n"
    )
    probe = tmp_path / "probe.jsonl"
    probe.write_text(json.dumps({"qid": "u1", "question": "Best sourdough bread recipe"}) + "\n")
    fake_llm.reply = reply("A Relevant Person must appoint a Money Laundering Reporting Officer [1].", [1])
    out, report = io.StringIO(), tmp_path / "answers.json"
    args = ["--questions", str(questions), "--unanswerable", str(probe), "--json", str(report)]
    call_command("evaluate", "answers", *args, stdout=out, verbosity=0)

    result = json.loads(report.read_text())
    assert result["model"] == "fake-model.gguf"
    assert result["questions"] == 1 and result["answered"] == 1 and result["unanswerable"] == 1
    assert result["citation_hit_rate"] == 1.0 and result["sentences_supported"] == 1.0
    assert result["correct_refusal_rate"] == 1.0 and result["false_refusal_rate"] == 0.0
    first = result["per_question"][0]
    assert first["f1"] == pytest.approx(token_f1(first["answer"], reference))
    assert result["token_f1"] == pytest.approx(first["f1"]) and 0 < result["rouge_l"] <= 1
    assert set(result["judge"]) == set(CRITERIA) and all(1 <= v <= 5 for v in result["judge"].values())
    assert result["total_ms_median"] > 0
    text = out.getvalue()
    assert "citations hit a gold passage/page: 100.0% of answered" in text
    assert "unanswerable probe: 1 questions, correctly declined 100.0%" in text
    assert len(fake_llm.calls) == 1  # the probe question was declined before the model


@pytest.mark.django_db
def test_a_model_name_that_is_not_cached_is_a_clear_error(tmp_path, settings):
    from django.core.management.base import CommandError

    settings.CACHE_DIR = tmp_path
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"qid": "1", "question": "x?"}\n')
    with pytest.raises(CommandError, match="not in the cache"):
        call_command("evaluate", "answers", "--questions", str(questions), "--model", "qwen2.5-coder-0.5b")
    with pytest.raises(CommandError, match="neither a GGUF file"):
        call_command("evaluate", "answers", "--questions", str(questions), "--model", "gpt-9")


@pytest.mark.django_db
def test_evaluate_routing_runs_three_ways_in_one_run(fake_embedder, fake_llm, tmp_path, settings):
    from .large_server import start_recorder

    call_command("import_passages", str(PASSAGES), "--document-name", "Rulebook", verbosity=0)
    reference = "A Relevant Person must appoint a Money Laundering Reporting Officer resident in the country."
    questions = tmp_path / "questions.jsonl"
    rows = [
        # a comparison: the router escalates it; the other stays local
        {"qid": "q1", "question": "Compare who must appoint a Money Laundering Reporting Officer and why."},
        {"qid": "q2", "question": "Who must appoint a Money Laundering Reporting Officer?"},
    ]
    questions.write_text(
        "".join(json.dumps(r | {"answer": reference, "gold": [{"passage_id": "p-mlro"}]}) + "\n" for r in rows)
    )
    fake_llm.reply = reply("A Relevant Person must appoint an officer [1].", [1])
    large = start_recorder("reply", reply="A Relevant Person must appoint a Money Laundering Reporting Officer [1].")
    settings.LARGE_LLM_BASE_URL = large.url
    out, report = io.StringIO(), tmp_path / "routing.json"
    try:
        call_command(
            "evaluate", "routing", "--questions", str(questions), "--json", str(report), stdout=out, verbosity=0
        )
    finally:
        large.stop()

    result = json.loads(report.read_text())
    assert len(large.requests) == 2  # always-large asks the large model every question
    assert "Money Laundering Reporting Officer" in large.sent_text()
    assert result["routed"]["escalated_share"] == 0.5
    routed = result["routed"]["per_question"]
    assert [r["escalated"] for r in routed] == [True, False]
    assert "compares" in routed[0]["reasons"][0]
    assert routed[0]["answer"] == result["large"]["per_question"][0]["answer"]
    assert routed[1]["answer"] == result["local"]["per_question"][1]["answer"]
    assert result["large"]["token_f1"] > result["local"]["token_f1"]
    assert result["local"]["token_f1"] < result["routed"]["token_f1"] < result["large"]["token_f1"]
    assert "escalated 50.0% of answerable questions" in out.getvalue()


@pytest.mark.django_db
def test_evaluate_routing_without_a_large_model_is_a_clear_error(fake_llm, tmp_path, settings):
    from django.core.management.base import CommandError

    settings.LARGE_LLM_BASE_URL = ""
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"qid": "1", "question": "x?"}\n')
    with pytest.raises(CommandError, match="no large model"):
        call_command("evaluate", "routing", "--questions", str(questions), verbosity=0)
