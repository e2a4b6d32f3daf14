"""Answer decisions: the three outcomes and what each says, the learned answer/decline decision
(training, calibration, threshold, bad input), the decline before the model runs, and the yes/no form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from regqa.qa import decision_model, prompts
from regqa.qa.decision_model import SIGNALS, DecisionError, DecisionModel
from regqa.qa.models import Answer
from regqa.qa.verify import split_sentences, verify_answer

from .fakes import reply
from .test_ask_flow import ask, rulebook, sse_events  # noqa: F401 - the rulebook fixture

RELEVANT = "What does company mean in the definitions?"


def synthetic(n: int, seed: int) -> tuple[list[dict[str, float]], list[int], list[str]]:
    """Examples from a known logistic model: P(stated) = sigmoid(4 best_dense + 2 term_share_best - 3)."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        values = {name: float(rng.normal()) for name in SIGNALS}
        p = 1 / (1 + math.exp(-(4 * values["best_dense"] + 2 * values["term_share_best"] - 0.5)))
        rows.append(values)
        labels.append(int(rng.random() < p))
    return rows, labels, [f"q{seed}-{i}" for i in range(n)]


def test_the_decision_model_learns_and_its_threshold_keeps_false_refusals_at_the_target():
    rows, labels, groups = synthetic(600, 1)
    model = decision_model.train(rows, labels, groups, false_refusals=0.1)
    f = model.figures
    assert f["roc_auc"] > 0.85 and f["examples"] == 600
    assert f["false_refusals"] <= 0.1 + 1 / f["answerable"] and f["correct_refusals"] > 0.5
    weights = dict(zip(SIGNALS, model.coefficients, strict=True))
    assert weights["best_dense"] > weights["term_share_best"] > abs(weights["comparison"])


def test_probabilities_are_calibrated_on_held_out_examples():
    model = decision_model.train(*synthetic(1500, 2))
    rows, labels, _ = synthetic(3000, 3)  # never seen in training
    predicted = np.array([model.probability(r) for r in rows])
    observed = np.array(labels)
    for low in (0.0, 0.2, 0.4, 0.6, 0.8):
        inside = (predicted >= low) & (predicted < low + 0.2)
        if inside.sum() >= 50:
            assert abs(predicted[inside].mean() - observed[inside].mean()) < 0.08, low
    for b in model.figures["calibration"]:  # the cross-validated bins it reports say the same
        if b["n"] >= 50:
            assert abs(b["predicted"] - b["observed"]) < 0.1


def test_training_data_with_one_class_or_none_is_refused():
    rows, _, groups = synthetic(40, 4)
    with pytest.raises(DecisionError, match="Every training example is answerable"):
        decision_model.train(rows, [1] * 40, groups)
    with pytest.raises(DecisionError, match="no question"):
        decision_model.train([], [], [])


def test_the_model_round_trips_through_its_file_and_explains_a_decision(settings, tmp_path, db):
    model = decision_model.train(*synthetic(300, 5))
    decision_model.save(model)
    loaded = decision_model.active()
    assert loaded is not None and loaded.as_json() == json.loads(json.dumps(model.as_json()))
    strong = {name: 0.0 for name in SIGNALS} | {"best_dense": 2.0}
    assert loaded.probability(strong) > 0.9
    assert loaded.drivers(strong)[0] == "the best passage matches the question closely"
    weak = strong | {"best_dense": -2.0}
    assert loaded.drivers(weak)[0] == "no passage matches the question closely"


def test_a_model_trained_on_fewer_signals_keeps_deciding_on_them(db):
    """A model file from before the sentence signals reads only the signals it lists."""
    older = [n for n in SIGNALS if n not in ("best_sentence", "sentence_match", "same_document")]
    rows, labels, groups = synthetic(300, 6)
    decision_model.save(decision_model.train(rows, labels, groups, names=older))
    loaded = decision_model.active()
    assert loaded is not None and list(loaded.signals) == older and loaded.applies_to(rows[0])
    today = rows[0] | {"best_sentence": 99.0, "sentence_match": -99.0}  # signals it never saw change nothing
    assert loaded.probability(today) == loaded.probability(rows[0])


def install(model_fields: dict) -> DecisionModel:
    """A decision model with a constant probability (all weight on the intercept)."""
    model = DecisionModel(
        coefficients=[0.0] * len(SIGNALS), intercept=0.0, mean=[0.0] * len(SIGNALS), scale=[1.0] * len(SIGNALS),
        threshold=0.4, figures={},
    )  # fmt: skip
    for key, value in model_fields.items():
        setattr(model, key, value)
    decision_model.save(model)
    return model


def finish(client, question: str) -> tuple[Answer, str]:
    page = ask(client, question).content.decode()
    answer = Answer.objects.latest("pk")
    if answer.status == Answer.Status.PENDING:
        page = sse_events(client.get(reverse("answer_stream", args=[answer.pk])))[-1][1]
    answer.refresh_from_db()
    return answer, page


def test_a_sure_decline_is_made_before_the_model_runs(client_for, rulebook, fake_llm):  # noqa: F811
    install({"intercept": -5.0})  # P(stated) = 0.7%: below the threshold
    answer, page = finish(client_for("analyst"), RELEVANT)
    assert answer.status == Answer.Status.NOT_COVERED and fake_llm.calls == [] and fake_llm.asked == []
    assert answer.verification["decision"]["outcome"] == "early"
    assert "Declined before the model ran; 1% that the passages state an answer" in page
    # relevant passages were found: the decline says so, and never that the documents do not cover it
    assert "do not state an answer" in answer.answer_text and "do not cover" not in answer.answer_text
    assert "searched 1 document" in answer.answer_text


