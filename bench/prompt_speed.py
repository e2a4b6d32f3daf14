"""Prompt-processing speed of a GGUF model under llama.cpp options (the main cost of time to
first token on 2 cores). Evaluates the same 500-token prompt three times per option set and prints
the best rate. A requantized copy can be measured too (`--requantize q4_0` writes one to /tmp).

    .venv/bin/python bench/prompt_speed.py [--model PATH] [--requantize q4_0|q8_0]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = Path.home() / ".cache/regqa/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
OPTIONS = {
    "default": {},
    "flash attention": {"flash_attn": True},
    "n_ubatch 128": {"n_batch": 512, "n_ubatch": 128},
    "n_batch/n_ubatch 1024": {"n_batch": 1024, "n_ubatch": 1024},
    "flash attention, q8_0 KV cache": {"flash_attn": True, "type_k": 8, "type_v": 8},
}
TEXT = " ".join(
    ["The member bank shall report each extension of credit to an executive officer in the quarterly report."] * 30
)


def requantize(src: Path, kind: str) -> Path:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[kind]
    params.allow_requantize = True
    params.nthread = 2
    dst = Path(tempfile.gettempdir()) / f"{src.stem}-{kind}.gguf"
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"requantizing {src} failed")
    return dst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=Path(os.environ.get("REGQA_LLM_MODEL", DEFAULT_MODEL)))
    parser.add_argument("--requantize", choices=["q4_0", "q8_0"])
    args = parser.parse_args()
    from llama_cpp import Llama

    model = requantize(args.model, args.requantize) if args.requantize else args.model
    options = {"default": {}} if args.requantize else OPTIONS
    for name, extra in options.items():
        llm = Llama(model_path=str(model), n_ctx=4096, n_threads=2, n_threads_batch=2, verbose=False, **extra)
        tokens = llm.tokenize(TEXT.encode())[:500]
        times = []
        for _ in range(3):
            llm.reset()
            started = time.perf_counter()
            llm.eval(tokens)
            times.append(time.perf_counter() - started)
        best = min(times)
        print(f"{model.name:42} {name:32} {len(tokens)} tokens  best {best:.2f} s  {len(tokens) / best:.0f} tok/s")
        llm.close()
    if args.requantize:
        model.unlink()


if __name__ == "__main__":
    main()
