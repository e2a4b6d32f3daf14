from django.apps import AppConfig


class QaConfig(AppConfig):
    name = "regqa.qa"
    verbose_name = "Questions and answers"
