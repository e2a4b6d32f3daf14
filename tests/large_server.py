"""Loopback HTTP servers for the escalation tests.

- `start_recorder(upstream=URL)`: a logging proxy in front of a real OpenAI-compatible server
  (llama_cpp.server): it records every request body exactly as received, then forwards it and
  streams the reply back. Tests assert on what the server received.
- `start_recorder(behaviour=...)`: a stand-in for fast tests: "reply" streams a scripted answer
  in the OpenAI server-sent-events format, "error" returns HTTP 500, "hang" never answers.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: str, upstream: str, reply: str, hang_seconds: float) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour = behaviour
        self.upstream = upstream
        self.reply = reply
        self.hang_seconds = hang_seconds
        self.requests: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def sent_text(self) -> str:
        """Every message content of every chat request received, joined."""
        return "\n".join(m["content"] for r in self.requests for m in r.get("messages", []))

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the reply ends when the connection closes: simple streaming
    server: Recorder

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": "large", "object": "model"}]})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(json.loads(body))
        if self.server.upstream:
            return self._forward(body)
        if self.server.behaviour == "hang":
            time.sleep(self.server.hang_seconds)
            return
        if self.server.behaviour == "error":
            return self._json(500, {"error": {"message": "model crashed", "type": "server_error"}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        text = self.server.reply
        for start in range(0, len(text), 4):
            chunk = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": "large",
                "choices": [{"index": 0, "delta": {"content": text[start : start + 4]}, "finish_reason": None}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def _json(self, status: int, data: dict) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _forward(self, body: bytes) -> None:
        target = urlsplit(self.server.upstream)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
        conn.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        self.send_response(response.status)
        self.send_header("Content-Type", response.getheader("Content-Type", "application/json"))
        self.end_headers()
        while piece := response.read1(65536):
            self.wfile.write(piece)
            self.wfile.flush()
        conn.close()


def start_recorder(
    behaviour: str = "reply", *, upstream: str = "", reply: str = "", hang_seconds: float = 30.0
) -> Recorder:
    server = Recorder(behaviour, upstream, reply, hang_seconds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
