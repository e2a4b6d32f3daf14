"""What RegQA stores about questions: answers (with their JSON records, typed in schemas.py),
escalation policy versions and escalations. No answering logic here."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from regqa.documents.models import Document

from .quality import CRITERIA
from .schemas import PassageSnapshot, Routing, Score, Verification, load_quality


class EscalationState(models.TextChoices):
    NONE = "", "Not escalated"
    PENDING = "pending", "Waiting for the large model"
    STREAMING = "streaming", "The large model is writing"
    DONE = "done", "Answered by the large model"
    FAILED = "failed", "The large model failed; local answer kept"
    REFUSED = "refused", "Escalation refused by policy"


class Answer(models.Model):
    """One question asked by one user, and everything RegQA did to answer it.

    `passages` is a snapshot (text, document, page, score) taken at question time, so the record
    still says what the answer was based on after documents change or are deleted.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the model"
        STREAMING = "streaming", "Being written"
        ANSWERED = "answered", "Answered"
        QUOTED = "quoted", "Quoted from the passages"
        NOT_COVERED = "not_covered", "Declined: the documents do not state an answer"
        FAILED = "failed", "Failed"
        ABANDONED = "abandoned", "Abandoned: its answer was never opened"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="answers")
    question = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    passages = models.JSONField(default=list)
    # The documents the passages came from (for the auditors' filter; the snapshot above is the record).
    documents = models.ManyToManyField("documents.Document", blank=True, related_name="answers")
    filters = models.JSONField(default=dict, blank=True)  # document filters the question was asked with
    answer_text = models.TextField(blank=True)
    citations = models.JSONField(default=list)
    # Sentence-by-sentence citation check (verify.py) and the five-criteria quality check (quality.py).
    verification = models.JSONField(default=dict, blank=True)
    quality = models.JSONField(default=dict, blank=True)
    quality_min = models.PositiveSmallIntegerField(null=True, blank=True, db_index=True)  # lowest score
    model_name = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    retrieval_ms = models.FloatField(null=True, blank=True)
    first_token_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    check_ms = models.FloatField(null=True, blank=True)  # time taken by verification and quality check
    # Routing (routing.py): the decision with its reasons and policy version, the local answer when
    # the large model replaced it, and notices such as "the large model could not be reached".
    routing = models.JSONField(default=dict, blank=True)
    escalation_state = models.CharField(max_length=20, choices=EscalationState.choices, blank=True, db_index=True)
    answered_by = models.CharField(max_length=10, default="local")  # "local" or "large"
    retrieval_bundle = models.CharField(max_length=40, blank=True)  # the learned ranking used ("": none)
    feedback_verdict = models.CharField(max_length=20, blank=True, db_index=True)  # the asker's latest Feedback
    # A newer version of a cited document changed or dropped a cited passage (amended.py): what changed.
    source_amended = models.BooleanField(default=False, db_index=True)
    # The passage sentences closest to the question, quoted and checked at once while the model
    # writes (answer.instant_quote): {"text", "verification", "ms"}.
    instant = models.JSONField(default=dict, blank=True)
    # A follow-up: the answer it follows, and {"thread": [answer ids], "asked", "rewritten", "edited",
    # "rewrite_ms"} (followup.py), which the audit record holds.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="follow_ups")
    follow_up = models.JSONField(default=dict, blank=True)
    amendments = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("ask_question", "Can ask questions"),
            ("view_answer_log", "Can view every user's answers"),
            ("export_answer_log", "Can export the answer log"),
        ]

    def __str__(self) -> str:
        return self.question[:80]

    # The JSON columns as typed records (schemas.py), for code that reads them.
    @property
    def checked(self) -> Verification:
        return Verification.load(self.verification)

    @property
    def scores(self) -> dict[str, Score]:
        return load_quality(self.quality)

    @property
    def snapshot(self) -> list[PassageSnapshot]:
        return [PassageSnapshot.load(p) for p in self.passages]

    @property
    def route(self) -> Routing | None:
        return Routing.load(self.routing) if self.routing else None

    @property
    def verification_status(self) -> str:
        return self.checked.status or ""

    @property
    def quality_rows(self) -> list[dict]:
        return [{"key": k, "name": name, **self.quality[k]} for k, name in CRITERIA.items() if k in self.quality]

    @property
    def is_final(self) -> bool:
        return self.status in (
            self.Status.ANSWERED, self.Status.QUOTED, self.Status.NOT_COVERED, self.Status.FAILED, self.Status.ABANDONED
        )  # fmt: skip

    @property
    def escalated(self) -> bool:
        return self.escalation_state in (EscalationState.DONE, EscalationState.FAILED)


