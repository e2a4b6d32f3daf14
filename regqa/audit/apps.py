from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "regqa.audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.contrib.auth.signals import user_logged_in, user_login_failed
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from . import auth_events

        User = get_user_model()
        user_login_failed.connect(auth_events.login_failed, dispatch_uid="regqa.audit.login_failed")
        user_logged_in.connect(auth_events.logged_in, dispatch_uid="regqa.audit.logged_in")
        user_locked_out.connect(auth_events.locked_out, dispatch_uid="regqa.audit.locked_out")
        post_save.connect(auth_events.user_saved, sender=User, dispatch_uid="regqa.audit.user_saved")
        post_delete.connect(auth_events.user_deleted, sender=User, dispatch_uid="regqa.audit.user_deleted")
        m2m_changed.connect(auth_events.roles_changed, sender=User.groups.through, dispatch_uid="regqa.audit.roles")
        m2m_changed.connect(
            auth_events.user_permissions_changed, sender=User.user_permissions.through, dispatch_uid="regqa.audit.uperm"
        )
        m2m_changed.connect(
            auth_events.role_permissions_changed, sender=Group.permissions.through, dispatch_uid="regqa.audit.gperm"
        )
        post_save.connect(auth_events.role_saved, sender=Group, dispatch_uid="regqa.audit.role_saved")
        post_delete.connect(auth_events.role_deleted, sender=Group, dispatch_uid="regqa.audit.role_deleted")
