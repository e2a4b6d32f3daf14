"""Split a question file in two halves by a hash of the question id (deterministic).

    python bench/split_questions.py questions.jsonl OUT_DIR

Writes OUT_DIR/tune.jsonl and OUT_DIR/holdout.jsonl. Tune settings on `tune` only; report
figures on `holdout` (and on the whole file for comparison with published numbers).
"""

import hashlib
import json
import sys
from pathlib import Path


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    halves = {"tune": [], "holdout": []}
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid = json.loads(line)["qid"]
            half = "tune" if int(hashlib.sha256(qid.encode()).hexdigest(), 16) % 2 == 0 else "holdout"
            halves[half].append(line)
    for name, lines in halves.items():
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(lines)} questions -> {out / f'{name}.jsonl'}")


if __name__ == "__main__":
    main()
