"""Ask a question from the command line: the same pipeline as the ask page, with timings."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from regqa.qa.answer import answer_question, warm_up


class Command(BaseCommand):
    help = "Answer a question with the local model and print the answer, its passages and timings."

    def add_arguments(self, parser):
        parser.add_argument("question")
        parser.add_argument("--user", default="analyst", help="The answer is logged under this user.")
        parser.add_argument("--cold", action="store_true", help="Include model loading in the timings.")

    def handle(self, *args, question: str, user: str, cold: bool = False, **options):
        account = get_user_model().objects.filter(username=user).first()
        if account is None:
            raise CommandError(f"No user {user!r}: pass --user or run `manage.py bootstrap --demo-users`.")
        if not question.strip():
            raise CommandError("The question is empty.")
        if not cold:
            warm_up()
        answer = answer_question(account, question)
        self.stdout.write(f"[{answer.get_status_display()}] {answer.answer_text or answer.error}\n")
        for p in answer.passages:
            used = "*" if p["sent_to_model"] else " "
            self.stdout.write(f" {used}[{p['n']}] {p['score']:.3f} {p['document_title'][:60]}, p. {p['page_start']}")
        self.stdout.write(
            f"\nmodel {answer.model_name or '-'}; retrieval {answer.retrieval_ms:.0f} ms; "
            f"first token {answer.first_token_ms or 0:.0f} ms; total {answer.total_ms or 0:.0f} ms"
        )
