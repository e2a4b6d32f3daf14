"""Export and verify a 100,000-entry audit trail; report entries/s and peak memory.

    .venv/bin/python bench/audit_export.py [--entries 100000]

Uses a throwaway SQLite database. Entries are answer-sized (question, five passage snapshots,
prompt), chained and sealed exactly as `regqa.audit.log.record` chains and seals them, written in
bulk; then `--records` more are written one by one through `log.record` itself (each sealed and
checkpointed to the file outside the database), to time what an event costs the app.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

from throwaway import setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=2_000)
    args = parser.parse_args()
    setup_django("regqa-bench-audit-")
    from django.utils import timezone

    from regqa.audit import anchor, export, log
    from regqa.audit.models import AuditEvent, EventKind

    anchor.keyring()  # created before the first entry: every entry is sealed

    passage = {"document_title": "ADGM Rulebook", "page_start": 3, "score": 0.71, "text": "word " * 60}
    started = time.perf_counter()
    previous, batch = log.GENESIS, []
    for seq in range(1, args.entries + 1):
        event = AuditEvent(
            seq=seq,
            created_at=timezone.now(),
            kind="answer",
            actor=f"analyst{seq % 50}",
            role="Analysts",
            summary=f"Answered: question {seq}",
            prev_hash=previous,
            data={
                "question": f"What does rule {seq} require?",
                "passages": [passage] * 5,
                "answer": "It requires capital [1].",
                "prompt": [{"role": "user", "content": "x" * 1500}],
            },
        )
        event.hash = previous = log.compute_hash(event)
        event.key_id, event.mac = anchor.seal_entry(seq, event.hash)
        batch.append(event)
        if len(batch) == 5000:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    AuditEvent.objects.bulk_create(batch)
    print(f"generated {args.entries} entries in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    for n in range(args.records):
        log.record(EventKind.LOG_EXPORTED, f"event {n}", actor="bench", data={"passages": [passage] * 5})
    seconds = time.perf_counter() - started
    print(
        f"log.record: {args.records} entries one by one in {seconds:.1f} s ({seconds / args.records * 1000:.2f} ms "
        f"each: chained, sealed, committed, checkpointed)"
    )

    from django.core.paginator import Paginator

    for number in (1, args.entries // 100):
        started = time.perf_counter()
        page = Paginator(AuditEvent.objects.order_by("-seq"), 50).get_page(number)
        rows = len(list(page))
        print(
            f"trail page {number} of {page.paginator.num_pages}: {rows} rows in "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    qs, filters = export.filtered()
    head = export.manifest(qs, filters, "bench", "jsonl")
    size = 0
    with open(os.devnull, "w") as sink:
        for line in export.jsonl(qs, head):
            size += len(line)
            sink.write(line)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"export jsonl: {head['count']} entries, {size / 1e6:.0f} MB in {seconds:.1f} s "
        f"({head['count'] / seconds:,.0f} entries/s); peak Python allocations {peak / 1e6:.1f} MB; "
        f"process peak RSS grew {max(0, rss_after - rss_before) / 1024:.0f} MB"
    )
    started = time.perf_counter()
    result = log.verify()
    seconds = time.perf_counter() - started
    print(
        f"verify: {'OK' if result.ok else result.reason}, {result.checked} entries in {seconds:.1f} s "
        f"({result.checked / seconds:,.0f} entries/s)"
    )


if __name__ == "__main__":
    main()