def test_the_three_outcomes_and_what_each_says(client_for, rulebook, fake_llm, monkeypatch):  # noqa: F811
    client = client_for("analyst")
    install({"intercept": 2.0})  # P(stated) = 88%: above the threshold
    answer, page = finish(client, RELEVANT)
    assert answer.status == Answer.Status.ANSWERED
    assert answer.verification["decision"]["explanation"].startswith("Answered: every sentence is supported")
    assert "88% that the passages state an answer" in page

    fake_llm.reply = reply("Banks must hold 8 percent capital against 2019 exposures [1].", [1])
    answer, page = finish(client, RELEVANT)
    assert answer.status == Answer.Status.QUOTED and answer.verification["quoted"] is True
    assert answer.answer_text.endswith("[1]") and "Quoted from the passages" in page
    assert answer.verification["decision"]["explanation"].startswith("Quoted, not answered: the draft's first sentence")

    install({"intercept": -1.0})  # 27%: below the 40% threshold
    answer, page = finish(client, RELEVANT)
    assert answer.status == Answer.Status.NOT_COVERED and len(fake_llm.calls) == 2  # declined before the model
    assert "27% that the passages state an answer" in page
    assert "do not state an answer" in answer.answer_text and "do not cover" not in page

    answer, page = finish(client, "Quarterly crop yield forecasts for wheat farmers in Kansas")
    assert answer.status == Answer.Status.NOT_COVERED and "do not cover this question" in answer.answer_text
    assert "(searched 1 document)" in answer.answer_text and "relevance threshold" in page
    assert len(fake_llm.calls) == 2  # nothing relevant: no model call


def test_yes_no_questions_get_a_direct_answer_form_that_the_verifier_accepts():
    passages = [
        {
            "n": 1,
            "document_title": "Regulation O",
            "section": "",
            "text": "A member bank may not extend credit to an executive officer of the bank.",
        }
    ]
    question = "May a member bank extend credit to its executive officer?"
    prompt = prompts.build_messages(question, passages)[-1]["content"]
    assert prompts.YES_NO_FORM in prompt
    assert prompts.YES_NO_FORM not in prompts.build_messages("What is a member bank?", passages)[-1]["content"]
    assert prompts.YES_NO_FORM not in prompts.answerability_messages(question, passages)[-1]["content"]
    assert split_sentences("No. A member bank may not extend credit to an executive officer [1].") == [
        "No. A member bank may not extend credit to an executive officer [1]."
    ]
    assert (
        verify_answer("No. A member bank may not extend credit to an executive officer [1].", passages, question)[
            "status"
        ]
        == "verified"
    )


def test_train_decision_command_keeps_the_active_model_on_bad_input(rulebook, tmp_path, fake_embedder):  # noqa: F811
    active = install({"intercept": 1.0})
    one_class = tmp_path / "answerable.jsonl"
    one_class.write_text(json.dumps({"qid": "a", "question": RELEVANT, "gold": [{"document": "reg-o.pdf", "page": 2}]}))
    with pytest.raises(CommandError, match="unchanged"):
        call_command("train_decision", "--questions", str(one_class), "--no-withhold", verbosity=0)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CommandError, match="holds no question"):
        call_command("train_decision", "--questions", str(empty), verbosity=0)
    assert decision_model.active().as_json() == active.as_json()


def test_headings_are_never_quoted_as_an_answer(fake_embedder):
    from regqa.qa.decision import quote_passages

    passages = [
        {"n": 1, "section": "§ 217.11", "text": "217.11 Capital conservation buffer, countercyclical capital buffer "
         "amount, and GSIB surcharge. Subpart B—Capital Ratio Requirements and Buffers. A banking organization must "
         "maintain a capital conservation buffer above its minimum ratios."},
    ]  # fmt: skip
    quote = quote_passages("What countercyclical capital buffer amount is set?", "", passages)
    assert quote == "A banking organization must maintain a capital conservation buffer above its minimum ratios. [1]"
    only_headings = [{"n": 1, "section": "", "text": "217.11 Capital conservation buffer and GSIB surcharge."}]
    assert quote_passages("What is the countercyclical capital buffer?", "", only_headings) == ""


def test_the_sentence_and_document_signals_tell_a_stating_passage_from_a_near_miss(db):
    """Real embedder. Both passage sets share the question's subject; only the first has a sentence
    that states the answer, so it scores higher on every sentence signal."""
    question = "Within how many days must a firm notify the regulator of a breach?"
    stating = {"n": 1, "document_id": 1, "section": "Notifications", "score": 0.6, "text": (
        "This chapter applies to every authorised firm. A firm must notify the regulator of a breach within "
        "10 business days of becoming aware of it. Records of the notification are kept for six years.")}  # fmt: skip
    near = {"n": 1, "document_id": 2, "section": "Breaches", "score": 0.6, "text": (
        "The regulator publishes guidance on breaches each year. Firms are encouraged to maintain "
        "compliance monitoring programmes that are proportionate to their size.")}  # fmt: skip
    other = {"n": 2, "document_id": 1, "section": "Fees", "score": 0.3,
             "text": "An annual fee is payable by every authorised firm on the first day of the year."}  # fmt: skip
    answered = decision_model.signals(question, [stating, other | {"document_id": 1}])
    missed = decision_model.signals(question, [near, other])
    for name in ("best_sentence", "mean_sentence_top3", "sentence_term_share", "sentence_match"):
        assert answered[name] > missed[name], name
    assert answered["same_document"] == 1.0 and missed["same_document"] == 0.5
    headings_only = {"n": 1, "document_id": 3, "text": "Chapter 4 Notifications of breaches."}
    nothing = decision_model.signals(question, [headings_only])
    assert nothing["best_sentence"] == nothing["sentence_term_share"] == 0.0  # a heading is not a sentence that states
