from django.apps import AppConfig
from django.core import checks


class QaConfig(AppConfig):
    name = "regqa.qa"
    verbose_name = "Questions and answers"

    def ready(self) -> None:
        from regqa.documents.ingest import superseded

        from .amended import on_superseded

        checks.register(model_server_check)
        superseded.connect(on_superseded, dispatch_uid="qa.amended")


def model_server_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """With REGQA_LLM_BASE_URL set, the model server must answer at start-up (`migrate` and
    `check` run this; `make run` migrates first), so a server that is down or misnamed is one clear
    error before the app starts, not a failure on the first question."""
    from django.conf import settings

    from . import llm

    if not settings.LLM_BASE_URL:
        return []
    model = llm.ServerModel(settings.LLM_BASE_URL, settings.LLM_SERVER_MODEL, settings.LLM_API_KEY)
    try:
        model.check()
    except llm.ModelUnavailable as exc:
        hint = "Start the model server, fix REGQA_LLM_BASE_URL, or unset it to run the model in this process."
        return [checks.Error(str(exc), hint=hint, id="regqa.E001")]
    finally:
        model.close()
    return []