class Feedback(models.Model):
    """What the asker said of an answer: helpful or not, which cited passages were the wrong
    ones, and a comment. Each submission is a row (the latest one counts, and is copied to
    Answer.feedback_verdict for the auditors' filter); `manage.py export_feedback` turns helpful
    answers into training pairs for retrieval."""

    class Verdict(models.TextChoices):
        HELPFUL = "helpful", "Helpful"
        NOT_HELPFUL = "not_helpful", "Not helpful"

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    wrong_passages = models.JSONField(default=list, blank=True)  # passage numbers [n] marked "wrong passage"
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} on answer {self.answer_id}"


class EscalationPolicy(models.Model):
    """What may be sent to the large model. Never edited: every change is a new row (a new
    version) with who made it and when; the newest row is the policy in force."""

    class Mode(models.TextChoices):
        OFF = "off", "Off: never escalate"
        ON_REQUEST = "on_request", "On request: an analyst asks for it"
        AUTOMATIC = "automatic", "Automatic: when the triggers say so, or on request"

    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.OFF)
    allowed_groups = models.JSONField(default=list, blank=True, help_text="Groups (roles) whose members may escalate.")
    max_sensitivity = models.CharField(
        "highest classification that may be sent",
        max_length=20,
        choices=Document.Sensitivity.choices,
        default=Document.Sensitivity.PUBLIC,
    )
    redact_patterns = models.JSONField(default=list, blank=True, help_text="Built-in identifier patterns to redact.")
    redact_terms = models.TextField(blank=True, help_text="Also redact these terms (client names...), one per line.")
    user_daily_escalations = models.PositiveIntegerField(default=20)
    global_daily_escalations = models.PositiveIntegerField(default=200)
    user_daily_tokens = models.PositiveIntegerField("tokens sent per user per day", default=50_000)
    global_daily_tokens = models.PositiveIntegerField("tokens sent per day in all", default=500_000)
    min_retrieval_score = models.PositiveSmallIntegerField(
        default=3, help_text="Escalate when retrieval strength scores below this (1-5; 0 turns the trigger off)."
    )
    min_groundedness = models.PositiveSmallIntegerField(
        default=3, help_text="Escalate when groundedness scores below this (1-5; 0: off)."
    )
    min_citation_accuracy = models.PositiveSmallIntegerField(
        default=3, help_text="Escalate when citation accuracy scores below this (1-5; 0: off)."
    )
    escalate_on_decline = models.BooleanField(default=True, help_text="Escalate when the local model declines.")
    escalate_complex = models.BooleanField(
        default=True, help_text="Escalate questions that compare documents or need several steps."
    )
    note = models.CharField("reason for the change", max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
        permissions = [("manage_policy", "Can change the escalation policy")]

    def __str__(self) -> str:
        return f"policy v{self.pk or 0} ({self.mode})"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("An escalation policy is never changed: save a new version instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Escalation policy versions are kept.")

    @property
    def version(self) -> int:
        return self.pk or 0

    @property
    def terms(self) -> list[str]:
        return [t.strip() for t in self.redact_terms.splitlines() if t.strip()]


class Escalation(models.Model):
    """One request to the large model: exactly what left the building and what came back."""

    class Status(models.TextChoices):
        SENT = "sent", "Sent"
        ANSWERED = "answered", "Answered"
        FAILED = "failed", "Failed"

    answer = models.ForeignKey(Answer, on_delete=models.PROTECT, related_name="escalations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="escalations")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SENT)
    policy_version = models.PositiveIntegerField()
    requested = models.BooleanField(default=False)  # asked for by the analyst, not triggered
    base_url = models.CharField(max_length=300)
    model = models.CharField(max_length=200)
    sent = models.JSONField(default=list)  # the chat messages, redacted, exactly as sent
    received = models.TextField(blank=True)  # the reply as received (placeholders not restored)
    redactions = models.JSONField(default=dict, blank=True)  # placeholder kind -> count
    tokens_sent = models.PositiveIntegerField(default=0)  # reported by the server, else estimated
    tokens_received = models.PositiveIntegerField(default=0)
    first_token_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"escalation {self.pk} of answer {self.answer_id} ({self.status})"


class RetrievalBundle(models.Model):
    """One trained ranking (retrieval bundle): its files live under
    DATA_DIR/retrieval/bundles/<pk>/ (bundle.json, ranker.txt); this row is its state. At most one
    is active; the one active before it stays ready, one click away (rollback)."""

    class Status(models.TextChoices):
        WRITING = "writing", "Writing training questions"
        TRAINING = "training", "Training"
        READY = "ready", "Ready (not active)"
        ACTIVE = "active", "Active"
        REJECTED = "rejected", "Not activated: its figures do not beat the active ranking"
        FAILED = "failed", "Failed"

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.TRAINING, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    detail = models.TextField(blank=True, help_text="What training is doing, or why it failed.")
    pairs_file = models.CharField(max_length=300, blank=True)
    pairs_sha256 = models.CharField(max_length=64, blank=True)
    summary = models.JSONField(default=dict, blank=True)  # training data: questions, gold found
    figures = models.JSONField(default=dict, blank=True)  # the cross-validated figures it reached
    activated_at = models.DateTimeField(null=True, blank=True)
    synthetic_requested = models.PositiveIntegerField(
        default=0, help_text="Passages to write a training question for with the local model (0: labelled pairs only)."
    )
    folds = models.PositiveSmallIntegerField(default=5)  # cross-validation folds asked for (a resume uses them)
    synthetic_model = models.CharField(max_length=200, blank=True)
    replaced = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The bundle that was active when this one was activated (none: the untrained ranking); "
        "rolling this one back returns to it.",
    )
    fine_tune_embedder = models.BooleanField(
        default=False,
        help_text="Fine-tune the embedder too (carried with its own passage vectors) instead of a query adapter: "
        "about 20 minutes a fold on 2 cores for 2,000 questions.",
    )

    class Meta:
        ordering = ["-pk"]
        permissions = [("manage_retrieval", "Can train and activate retrieval bundles")]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return f"bundle v{self.pk}"

    @property
    def resumable(self) -> bool:
        """Unfinished (its worker stopped, or it failed) and it writes synthetic questions, which
        a new run continues from where the last one stopped."""
        unfinished = (self.Status.WRITING, self.Status.TRAINING, self.Status.FAILED)
        return self.synthetic_requested > 0 and self.status in unfinished

    @property
    def headline(self) -> dict[str, float] | None:
        """The cross-validated Recall@k and MAP@k (means, spread) of the bundle and of the untrained ranking."""
        if not self.figures:
            return None
        k, f = self.figures["k"], self.figures
        return {
            "recall": f["reranker"][f"recall@{k}"]["mean"],
            "recall_sd": f["reranker"][f"recall@{k}"]["sd"],
            "map": f["reranker"][f"map@{k}"]["mean"],
            "map_sd": f["reranker"][f"map@{k}"]["sd"],
            "untrained_recall": f["rrf"][f"recall@{k}"]["mean"],
            "untrained_map": f["rrf"][f"map@{k}"]["mean"],
        }


class SyntheticQuestion(models.Model):
    """A question the local model wrote for one passage, to train a bundle without labelled pairs
    (synthetic.py). One row per passage tried, written as soon as it is done, so generation
    stopped by a killed worker resumes where it stopped."""

    class Outcome(models.TextChoices):
        KEPT = "kept", "Kept as a training pair"
        NOT_RETRIEVED = "not_retrieved", "Dropped: its passage is not in the first stage's top 20"
        UNUSABLE = "unusable", "Dropped: not a usable question"

    bundle = models.ForeignKey(RetrievalBundle, on_delete=models.CASCADE, related_name="synthetic_questions")
    chunk = models.ForeignKey("documents.Chunk", on_delete=models.CASCADE, related_name="+")
    question = models.TextField(blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    source_rank = models.PositiveIntegerField(null=True, blank=True)  # in the untrained ranking, 1 = first
    seconds = models.FloatField(default=0.0)  # the model's time for this question
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["bundle", "chunk"], name="one_synthetic_question_per_passage")]

    def __str__(self) -> str:
        return self.question[:80]
