"""The sidecar's own tables: scored rows, their true labels, and the monitors' evaluations.

They live in the payload database (``--payload-url``: SQLite by default, PostgreSQL when several
replicas share it), apart from the registry. Rows are written by the scoring workers (payloads,
feedback) and by the monitor (evaluations); the monitor reads windows of recent payloads with
their feedback, and the workers read the latest evaluation to say why a model is refused.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

payload = sa.Table(
    "mlgov_payload",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("ts", sa.BigInteger, nullable=False),  # epoch milliseconds
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("staging", sa.Boolean, nullable=False, default=False),
    sa.Column("features", sa.Text, nullable=False),  # one JSON object: the row as scored
    sa.Column("prediction", sa.Integer, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("replica", sa.String(128), nullable=True),  # which sidecar process answered: host, pid
    sa.Index("mlgov_payload_model_version", "model", "version", "seq"),
)

feedback = sa.Table(
    "mlgov_feedback",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("label", sa.Integer, nullable=False),
)

evaluation = sa.Table(
    "mlgov_monitor_evaluation",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("figures", sa.Text, nullable=False),  # JSON: {key: {value, threshold, comparison, verdict}}
    sa.Column("breaches", sa.Text, nullable=False),  # JSON list: [{monitor, key, value, threshold, comparison}]
    sa.Column("run_id", sa.String(64)),
    sa.Column("usability_action", sa.String(32)),  # "reject" when this evaluation turned usability red
    sa.Column("config_digest", sa.String(80)),
    sa.Index("mlgov_evaluation_model_version", "model", "version", "seq"),
)


# Columns added after the first release, to tables that may already exist: name -> DDL type.
ADDED_COLUMNS = {"mlgov_payload": {"replica": "VARCHAR(128)"}}


def create_all(engine: sa.Engine) -> None:
    """Create the sidecar's tables if they do not exist, and add the columns that later releases
    added to an older payload database (idempotent, safe across replicas)."""
    metadata.create_all(engine, checkfirst=True)
    inspector = sa.inspect(engine)
    for table, columns in ADDED_COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        for name, ddl in columns.items():
            if name not in have:
                try:
                    with engine.begin() as conn:
                        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
                except sa.exc.DBAPIError:  # another replica added it meanwhile
                    if name not in {c["name"] for c in sa.inspect(engine).get_columns(table)}:
                        raise
