"""The local language model behind one small interface, `LocalModel`.

Two implementations: the in-process llama.cpp model (`LlamaCppModel`, the zero-configuration
default) and a model server speaking the OpenAI API (`ServerModel`, when REGQA_LLM_BASE_URL is
set), so web processes need not load a model and several answers are written at once. This module
loads and runs models; it builds no prompt (prompts.py) and decides nothing about answers
(decision.py).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Any, Protocol

import jiter
import numpy as np
import openai
from django.conf import settings

from .citations import cite, cited_numbers
from .prompts import ANSWER_PREFILL, ANSWER_SCHEMA, Message

log = logging.getLogger("regqa.llm")

# The rest of a reply under prompts.ANSWER_SCHEMA once ANSWER_PREFILL is written (a llama.cpp grammar).
ANSWER_REST_GRAMMAR = r"""
root ::= (char* "\"" space "," space "\"cited_passages\"" space ":" space cited "," space
          "\"passages_state_answer\"" space ":" space boolean "}" space)
char ::= [^"\\] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])
cited ::= "[" space (integer ("," space integer)*)? "]" space
integer ::= ([0-9] | [1-9] [0-9]*) space
boolean ::= ("true" | "false") space
space ::= " "?
"""

# The first reply tokens that say yes or no, read by both models for P(yes).
YES_TOKENS = ("yes", "Yes", " yes", " Yes")
NO_TOKENS = ("no", "No", " no", " No")


class ModelUnavailable(Exception):
    """The local model cannot be used (missing file, load failure)."""


class LocalModel(Protocol):
    """What the answer flow needs from a local model."""

    name: str
    sha256: str  # of the model file, for the audit record ("" when unknown)

    def stream_json(self, messages: list[Message]) -> Iterator[str]:
        """The reply to `messages` as JSON under prompts.ANSWER_SCHEMA, piece by piece as it is
        written, starting with prompts.ANSWER_PREFILL."""
        ...

    def yes_probability(self, messages: list[Message]) -> float | None:
        """P("yes") / P("yes" or "no") for the first token of the reply (None: cannot tell)."""
        ...

    def write(self, messages: list[Message], max_tokens: int) -> str:
        """A short plain-text reply, greedy (synthetic training questions)."""
        ...

    def close(self) -> None:
        """Free the model's memory."""
        ...


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _chat_formatter(template: str, eos: str) -> Any:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # loads llama.cpp: only when a model runs

    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token="")


