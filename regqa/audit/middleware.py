"""Who is acting: the logged-in user of the request being handled, for audit records written by
signals (user, role and permission changes made in the Django admin), which get no request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

acting_user: ContextVar = ContextVar("acting_user", default=None)  # a request, or a named actor


@contextmanager
def acting(actor: str) -> Iterator[None]:
    """Changes made inside are recorded as made by `actor` (e.g. "single sign-on (ISSUER)")."""
    token = acting_user.set(actor)
    try:
        yield
    finally:
        acting_user.reset(token)


class ActingUserMiddleware:
    """Sets `acting_user` for the duration of each request (after authentication)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        # the request, not its lazy `user`: under ASGI, asgiref copies context variables between
        # threads and the event loop, and looking at a lazy user there would query the database
        token = acting_user.set(request)
        try:
            return self.get_response(request)
        finally:
            acting_user.reset(token)
