from django.apps import AppConfig
from django.core import checks


class AccountsConfig(AppConfig):
    name = "regqa.accounts"
    label = "accounts"
    verbose_name = "Single sign-on"

    def ready(self) -> None:
        checks.register(provider_reachable)


def provider_reachable(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """With single sign-on configured, its provider's discovery document must be readable at
    start-up (a warning: local logins, if on, still work)."""
    from django.conf import settings

    from . import sso

    if not settings.OIDC_ISSUER:
        return []
    try:
        sso.discovery(settings.OIDC_ISSUER)
    except sso.ProviderUnreachable as exc:
        return [checks.Warning(str(exc), hint="Check REGQA_OIDC_ISSUER and the network.", id="regqa.W010")]
    return []
