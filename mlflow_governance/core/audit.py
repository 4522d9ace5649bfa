"""The tamper-evident audit trail: an append-only table whose rows are hash-chained.

Each row's hash covers its content, its sequence number and the previous row's hash; a head
row holds the newest seq and hash. `verify` names the first edited, deleted or reordered row.
Nothing in the package updates or deletes audit rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlflow_governance.core import config
from mlflow_governance.core.schema import audit, audit_head

GENESIS = "0" * 64
HASHED_COLUMNS = (
    "seq",
    "ts",
    "actor",
    "role",
    "model",
    "version",
    "action",
    "from_stage",
    "to_stage",
    "fields",
    "comment",
    "outcome",
    "reason",
)


class StaleAuditHead(Exception):
    """Another writer appended first; the caller's transaction must be retried."""


def lock(session: Session) -> None:
    """Serialize governance writers: take the head row's write lock before reading any state.

    A no-op UPDATE takes a row lock on PostgreSQL/MySQL and the database write lock on SQLite,
    so a transaction that reads a stage and then moves it cannot interleave with another one.
    """
    session.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=audit_head.c.seq))


def row_hash(row: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 over the canonical JSON of the hashed columns and the previous hash.

    With ``MLGOV_AUDIT_KEY`` set (kept outside the database, the same for every writer) it is an
    HMAC-SHA256, so someone who can write the database but lacks the key cannot re-chain edits.
    """
    body = {c: row.get(c) for c in HASHED_COLUMNS}
    payload = json.dumps([body, prev_hash], sort_keys=True, separators=(",", ":"), default=str).encode()
    key = config.audit_key()
    if key:
        return hmac.new(key.encode(), payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    outcome: str,
    role: str | None = None,
    model: str | None = None,
    version: int | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    fields: dict[str, str] | None = None,
    comment: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Append one row inside ``session``'s transaction; raises `StaleAuditHead` on a race."""
    head = session.execute(sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
    prev_seq, prev_hash = (head.seq, head.hash) if head else (0, GENESIS)
    row = {
        "seq": prev_seq + 1,
        "ts": int(time.time() * 1000),
        "actor": actor,
        "role": role,
        "model": model,
        "version": int(version) if version is not None else None,
        "action": action,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "fields": json.dumps(fields or {}, sort_keys=True),
        "comment": comment,
        "outcome": outcome,
        "reason": reason,
    }
    row["prev_hash"] = prev_hash
    row["hash"] = row_hash(row, prev_hash)
    if head is None:
        raise StaleAuditHead("the audit head row is missing; the governed store creates it on start")
    result = session.execute(
        audit_head.update()
        .where(audit_head.c.id == 1, audit_head.c.seq == prev_seq)
        .values(seq=row["seq"], hash=row["hash"])
    )
    if result.rowcount != 1:
        raise StaleAuditHead()
    session.execute(audit.insert().values(**row))
    return row


def rows(session: Session, model: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Audit rows in order (optionally one model's, optionally the newest ``limit``)."""
    query = sa.select(audit)
    if model is not None:
        query = query.where(audit.c.model == model)
    if limit:
        query = query.order_by(audit.c.seq.desc()).limit(limit)
        found = [dict(r._mapping) for r in session.execute(query)]
        return list(reversed(found))
    return [dict(r._mapping) for r in session.execute(query.order_by(audit.c.seq))]


@dataclass(frozen=True)
class Verdict:
    """Outcome of `verify`: ``ok`` and, when not, the first bad row and what is wrong."""

    ok: bool
    rows: int
    bad_seq: int | None = None
    problem: str | None = None


def head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest row: keep it outside the database to anchor the chain."""
    row = session.execute(sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


def verify(session: Session, expect: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain from the first row; report the first row that breaks it.

    ``expect`` is a (seq, hash) recorded earlier with `head`: the row must still carry that hash,
    which catches a chain rewritten wholesale by someone who could recompute every hash.
    """
    found = [dict(r._mapping) for r in session.execute(sa.select(audit).order_by(audit.c.seq))]
    hashes = {r["hash"]: r["seq"] for r in found}
    expected_prev, expected_seq = GENESIS, 1
    for r in found:
        seq = r["seq"]
        if r["prev_hash"] != expected_prev:
            if r["prev_hash"] in hashes and hashes[r["prev_hash"]] != expected_seq - 1:
                problem = (
                    f"row {seq} is out of order: it follows row {hashes[r['prev_hash']]}, "
                    f"not row {expected_seq - 1}"
                )
            elif seq != expected_seq:
                problem = f"row(s) {expected_seq}..{seq - 1} deleted: row {seq} follows row {expected_seq - 1}"
            else:
                problem = f"row {seq} does not link to row {seq - 1}: a row was deleted or replaced"
            return Verdict(False, len(found), seq, problem)
        if seq != expected_seq:
            return Verdict(False, len(found), seq, f"row {seq} has the wrong sequence number (expected {expected_seq})")
        if row_hash(r, r["prev_hash"]) != r["hash"]:
            return Verdict(False, len(found), seq, f"row {seq} was edited: its content does not match its hash")
        expected_prev, expected_seq = r["hash"], seq + 1
    head = session.execute(sa.select(audit_head).where(audit_head.c.id == 1)).first()
    last_seq = expected_seq - 1
    if head is None:
        return Verdict(False, len(found), last_seq or None, "the audit head row is missing")
    if head.seq != last_seq or head.hash != expected_prev:
        if head.seq > last_seq:
            problem = f"row(s) {last_seq + 1}..{head.seq} deleted from the end of the trail"
        else:
            problem = f"the audit head (row {head.seq}) does not match the last row {last_seq}"
        return Verdict(False, len(found), last_seq + 1, problem)
    if expect is not None:
        seq, digest = expect
        anchored = next((r for r in found if r["seq"] == seq), None)
        if anchored is None or anchored["hash"] != digest:
            return Verdict(False, len(found), seq, f"row {seq} does not carry the recorded hash {digest[:12]}...: "
                                                   "the trail was rewritten since it was anchored")
    return Verdict(True, len(found))
