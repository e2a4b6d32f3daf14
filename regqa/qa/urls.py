"""URLs of the ask pages, answers and the escalation policy."""

from django.urls import path

from . import views

urlpatterns = [
    path("ask/", views.ask, name="ask"),
    path("answers/", views.history, name="history"),
    path("answers/<int:pk>/", views.answer_detail, name="answer_detail"),
    path("answers/<int:pk>/stream/", views.answer_stream, name="answer_stream"),
    path("answers/<int:pk>/escalate/", views.escalate, name="escalate"),
    path("answers/<int:pk>/escalate/stream/", views.escalation_stream, name="escalation_stream"),
    path("policy/", views.policy, name="policy"),
]
