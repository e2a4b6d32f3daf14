"""Memory of the in-process BM25 index over the passages of a data directory (tracemalloc, which
numpy reports to): what it holds after building, and its peak while building.

    REGQA_DATA_DIR=DIR [DATABASE_URL=...] .venv/bin/python bench/bm25_memory.py
"""

from __future__ import annotations

import tracemalloc

from throwaway import setup_django_here


def main() -> None:
    setup_django_here()
    from regqa.documents import lexical
    from regqa.documents.index import live_chunks

    passages = live_chunks().count()
    tracemalloc.start()
    lexical.get_lexical_index().search("capital requirements", 5)
    held, peak = tracemalloc.get_traced_memory()
    print(f"{passages} passages: BM25 index holds {held / 1e6:.1f} MB (peak while building {peak / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
