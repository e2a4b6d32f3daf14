"""Start llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for a GGUF file: the large model
of the tests and of `evaluate routing --serve-large` (run.sh starts the demo's the same way)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ServerFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    model: Path, threads: int = 2, context: int = 4096, timeout: float = 120, flash_attention: bool = True
) -> Iterator[str]:
    """Run the server while the block runs; yields its base URL (".../v1"), model alias "large".
    Flash attention as in the in-process model (REGQA_LLM_FLASH_ATTENTION), so both compute the
    same logits (it moves P(yes) by a few hundredths)."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "large"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(context)]
    command += ["--flash_attn", str(flash_attention)]
    command += ["--n_threads", str(threads), "--n_threads_batch", str(threads), "--verbose", "False"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    detail = process.stderr.read().decode()[-2000:] if process.stderr else ""
                    raise ServerFailed(f"llama_cpp.server did not start: {detail}") from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
