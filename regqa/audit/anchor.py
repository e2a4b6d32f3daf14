"""Anchor the audit chain to what the database administrator does not hold.

The hash chain (log.py) shows a change to one entry, but whoever can write to the database can
also delete the newest entries, or rewrite the whole chain and recompute every hash: the
algorithm is public. Two things outside the database make both detectable:

- **Seals.** Every entry carries an HMAC-SHA256 of its hash under a secret key kept in a key
  file (`REGQA_AUDIT_KEY_FILE`), never in the database, the logs or the exports. A recomputed
  chain cannot be sealed again without the key. The key file is a keyring: rotating adds a key
  and new entries use it, while older entries still verify under the key they name.
- **Checkpoints.** The chain head (sequence number and hash), sealed the same way, is appended
  to a file outside the database (`REGQA_AUDIT_CHECKPOINT_FILE`) every
  `REGQA_AUDIT_CHECKPOINT_EVERY` entries and on every export (the export's manifest carries it).
  Entries deleted after a checkpoint, or a chain that no longer holds a checkpointed hash, are
  reported by `audit verify`.

The keyring records the first sequence number it sealed: entries before it (written before
anchoring existed) are checked by their hashes only, entries from it on must carry a valid seal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone


class AuditKeyError(Exception):
    """The key file cannot be read or written; the message says why."""


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]  # key id -> secret
    current: str  # the id new entries are sealed with
    sealed_from: int  # the first sequence number sealed (earlier entries predate anchoring)


_lock = threading.Lock()
_cached: tuple[str, float, Keyring] | None = None


def key_path() -> Path:
    return Path(settings.AUDIT_KEY_FILE)


def checkpoint_path() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_FILE)


def _write_keyring(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=1)
    os.replace(partial, path)


def create_keyring(next_seq: int) -> Path:
    """Write a new key file (only if there is none): one key, sealing from `next_seq` on."""
    path = key_path()
    if path.exists():
        return path
    key_id = "k1"
    _write_keyring(
        path,
        {
            "sealed_from": next_seq,
            "current": key_id,
            "keys": [{"id": key_id, "secret": secrets.token_hex(32), "created": timezone.now().isoformat()}],
        },
    )
    return path


def rotate() -> str:
    """Add a new key and seal new entries with it; older keys stay to verify older entries."""
    ring = keyring()
    path = key_path()
    data = json.loads(path.read_text())
    key_id = f"k{len(ring.keys) + 1}"
    while key_id in ring.keys:
        key_id += "x"
    data["keys"].append({"id": key_id, "secret": secrets.token_hex(32), "created": timezone.now().isoformat()})
    data["current"] = key_id
    _write_keyring(path, data)
    return key_id


def keyring() -> Keyring:
    """The key file, read once per change of its modification time. Created on first use (the
    first entry it seals is the next one written) when it does not exist yet."""
    global _cached
    path = key_path()
    with _lock:
        if not path.exists():
            from .models import AuditEvent  # the chain head, to know where sealing starts

            last = AuditEvent.objects.order_by("-seq").only("seq").first()
            create_keyring((last.seq + 1) if last else 1)
        stamp = path.stat().st_mtime
        if _cached is None or _cached[0] != str(path) or _cached[1] != stamp:
            try:
                data = json.loads(path.read_text())
                ring = Keyring(
                    keys={k["id"]: bytes.fromhex(k["secret"]) for k in data["keys"]},
                    current=str(data["current"]),
                    sealed_from=int(data["sealed_from"]),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise AuditKeyError(f"The audit key file {path} cannot be read: {exc}") from exc
            if ring.current not in ring.keys:
                raise AuditKeyError(f"The audit key file {path} names a current key it does not hold.")
            _cached = (str(path), stamp, ring)
        return _cached[2]


def seal(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def entry_message(seq: int, entry_hash: str) -> str:
    return f"entry:{seq}:{entry_hash}"


def checkpoint_message(seq: int, entry_hash: str, at: str) -> str:
    return f"checkpoint:{seq}:{entry_hash}:{at}"


def seal_entry(seq: int, entry_hash: str) -> tuple[str, str]:
    """(key id, MAC) for a new entry."""
    ring = keyring()
    return ring.current, seal(ring.keys[ring.current], entry_message(seq, entry_hash))


def write_checkpoint(seq: int, entry_hash: str) -> dict[str, Any]:
    """Append a sealed checkpoint of the chain head to the checkpoint file (one JSON line; a
    line this short is written in one piece by O_APPEND, so concurrent writers never interleave)."""
    ring = keyring()
    at = timezone.now().isoformat()
    point = {
        "seq": seq,
        "hash": entry_hash,
        "at": at,
        "key_id": ring.current,
        "mac": seal(ring.keys[ring.current], checkpoint_message(seq, entry_hash, at)),
    }
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(point) + "\n").encode())
    finally:
        os.close(fd)
    return point


def checkpoint_head() -> dict[str, Any] | None:
    """A checkpoint of the newest entry now (None: the trail is empty)."""
    from .models import AuditEvent

    last = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
    return write_checkpoint(last.seq, last.hash) if last else None


def checkpoints() -> tuple[list[dict[str, Any]], list[str]]:
    """The genuine checkpoints in the file, and a problem for each line that is not one."""
    path = checkpoint_path()
    if not path.exists():
        return [], []
    ring = keyring()
    good, problems = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            point = json.loads(line)
            key = ring.keys.get(point["key_id"])
            genuine = key is not None and hmac.compare_digest(
                point["mac"], seal(key, checkpoint_message(int(point["seq"]), point["hash"], point["at"]))
            )
        except (ValueError, KeyError, TypeError):
            genuine = False
        if genuine:
            good.append(point)
        else:
            problems.append(f"checkpoint line {number} is not genuine (its seal does not match any key)")
    return good, problems


def entry_problem(seq: int, entry_hash: str, key_id: str | None, mac: str | None) -> str:
    """Why an entry's seal fails ("" when it holds, or when the entry predates sealing)."""
    ring = keyring()
    if seq < ring.sealed_from:
        return ""
    if not mac or not key_id:
        return f"entry #{seq} carries no seal: it was written or rewritten without the audit key"
    key = ring.keys.get(key_id)
    if key is None:
        return f"entry #{seq} is sealed with key {key_id}, which the key file does not hold"
    if not hmac.compare_digest(mac, seal(key, entry_message(seq, entry_hash))):
        return f"entry #{seq} was rewritten: its seal does not match (the chain was recomputed without the audit key)"
    return ""
