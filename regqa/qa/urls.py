"""URLs of the ask pages, answers and the escalation policy."""

from django.urls import path

from . import views

urlpatterns = [
    path("ask/", views.ask, name="ask"),
    path("answers/", views.history, name="history"),
    path("answers/<int:pk>/", views.answer_detail, name="answer_detail"),
    path("answers/<int:pk>/stream/", views.answer_stream, name="answer_stream"),
    path("answers/<int:pk>/instant/", views.answer_instant, name="answer_instant"),
    path("answers/<int:pk>/memo.pdf", views.answer_memo, name="answer_memo"),
    path("answers/<int:pk>/follow-up/", views.follow_up, name="follow_up"),
    path("answers/<int:pk>/feedback/", views.give_feedback, name="answer_feedback"),
    path("answers/<int:pk>/escalate/", views.escalate, name="escalate"),
    path("answers/<int:pk>/escalate/stream/", views.escalation_stream, name="escalation_stream"),
    path("policy/", views.policy, name="policy"),
    path("retrieval/", views.retrieval, name="retrieval"),
    path("retrieval/rows/", views.retrieval_rows, name="retrieval_rows"),
    path("retrieval/<int:pk>/activate/", views.retrieval_activate, name="retrieval_activate"),
    path("retrieval/rollback/", views.retrieval_rollback, name="retrieval_rollback"),
    path("retrieval/<int:pk>/resume/", views.retrieval_resume, name="retrieval_resume"),
]