class LlamaCppModel:
    """A GGUF file run in this process by llama-cpp-python."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ModelUnavailable(
                f"The local model file {path} does not exist. Run `make models`, or point "
                "REGQA_LLM_MODEL at a GGUF file."
            )
        try:
            from llama_cpp import Llama  # loads llama.cpp: only when a model is used

            self.llm = Llama(
                model_path=str(path),
                n_ctx=settings.LLM_CONTEXT_TOKENS,
                n_threads=settings.LLM_THREADS,
                n_threads_batch=settings.LLM_THREADS,
                flash_attn=settings.LLM_FLASH_ATTENTION,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp reports a bad file as ValueError or RuntimeError
            raise ModelUnavailable(f"The local model {path.name} could not be loaded: {exc}") from exc
        atexit.register(self.llm.close)  # free it before the interpreter tears llama_cpp down
        self.name = path.name
        self.sha256 = _file_sha256(path)  # once, with the load (about 1 s per GB)

    def close(self) -> None:
        self.llm.close()

    def _prompt_tokens(self, messages: list[Message], reply_start: str = "") -> tuple[list[int], str]:
        """The chat prompt in the model's own template, as tokens, with the assistant's reply
        opened by `reply_start`; and the end-of-turn text."""
        llm: Any = self.llm
        eos = llm._model.token_get_text(llm.token_eos())
        prompt = _chat_formatter(llm.metadata["tokenizer.chat_template"], eos)(messages=messages).prompt
        return llm.tokenize((prompt + reply_start).encode(), add_bos=False, special=True), eos

    def stream_json(self, messages: list[Message]) -> Iterator[str]:
        """llama-cpp-python reuses the cached prefix of the prompt between calls."""
        from llama_cpp import LlamaGrammar  # loads llama.cpp: only when a model runs

        llm: Any = self.llm  # llama-cpp-python's types do not cover streaming replies
        decoding: dict[str, Any] = {
            "max_tokens": settings.LLM_MAX_ANSWER_TOKENS,
            "temperature": 0.0,
            "repeat_penalty": 1.1,  # greedy decoding of small models otherwise loops on a phrase
            "stream": True,
        }
        if "tokenizer.chat_template" not in llm.metadata:  # a GGUF without one: llama-cpp-python's default
            schema = {"type": "json_object", "schema": ANSWER_SCHEMA}
            for chunk in llm.create_chat_completion(messages=messages, response_format=schema, **decoding):
                yield chunk["choices"][0]["delta"].get("content") or ""
            return
        tokens, eos = self._prompt_tokens(messages, ANSWER_PREFILL)
        grammar = LlamaGrammar.from_string(ANSWER_REST_GRAMMAR, verbose=False)
        yield ANSWER_PREFILL
        for chunk in llm.create_completion(tokens, grammar=grammar, stop=[eos], **decoding):
            yield chunk["choices"][0]["text"]

    def write(self, messages: list[Message], max_tokens: int) -> str:
        llm: Any = self.llm
        reply = llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.1
        )
        return reply["choices"][0]["message"]["content"] or ""

    def yes_probability(self, messages: list[Message]) -> float | None:
        """llama-cpp-python's own `generate` evaluates the prompt, reusing the cached prefix (the
        passages and question open the answer prompt too, so only the yes/no question is new
        work); the first token's logits are then read, the token unused. A model without a chat
        template cannot be asked: None."""
        llm: Any = self.llm
        if "tokenizer.chat_template" not in llm.metadata:
            return None
        tokens, _ = self._prompt_tokens(messages)
        steps = llm.generate(tokens, temp=0.0)
        next(steps)
        steps.close()
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype("float64")
        probs = np.exp(logits - logits.max())

        def mass(words: tuple[str, ...]) -> float:
            ids = {llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in words}
            return float(sum(probs[i] for i in ids))

        yes, no = mass(YES_TOKENS), mass(NO_TOKENS)
        return yes / (yes + no) if yes + no > 0 else 0.5


class ServerModel:
    """The local model served by an OpenAI-compatible server (REGQA_LLM_BASE_URL): the same calls
    through chat completions. The reply's JSON is constrained by the server from the schema
    (response_format), and P(yes) is read from the first token's top log-probabilities: the
    ratio P(yes) / (P(yes) + P(no)) does not depend on the tokens left out of the top 20, so it
    equals the in-process value whenever both words are among them (tests/test_model_server.py
    compares the two on the same GGUF file)."""

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 300.0) -> None:
        self.base_url = base_url
        self.name = model
        self.sha256 = ""  # a server does not say which file it runs
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=0)

    def close(self) -> None:
        self.client.close()

    def _unavailable(self, exc: Exception) -> ModelUnavailable:
        if isinstance(exc, openai.APITimeoutError):
            why = "did not answer in time"
        elif isinstance(exc, openai.APIConnectionError):
            why = "cannot be reached"
        elif isinstance(exc, openai.APIStatusError):
            why = f"refused the request (HTTP {exc.status_code}: {str(exc.message)[:300]})"
        else:
            why = f"failed: {exc}"
        return ModelUnavailable(f"The model server at {self.base_url} {why}.")

    def check(self) -> None:
        """Raise ModelUnavailable unless the server answers and knows the model's name."""
        try:
            served = [m.id for m in self.client.models.list(timeout=10)]
        except openai.OpenAIError as exc:
            raise self._unavailable(exc) from exc
        if served and self.name not in served:
            raise ModelUnavailable(
                f"The model server at {self.base_url} serves {', '.join(served)}, not {self.name!r}: "
                "set REGQA_LLM_SERVER_MODEL to one of them."
            )

    def _create(self, messages: list[Message], **options: Any) -> Any:
        try:
            messages_: Any = messages  # plain role/content dicts, as the OpenAI types describe them
            return self.client.chat.completions.create(model=self.name, messages=messages_, temperature=0.0, **options)
        except openai.OpenAIError as exc:
            raise self._unavailable(exc) from exc

    def stream_json(self, messages: list[Message]) -> Iterator[str]:
        if settings.LLM_JSON_FORMAT == "json_object":  # llama-cpp-python's server
            response_format: dict[str, Any] = {"type": "json_object", "schema": ANSWER_SCHEMA}
        else:
            response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
        stream = self._create(
            messages,
            max_tokens=settings.LLM_MAX_ANSWER_TOKENS,
            stream=True,
            extra_body={"response_format": response_format, "repeat_penalty": 1.1},
        )
        try:
            for chunk in stream:
                if chunk.choices:
                    yield chunk.choices[0].delta.content or ""
        except openai.OpenAIError as exc:
            raise self._unavailable(exc) from exc
        finally:
            stream.close()  # a stream stopped early (the browser left) frees the server's slot

    def write(self, messages: list[Message], max_tokens: int) -> str:
        reply = self._create(messages, max_tokens=max_tokens, extra_body={"repeat_penalty": 1.1})
        return reply.choices[0].message.content or ""

    def yes_probability(self, messages: list[Message]) -> float | None:
        reply = self._create(messages, max_tokens=1, logprobs=True, top_logprobs=20)
        logprobs = reply.choices[0].logprobs
        if logprobs is None or not logprobs.content:
            return None  # this server gives no log-probabilities
        top = {t.token: math.exp(t.logprob) for t in logprobs.content[0].top_logprobs}
        yes = sum(top.get(token, 0.0) for token in YES_TOKENS)
        no = sum(top.get(token, 0.0) for token in NO_TOKENS)
        return yes / (yes + no) if yes + no > 0 else 0.5


