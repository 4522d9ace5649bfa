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

# A user's notification contact (`mlflow_governance.notifications.people`): a mail address (sent through
# MLGOV_SMTP_URL) or an Apprise URL of their own (Slack, Teams, a JSON webhook), one or the other;
# beside the role grants so the local CLI and every server worker read the same. ``created_at``:
# the user gets the events committed from then on (as a webhook gets those after its creation).
contacts = sa.Table(
    "mlgov_contact",
    metadata,
    sa.Column("username", sa.String(256), primary_key=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("set_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
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


# One row of counters the governance server's workers read once per request
# (`mlflow_governance.server.auth_state`): a worker trusts what it remembered of a password check,
# a lock-out check or MLflow's permission store only while the counter it depends on is unchanged.
auth_counters = sa.Table(
    "mlgov_auth_counters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("credentials", sa.BigInteger, nullable=False),  # a user's password, admin flag or existence
    sa.Column("grants", sa.BigInteger, nullable=False),  # any write to MLflow's auth store
    sa.Column("failures", sa.BigInteger, nullable=False),  # a failed sign-in (the lock-out)
)


# The governance events (`mlflow_governance.core.events`): an outbox written in the same transaction as
# the change it describes, so a row exists exactly when the change committed. ``seq`` follows the
# commit order (governance writers are serialized by the audit head's lock); ``fanned_out`` turns
# true once the deliverer has made one `event_deliveries` row per target the event goes to.
events = sa.Table(
    "mlgov_event",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("stage", sa.String(64), nullable=True),
    sa.Column("waiting_for", sa.String(64), nullable=True),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("audit_seq", sa.Integer, nullable=True),
    # MLflow's webhook event ("model_version_tag.set", ...) and its ``data`` payload (JSON), or NULL
    # when MLflow has no event for this change (a registered model's tags).
    sa.Column("mlflow_event", sa.String(64), nullable=True),
    sa.Column("mlflow_payload", sa.Text, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),  # the governance event (JSON), for every channel
    sa.Column("fanned_out", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Index("ix_mlgov_event_fanned_out", "fanned_out", "seq"),
    sa.Index("ix_mlgov_event_model", "model", "seq"),
    sqlite_autoincrement=True,
)

# One row per (event, target): ``sink`` names the kind of receiver (``mlflow-webhook``, or
# ``person`` for a user's notification), ``target`` the receiver (a webhook id, a user name). A row is ``pending`` until a
# 2xx (``delivered``) or until its target is gone or disabled (``skipped``); ``claimed_until`` is
# the lease of the worker sending it, so two workers never send the same row at once.
event_deliveries = sa.Table(
    "mlgov_event_delivery",
    metadata,
    sa.Column("event_seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sink", sa.String(32), primary_key=True),
    sa.Column("target", sa.String(256), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("delivery_id", sa.String(64), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Column("claimed_until", sa.BigInteger, nullable=True),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.BigInteger, nullable=True),
    sa.Index("ix_mlgov_event_delivery_pending", "state", "sink", "target", "event_seq"),
)


def create_all(engine: sa.engine.Engine) -> None:
    """Create the governance tables, the audit head and the auth counters if missing (safe to call concurrently)."""
    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        # Another process created them between the check and the CREATE: check again.
        metadata.create_all(engine, checkfirst=True)
    for table, row in ((audit_head, {"seq": 0, "hash": "0" * 64}),
                       (auth_counters, {"credentials": 0, "grants": 0, "failures": 0})):
        try:
            with engine.begin() as conn:
                if conn.execute(sa.select(table.c.id).where(table.c.id == 1)).first() is None:
                    conn.execute(table.insert().values(id=1, **row))
        except sa.exc.IntegrityError:
            pass  # another process created it first
