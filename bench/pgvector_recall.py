"""pgvector against FAISS on the same embeddings: dense Recall@10 on a question set, overlap of
the two top-10 lists, and search time per question.

    DATABASE_URL=postgres://... REGQA_DATA_DIR=DIR .venv/bin/python bench/pgvector_recall.py \
        --questions ../shared/benchdata/obliqa/questions_dev.jsonl

The database is one that `import_passages` (or ingestion) filled on PostgreSQL, so its passages
carry their vectors in pgvector; FAISS is built in a temporary directory from the same stored
embeddings (what `index rebuild` does). Questions are embedded once and searched by both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from throwaway import setup_django_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--ef-search", type=int, default=200, help="HNSW candidates per search (the app's: 200)")
    args = parser.parse_args()
    setup_django_here()
    import numpy as np
    from django.db import connection

    from regqa.documents import embed
    from regqa.documents.index import PgVectorIndex, VectorIndex, live_chunks
    from regqa.qa.evaluate import read_questions

    assert connection.vendor == "postgresql", "DATABASE_URL must name the PostgreSQL database"
    questions = read_questions(args.questions)[: args.limit or None]
    external = dict(live_chunks().values_list("pk", "external_id"))
    pg = PgVectorIndex(ef_search=args.ef_search)
    faiss_index = VectorIndex(Path(tempfile.mkdtemp(prefix="regqa-faiss-")))
    rows = list(live_chunks().values_list("pk", "embedding"))
    faiss_index.rebuild([pk for pk, _ in rows], np.vstack([np.frombuffer(blob, dtype="float32") for _, blob in rows]))
    print(f"{len(pg)} passages in pgvector, {len(faiss_index)} in FAISS; {len(questions)} questions")
    vectors = embed.embed_passages([q.question for q in questions])  # the query side as retrieval embeds it
    pg.search(vectors[0], args.k)  # first query opens the connection and loads the index pages
    recall: dict[str, list[float]] = {"faiss": [], "pgvector": []}
    times: dict[str, list[float]] = {"faiss": [], "pgvector": []}
    overlap = []
    for question, vector in zip(questions, vectors, strict=True):
        gold = {str(g["passage_id"]) for g in question.gold if "passage_id" in g}
        found = {}
        for name, engine in (("faiss", faiss_index), ("pgvector", pg)):
            started = time.perf_counter()
            hits = engine.search(vector, args.k)
            times[name].append((time.perf_counter() - started) * 1000)
            found[name] = [chunk for chunk, _ in hits]
            recall[name].append(len(gold & {external[c] for c in found[name]}) / len(gold) if gold else 0.0)
        overlap.append(len(set(found["faiss"]) & set(found["pgvector"])) / args.k)
    for name in ("faiss", "pgvector"):
        ordered = sorted(times[name])
        print(
            f"{name:9s} Recall@{args.k} {statistics.mean(recall[name]):.4f}  search median "
            f"{statistics.median(ordered):.2f} ms, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.2f} ms"
        )
    print(f"top-{args.k} overlap pgvector/FAISS: {statistics.mean(overlap):.4f}")
    delta = statistics.mean(recall["pgvector"]) - statistics.mean(recall["faiss"])
    print(f"Recall@{args.k} difference pgvector - FAISS: {delta:+.4f}")


if __name__ == "__main__":
    main()
