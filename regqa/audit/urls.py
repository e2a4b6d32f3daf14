from django.urls import path

from . import views

urlpatterns = [
    path("", views.answer_log, name="answer_log"),
    path("answers/<int:pk>/", views.log_entry, name="log_entry"),
    path("export.csv", views.export_csv, name="answer_log_csv"),
    path("trail/", views.trail, name="audit_trail"),
    path("trail/<int:seq>/", views.trail_entry, name="audit_trail_entry"),
    path("trail/export.<str:fmt>", views.export_trail, name="audit_export"),
]
