from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "regqa.api"
    label = "api"
    verbose_name = "REST API"
