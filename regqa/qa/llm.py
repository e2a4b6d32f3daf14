"""The local language model behind one small interface, `LocalModel`.

Today the in-process llama.cpp model (`LlamaCppModel`) implements it; an OpenAI-compatible model
server will implement the same two calls. This module loads and runs models; it builds no prompt
(prompts.py) and decides nothing about answers (decision.py).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import jiter
import numpy as np
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

        yes, no = mass(("yes", "Yes", " yes", " Yes")), mass(("no", "No", " no", " No"))
        return yes / (yes + no) if yes + no > 0 else 0.5


# ---------------------------------------------------------------------------------------------
# The process's model: loaded once, used by one answer at a time.

_load_lock = threading.Lock()
generation_lock = threading.Lock()  # held while a model writes; a second answer waits for it
_model: LocalModel | None = None


def model_name() -> str:
    """The configured model's name (known before it is loaded)."""
    return Path(settings.LLM_MODEL_PATH).name


def model_sha256() -> str:
    """SHA-256 of the loaded model file ("" until it is loaded), for the audit record."""
    return _model.sha256 if _model is not None else ""


def get_model() -> LocalModel:
    global _model
    with _load_lock:
        if _model is None:
            _model = LlamaCppModel(Path(settings.LLM_MODEL_PATH))
        return _model


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
    with _load_lock, generation_lock:
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
