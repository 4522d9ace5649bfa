"""Governance tables kept in the registry's own database, beside MLflow's tables.

SQLAlchemy Core on a metadata of our own: created idempotently when the governed store starts,
so the same statements run on SQLite and PostgreSQL (and any engine MLflow's registry supports).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

inventory = sa.Table(
    "mlgov_inventory",
    metadata,
    # AUTOINCREMENT on SQLite so an id is never reused: inventory ids are monotonic and unique.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sqlite_autoincrement=True,
)

roles = sa.Table(
    "mlgov_roles",
    metadata,
    sa.Column("username", sa.String(256), primary_key=True),
    sa.Column("role", sa.String(64), primary_key=True),
    sa.Column("granted_by", sa.String(256), nullable=False),
    sa.Column("granted_at", sa.BigInteger, nullable=False),
)

audit = sa.Table(
    "mlgov_audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("role", sa.String(64), nullable=True),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("from_stage", sa.String(64), nullable=True),
    sa.Column("to_stage", sa.String(64), nullable=True),
    sa.Column("fields", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("mlgov_audit_model", "model"),
)

# One row: the seq and hash of the newest audit row, so deleting the tail is detected too.
audit_head = sa.Table(
    "mlgov_audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


# Failed sign-ins to the governance server, shared by its workers: what a lock-out counts.
signin_failures = sa.Table(
    "mlgov_signin_failure",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("username", sa.String(256), nullable=True),
    sa.Column("address", sa.String(64), nullable=True),
    sa.Index("ix_mlgov_signin_failure_username", "username", "ts"),
    sa.Index("ix_mlgov_signin_failure_address", "address", "ts"),
)


def create_all(engine: sa.engine.Engine) -> None:
    """Create the governance tables and the audit head if missing (safe to call concurrently)."""
    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        # Another process created them between the check and the CREATE: check again.
        metadata.create_all(engine, checkfirst=True)
    try:
        with engine.begin() as conn:
            if conn.execute(sa.select(audit_head.c.id).where(audit_head.c.id == 1)).first() is None:
                conn.execute(audit_head.insert().values(id=1, seq=0, hash="0" * 64))
    except sa.exc.IntegrityError:
        pass  # another process created it first
