from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfWriter

from regqa import roles
from regqa.documents import embed, index, lexical
from regqa.qa import llm as local_llm

from .factories import UserFactory
from .fakes import FakeLlama, hashed_embedding

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PDFS = FIXTURES / "pdfs"


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    """Every test gets its own data directory (uploads, FAISS index)."""
    settings.DATA_DIR = tmp_path
    settings.MEDIA_ROOT = tmp_path / "uploads"
    settings.INDEX_DIR = tmp_path / "index"
    settings.AUDIT_KEY_FILE = tmp_path / "audit-key.json"
    settings.AUDIT_CHECKPOINT_FILE = tmp_path / "audit-checkpoints.jsonl"
    index.get_index.cache_clear()
    lexical.get_lexical_index.cache_clear()
    embed.clear_sentence_cache()  # vectors of the fake embedder must not reach a test of the real one
    yield tmp_path
    index.get_index.cache_clear()
    lexical.get_lexical_index.cache_clear()


_vectors: dict[tuple[str, str], np.ndarray] = {}


@pytest.fixture(autouse=True, scope="session")
def remembered_vectors():
    """The real embedder gives a text the same vector in every test, so each one is computed once
    per run: a dozen tests ingest the same fixture PDF (about 20 s each on 2 cores). Only the real
    model's encode remembers (fakes replace get_model and are untouched); keyed by the model's
    path, so a fine-tuned embedder computes its own. `fresh_vectors` forgets them for a test that
    watches embedding take its time."""
    loaded = embed.get_model.__wrapped__

    @functools.cache
    def get_model():
        model, key = loaded(), embed.model_path()
        encode = model.encode

        def remembering(texts, **kwargs):
            if isinstance(texts, str) or not kwargs.get("normalize_embeddings"):
                return encode(texts, **kwargs)
            missing = [t for t in dict.fromkeys(texts) if (key, t) not in _vectors]
            if missing:
                _vectors.update(((key, t), v) for t, v in zip(missing, encode(missing, **kwargs), strict=True))
            return np.stack([_vectors[(key, t)] for t in texts]) if texts else encode(texts, **kwargs)

        model.encode = remembering
        return model

    real = embed.get_model
    embed.get_model = get_model
    yield
    embed.get_model = real


@pytest.fixture
def fresh_vectors():
    _vectors.clear()


@pytest.fixture
def fake_embedder(monkeypatch, settings):
    monkeypatch.setattr(embed, "embed_passages", hashed_embedding)
    settings.MIN_RELEVANCE = 0.15  # bag-of-words similarities run lower than MiniLM's


@pytest.fixture
def fake_llm(monkeypatch, settings, tmp_path):
    llm = FakeLlama()
    monkeypatch.setattr(local_llm, "_model", llm)
    monkeypatch.setattr(local_llm, "get_model", lambda: llm)  # whichever model file is asked for
    settings.LLM_MODEL_PATH = tmp_path / "fake-model.gguf"
    return llm


@pytest.fixture
def users(db):
    roles.ensure_roles()
    return {
        "analyst": UserFactory(username="analyst", role=roles.ANALYSTS),
        "admin": UserFactory(username="admin", role=roles.ADMINS),
        "auditor": UserFactory(username="auditor", role=roles.AUDITORS),
    }


@pytest.fixture
def client_for(client, users):
    def login(name: str):
        client.force_login(users[name])
        return client

    return login


def make_pdf(
    pages: list[str] | None = None, *, password: str | None = None, blank_pages: int = 0, algorithm: str = "RC4-128"
) -> bytes:
    """A small real PDF with the given text, one string per page (pypdf writes it)."""
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    for text in pages or []:
        page = writer.add_blank_page(width=612, height=792)
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
        lines = text.splitlines() or [""]
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 740 Td"]
        for line in lines:
            safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({safe}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    for _ in range(blank_pages):
        writer.add_blank_page(width=612, height=792)
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner-secret", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def llama_server():
    """A real OpenAI-compatible large-model server (llama_cpp.server) on 127.0.0.1, serving a
    packaged GGUF model (REGQA_TEST_LARGE_MODEL, default: the default local model), stopped after."""
    import os

    from django.conf import settings

    from regqa.qa.llama_server import ServerFailed, serve

    model = Path(os.environ.get("REGQA_TEST_LARGE_MODEL", str(settings.LLM_MODEL_PATH)))
    if not model.is_file():
        pytest.fail(f"{model} does not exist: run `make setup` (make test does).")
    try:
        with serve(model, flash_attention=settings.LLM_FLASH_ATTENTION) as url:
            yield url
    except ServerFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture
def large_model(llama_server, settings):
    """The real large-model server behind a loopback proxy that records every request it gets."""
    from .large_server import start_recorder

    recorder = start_recorder(upstream=llama_server.removesuffix("/v1"))
    settings.LARGE_LLM_BASE_URL = recorder.url
    settings.LARGE_LLM_MODEL = "large"
    settings.LARGE_LLM_RETRIES = 0
    yield recorder
    recorder.stop()


@pytest.fixture
def asgi_server(transactional_db):
    """RegQA's ASGI application served by uvicorn on 127.0.0.1 (a free port), as `make run` serves
    it, in a thread of this process so it shares the test database. Yields the base URL."""
    import socket
    import threading

    import uvicorn
    from django.core.asgi import get_asgi_application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(get_asgi_application(), log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def session_cookie(client, user) -> dict[str, str]:
    """The session cookie of `user` logged in (for an HTTP client other than Django's)."""
    from django.conf import settings

    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
