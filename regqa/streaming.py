"""Streamed responses under both kinds of server.

`make run` serves RegQA under ASGI (uvicorn): pages run in threads, streams on the event loop. A
stream's content is written by ordinary (synchronous) code, such as the model writing an answer or
an export reading the database, so under ASGI `Pump` runs that code in a thread of its own and
hands its pieces to the event loop: the server's threads stay free for pages, and when the browser
goes away the code is stopped at its next piece (a generator is closed, so its `finally` and
`GeneratorExit` handlers run). Under WSGI (the test client, a WSGI deployment) the synchronous
iterator is served as it is.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass

from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import FileResponse, HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase

log = logging.getLogger("regqa.streaming")


def is_async(request: HttpRequest) -> bool:
    """Whether the request came through the ASGI handler (an event loop serves its response)."""
    return isinstance(request, ASGIRequest)


def response(request: HttpRequest, content: Iterable, content_type: str) -> StreamingHttpResponse:
    """A streamed response whose content is a synchronous iterable: pumped under ASGI."""
    body = Pump(content) if is_async(request) else content
    return StreamingHttpResponse(body, content_type=content_type)


def event_stream(content: Iterable | AsyncIterable) -> StreamingHttpResponse:
    """Server-sent events, never cached or buffered by a proxy."""
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class FileStreamMiddleware:
    """Under ASGI, a file response (a stored PDF, a static file served by WhiteNoise) is read in a
    thread of its own (Pump), not read whole into memory, which is what Django does under ASGI with
    a file it cannot read asynchronously. First in MIDDLEWARE, so it sees WhiteNoise's responses."""

    block = 1 << 16

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if is_async(request) and isinstance(response, FileResponse) and response.file_to_stream is not None:
            read = response.file_to_stream.read  # closed by the response when it is done
            response.streaming_content = Pump(iter(lambda: read(self.block), b""))
        return response


@dataclass
class _End:
    error: BaseException | None = None


class Pump[T]:
    """Runs a synchronous iterable in a thread of its own, started when the event loop begins to
    read it with `async for`. At most `window` pieces wait unread (the thread pauses, so a slow
    reader does not fill memory). When the reader stops (the browser went away), the thread closes
    the iterator at its next piece. `on_end` runs in the thread once the iterator is done or
    closed, even if it never started. Made anywhere (a view's thread); read on the event loop."""

    def __init__(self, content: Iterable[T], on_end: Callable[[], None] | None = None, window: int = 64) -> None:
        self._content = content
        self._on_end = on_end
        self._room = threading.Semaphore(window)
        self._stop = threading.Event()

    def _run(self, content: Iterable[T], on_end: Callable[[], None] | None) -> None:
        end = _End()
        iterator: Iterator[T] | None = None
        try:
            iterator = iter(content)
            for piece in iterator:
                if not self._wait_for_room():
                    break
                self._send(piece)
        except BaseException as exc:  # handed to the reader, which raises it
            end.error = exc
        finally:
            close = getattr(iterator if iterator is not None else content, "close", None)
            for step in (close, on_end):
                if step is not None:
                    try:
                        step()
                    except Exception:
                        log.exception("a stream's clean-up failed")
            connections.close_all()  # this thread's own database connections
            self._send(end)

    def _wait_for_room(self) -> bool:
        while not self._room.acquire(timeout=0.5):
            if self._stop.is_set():
                return False
        return not self._stop.is_set()

    def _send(self, piece: T | _End) -> None:
        try:
            self._loop.call_soon_threadsafe(self._pieces.put_nowait, piece)
        except RuntimeError:  # the event loop has closed: nobody is reading
            self._stop.set()

    async def __aiter__(self) -> AsyncIterator[T]:
        # no await before the thread starts, so a reader cancelled at once still gets on_end run
        self._loop = asyncio.get_running_loop()
        self._pieces: asyncio.Queue[T | _End] = asyncio.Queue()
        args = (self._content, self._on_end)
        threading.Thread(target=self._run, args=args, name="regqa-stream", daemon=True).start()
        try:
            while True:
                piece = await self._pieces.get()
                if isinstance(piece, _End):
                    if piece.error is not None:
                        raise piece.error
                    return
                self._room.release()
                yield piece
        finally:
            self._stop.set()
