"""Retrieval bundles: a trained ranking written to disk with what it was trained on and the
cross-validated figures it reached, which one is active, and switching and rolling back.

A bundle's files are written before its row says "ready", and the switch is one transaction on
the rows (the previous active bundle becomes ready again), so a question is always ranked by one
whole bundle or by none. Every switch and rollback is an audit event.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind

from .adapter import QueryAdapter
from .encoder import VECTORS_FILE, TunedEncoder
from .models import RetrievalBundle
from .rank import Ranker


class BundleError(ValueError):
    """A bundle that cannot be activated or rolled back to; the message says why."""


def directory(bundle: RetrievalBundle) -> Path:
    return Path(settings.DATA_DIR) / "retrieval" / "bundles" / str(bundle.pk)


ADAPTER_FILE = "query_adapter.npy"
DECISION_FILE = "decision.json"  # the answer/decline decision trained on this bundle's ranking


def write(
    bundle: RetrievalBundle,
    ranker: Ranker,
    manifest: dict[str, Any],
    adapter: QueryAdapter | None = None,
    decision: dict[str, Any] | None = None,
    encoder: TunedEncoder | None = None,
) -> Path:
    """Write the bundle's files (into a temporary directory first, then renamed into place)."""
    final = directory(bundle)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    ranker.save(partial / "ranker.txt")
    if adapter is not None:
        adapter.save(partial / ADAPTER_FILE)
    if decision is not None:
        (partial / DECISION_FILE).write_text(json.dumps(decision, indent=1))
    if encoder is not None:
        encoder.save(partial)
    (partial / "bundle.json").write_text(json.dumps(manifest, indent=1, default=str))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def active() -> RetrievalBundle | None:
    return RetrievalBundle.objects.filter(status=RetrievalBundle.Status.ACTIVE).first()


class Learned(NamedTuple):
    bundle: RetrievalBundle
    ranker: Ranker
    manifest: dict[str, Any]
    adapter: QueryAdapter | None  # the embedder adapted on the query side, if the bundle has one
    decision: dict[str, Any] | None  # its answer/decline decision model, as decision_model reads it
    encoder: TunedEncoder | None  # its fine-tuned embedder with its own passage vectors, if it has one


_cache_lock = threading.Lock()
_cache: dict[tuple, Learned] = {}


def active_ranker() -> Learned | None:
    """The active bundle with its ranker, manifest, adapter and decision model (loaded once per
    process and bundle), or None."""
    bundle = active()
    if bundle is None:
        return None
    folder = directory(bundle)
    vectors = folder / VECTORS_FILE  # replaced when the worker embeds passages added since (encoder.refresh)
    stamp = vectors.stat().st_mtime_ns if vectors.is_file() else 0
    key = (bundle.pk, bundle.created_at.isoformat(), stamp)  # a new database may reuse a pk for another bundle
    with _cache_lock:
        if key not in _cache:
            for old in [k for k in _cache if k[:2] == key[:2]]:
                del _cache[old]
            adapter = QueryAdapter.load(folder / ADAPTER_FILE) if (folder / ADAPTER_FILE).is_file() else None
            manifest = json.loads((folder / "bundle.json").read_text())
            decision = json.loads((folder / DECISION_FILE).read_text()) if (folder / DECISION_FILE).is_file() else None
            ranker = Ranker.load(folder / "ranker.txt")
            _cache[key] = Learned(bundle, ranker, manifest, adapter, decision, TunedEncoder.load(folder))
        return _cache[key]._replace(bundle=bundle)


_refresh_asked: dict[tuple, tuple] = {}  # bundle -> the library version it was last checked against


def refresh_when_behind(learned: Learned, lib: Any) -> None:
    """Queue the embedding, with the bundle's fine-tuned embedder, of the passages its copy of the
    vectors lacks (documents added since it was trained): asked once per library version and process."""
    if learned.encoder is None:
        return
    key = (learned.bundle.pk, learned.bundle.created_at.isoformat())
    if _refresh_asked.get(key) == lib.version:
        return
    _refresh_asked[key] = lib.version
    if learned.encoder.missing(lib.ids.tolist()):
        from . import tasks  # tasks imports training, which imports this module

        pk = learned.bundle.pk
        transaction.on_commit(lambda: tasks.refresh_encoder.enqueue(pk))


def score(figures: dict[str, Any], method: str = "reranker") -> float:
    """One number to compare rankings by: cross-validated mean Recall@k + MAP@k."""
    k = figures.get("k", 10)
    block = figures.get(method) or {}
    return sum((block.get(f"{m}@{k}") or {}).get("mean", 0.0) for m in ("recall", "map"))


def beats_active(figures: dict[str, Any]) -> tuple[bool, str]:
    """Whether a new bundle's held-out figures beat what answers questions now: the active bundle's
    own cross-validated figures, or, with none active, the untrained ranking measured in the same run."""
    new = score(figures)
    current = active()
    if current is not None:
        old = score(current.figures)
        return new > old, f"R@k + MAP@k {new:.4f} against {old:.4f} of the active {current.label}"
    untrained = score(figures, "rrf")
    return new > untrained, f"R@k + MAP@k {new:.4f} against {untrained:.4f} of the untrained ranking"


def activate(bundle: RetrievalBundle, *, user=None, actor: str = "", reason: str = "") -> None:
    if bundle.status not in (RetrievalBundle.Status.READY, RetrievalBundle.Status.REJECTED):
        raise BundleError(
            f"{bundle.label} is {bundle.get_status_display().lower()}: only a trained bundle can be activated."
        )
    if not (directory(bundle) / "ranker.txt").is_file():
        raise BundleError(f"The files of {bundle.label} are missing from {directory(bundle)}.")
    with transaction.atomic():
        previous = active()
        RetrievalBundle.objects.filter(status=RetrievalBundle.Status.ACTIVE).update(status=RetrievalBundle.Status.READY)
        RetrievalBundle.objects.filter(pk=bundle.pk).update(
            status=RetrievalBundle.Status.ACTIVE, activated_at=timezone.now(), replaced=previous
        )
        bundle.refresh_from_db()
        audit_log.record(
            EventKind.RETRIEVAL_ACTIVATED,
            f"Retrieval {bundle.label} activated" + (f" (was {previous.label})" if previous else ""),
            user=user,
            actor=actor,
            data={"bundle": bundle.pk, "previous": previous.pk if previous else None, "reason": reason,
                  "figures": {k: bundle.figures.get(k) for k in ("k", "folds", "questions", "reranker", "rrf")}},
        )  # fmt: skip


def rollback(*, user=None, actor: str = "") -> RetrievalBundle | None:
    """Make the bundle that was active when the current one was activated active again (or none,
    if the untrained ranking was, or that bundle is gone). Returns the bundle now active."""
    with transaction.atomic():
        current = active()
        if current is None:
            raise BundleError("No retrieval bundle is active: there is nothing to roll back.")
        earlier = (
            RetrievalBundle.objects.filter(pk=current.replaced_id, status=RetrievalBundle.Status.READY).first()
            if current.replaced_id is not None
            else None
        )
        RetrievalBundle.objects.filter(pk=current.pk).update(status=RetrievalBundle.Status.READY)
        if earlier is not None:
            RetrievalBundle.objects.filter(pk=earlier.pk).update(status=RetrievalBundle.Status.ACTIVE)
        audit_log.record(
            EventKind.RETRIEVAL_ROLLED_BACK,
            f"Retrieval rolled back from {current.label} to " + (earlier.label if earlier else "the untrained ranking"),
            user=user,
            actor=actor,
            data={"from": current.pk, "to": earlier.pk if earlier else None},
        )
    return active()
