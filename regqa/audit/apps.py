from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "regqa.audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import log

        def login_failed(sender, credentials, request=None, **kwargs):
            username = str(credentials.get("username", ""))
            ip = request.META.get("REMOTE_ADDR", "") if request is not None else ""
            log.record("login.failed", f"Failed login for {username!r}", actor=username, data={"ip": ip})

        user_login_failed.connect(login_failed, dispatch_uid="regqa.audit.login_failed", weak=False)

        def logged_in(sender, request, user, **kwargs):
            ip = request.META.get("REMOTE_ADDR", "") if request is not None else ""
            log.record("login", f"{user.get_username()} logged in", user=user, data={"ip": ip})

        user_logged_in.connect(logged_in, dispatch_uid="regqa.audit.logged_in", weak=False)

        # User and role changes, from the Django admin, the shell or a command alike.
        from django.contrib.auth import get_user_model
        from django.db.models.signals import m2m_changed, post_delete, post_save

        User = get_user_model()

        def user_saved(sender, instance, created, update_fields=None, **kwargs):
            if update_fields is not None and set(update_fields) <= {"last_login"}:
                return  # a login, recorded as such below
            kind = "user.created" if created else "user.changed"
            log.record(
                kind,
                f"{kind.split('.')[1].capitalize()} user {instance.get_username()}",
                actor="",
                data={
                    "user": instance.get_username(),
                    "active": instance.is_active,
                    "staff": instance.is_staff,
                    "superuser": instance.is_superuser,
                },
            )

        def user_deleted(sender, instance, **kwargs):
            log.record(
                "user.deleted", f"Deleted user {instance.get_username()}", data={"user": instance.get_username()}
            )

        def roles_changed(sender, instance, action, pk_set, **kwargs):
            if action in ("post_add", "post_remove", "post_clear") and isinstance(instance, User):
                from django.contrib.auth.models import Group

                names = sorted(Group.objects.filter(pk__in=pk_set or []).values_list("name", flat=True))
                log.record(
                    "user.roles_changed",
                    f"Roles of {instance.get_username()}: {action[5:]} {', '.join(names)}",
                    data={
                        "user": instance.get_username(),
                        "action": action[5:],
                        "groups": names,
                        "now": sorted(instance.groups.values_list("name", flat=True)),
                    },
                )

        post_save.connect(user_saved, sender=User, dispatch_uid="regqa.audit.user_saved", weak=False)
        post_delete.connect(user_deleted, sender=User, dispatch_uid="regqa.audit.user_deleted", weak=False)
        m2m_changed.connect(roles_changed, sender=User.groups.through, dispatch_uid="regqa.audit.roles", weak=False)
