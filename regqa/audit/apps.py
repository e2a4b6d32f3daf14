from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "regqa.audit"
    verbose_name = "Audit"