# ---------------------------------------------------------------------------------------------
# The process's model: loaded once; answers take one of REGQA_LLM_PARALLEL slots while it writes
# (one for the in-process model, the server's parallel slots for a model server).


class Slots:
    """At most `size` writers at once; the others wait in order of arrival and can learn their
    place in the queue (the page tells the analyst). A writer joins with a `Ticket`; a thread waits
    on it with `Ticket.wait`, an async stream with `Ticket.wait_async` (holding no thread)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self.queue: list[Ticket] = []
        self.changed = threading.Condition()

    def join(self) -> Ticket:
        """A place at the end of the queue."""
        ticket = Ticket(self)
        with self.changed:
            self.queue.append(ticket)
        return ticket

    def wait(self, poll: float = 1.0) -> Generator[int]:
        """Take a slot in this thread, yielding the place in the queue while waiting (see
        Ticket.wait); closing the generator while waiting leaves the queue."""
        ticket = self.join()
        taken = False
        try:
            yield from ticket.wait(poll)
            taken = True
        finally:
            if not taken:
                ticket.release()

    def _take(self, ticket: Ticket) -> bool:
        """Under the lock: take a slot if this ticket is first and one is free."""
        if not self.queue or self.queue[0] is not ticket or self.busy >= self.size:
            return False
        self.queue.pop(0)
        self.busy += 1
        ticket.holding = True
        self.changed.notify_all()
        return True

    def acquire(self) -> None:
        for _ in self.wait():
            pass

    def release(self) -> None:
        with self.changed:
            self.busy -= 1
            self.changed.notify_all()

    def __enter__(self) -> Slots:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Ticket:
    """One writer's turn: in the queue, then holding a slot, then released (once)."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.holding = False
        self.released = False

    def place(self) -> int:
        """0 when this ticket holds a slot (taking one if it is first and one is free), else its
        place in the queue (1: next)."""
        with self.slots.changed:
            if self.holding or self.slots._take(self):
                return 0
            return self.slots.queue.index(self) + 1

    def wait(self, poll: float = 1.0) -> Generator[int]:
        """Take a slot, blocking this thread. While waiting, yield the place at once and then
        every `poll` seconds, so a stream can tell the analyst and notice a browser that has gone."""
        while place := self.place():
            yield place
            with self.slots.changed:
                if not (self.holding or self.slots._take(self)):
                    self.slots.changed.wait(poll)

    async def wait_async(self, poll: float = 0.25, every: float = 15.0) -> AsyncGenerator[int]:
        """Take a slot without holding a thread: the event loop looks again every `poll` seconds.
        Yields the place when it changes (and every `every` seconds, which keeps a quiet
        connection open through proxies)."""
        last, said = 0, 0.0
        while place := self.place():
            now = time.monotonic()
            if place != last or now - said >= every:
                last, said = place, now
                yield place
            await asyncio.sleep(poll)

    def release(self) -> None:
        """Leave the queue, or give the slot back; a second call does nothing."""
        with self.slots.changed:
            if self.released:
                return
            self.released = True
            if self.holding:
                self.slots.busy -= 1
            elif self in self.slots.queue:
                self.slots.queue.remove(self)
            self.slots.changed.notify_all()


