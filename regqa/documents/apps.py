from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "regqa.documents"
    verbose_name = "Documents"
