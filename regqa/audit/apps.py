from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "regqa.audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from . import log

        def login_failed(sender, credentials, request=None, **kwargs):
            username = str(credentials.get("username", ""))
            ip = request.META.get("REMOTE_ADDR", "") if request is not None else ""
            log.record("login.failed", f"Failed login for {username!r}", actor=username, data={"ip": ip})

        user_login_failed.connect(login_failed, dispatch_uid="regqa.audit.login_failed", weak=False)
