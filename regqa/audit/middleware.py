"""Who is acting: the logged-in user of the request being handled, for audit records written by
signals (user, role and permission changes made in the Django admin), which get no request."""

from __future__ import annotations

from contextvars import ContextVar

acting_user: ContextVar = ContextVar("acting_user", default=None)


class ActingUserMiddleware:
    """Sets `acting_user` for the duration of each request (after authentication)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        token = acting_user.set(getattr(request, "user", None))
        try:
            return self.get_response(request)
        finally:
            acting_user.reset(token)