_load_lock = threading.Lock()
slots = Slots(settings.LLM_PARALLEL)  # held while a model writes; a further answer waits its turn
_model: LocalModel | None = None


def model_name() -> str:
    """The configured model's name (known before it is loaded)."""
    if settings.LLM_BASE_URL:
        return settings.LLM_SERVER_MODEL
    return Path(settings.LLM_MODEL_PATH).name


def model_sha256() -> str:
    """SHA-256 of the loaded model file ("" until it is loaded), for the audit record."""
    return _model.sha256 if _model is not None else ""


def get_model() -> LocalModel:
    global _model
    with _load_lock:
        if _model is None:
            _model = configured_model()
        return _model


def configured_model() -> LocalModel:
    """The model the settings name: a model server if REGQA_LLM_BASE_URL is set, else the GGUF
    file in this process."""
    if settings.LLM_BASE_URL:
        return ServerModel(settings.LLM_BASE_URL, settings.LLM_SERVER_MODEL, settings.LLM_API_KEY, settings.LLM_TIMEOUT)
    return LlamaCppModel(Path(settings.LLM_MODEL_PATH))


def get_model_if_loaded() -> LocalModel | None:
    return _model


def load(path: Path) -> LocalModel:
    """The process's model if it is that file, else that file loaded on its own (the synthetic
    questions' writer may be a smaller model than the one that answers)."""
    if Path(path) == Path(settings.LLM_MODEL_PATH):
        return get_model()
    return LlamaCppModel(Path(path))


def use_model(path: Path) -> None:
    """Switch the process to another GGUF file (the evaluation compares models in one run)."""
    global _model
    with _load_lock, slots:
        if isinstance(_model, LlamaCppModel):
            _model.close()
        _model = None
        settings.LLM_MODEL_PATH = Path(path)


def set_model(model: LocalModel | None) -> None:
    """Use `model` for every answer (tests and benchmarks that bring their own)."""
    global _model
    with _load_lock:
        _model = model


# ---------------------------------------------------------------------------------------------
# Reading the reply


class AnswerFieldStream:
    """Pulls the text of the "answer" field out of JSON that is still being written, so the
    analyst sees the answer appear word by word rather than raw JSON (jiter's partial parsing:
    an unfinished string counts as far as it goes)."""

    def __init__(self) -> None:
        self.raw = ""
        self.emitted = 0  # characters of decoded answer text already returned
        self.done = False

    def feed(self, piece: str) -> str:
        self.raw += piece
        if self.done:
            return ""
        try:
            data = jiter.from_json(self.raw.encode(), partial_mode="trailing-strings")
        except ValueError:
            return ""  # not JSON yet (an escape cut in half); the next piece completes it
        if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
            return ""
        decoded = data["answer"]
        # the field is finished once the parser has read past it (a later key, or the closing brace)
        self.done = list(data)[-1] != "answer" or self.raw.rstrip().endswith("}")
        new = decoded[self.emitted :]
        self.emitted = max(self.emitted, len(decoded))
        return new


def parse_model_output(raw: str, partial_answer: str) -> tuple[str, list[int], bool]:
    """(answer text, cited passage numbers, answer found) from the model's JSON, tolerating a
    reply cut off by the token limit (then the streamed answer text is kept)."""
    try:
        data = json.loads(raw)
        text = str(data.get("answer", "")).strip()
        cited = [int(n) for n in data.get("cited_passages", []) if str(n).isdigit()]
        found = bool(data.get("passages_state_answer", True))
    except (ValueError, AttributeError):
        text, cited, found = partial_answer.strip(), [], True
    inline = cited_numbers(text)
    if text and cited and not inline:
        text = cite(text, cited)
    return text, list(dict.fromkeys(inline or cited)), found
