"""The sidecar's own tables: scored rows, their true labels, and the monitors' evaluations.

They live in the payload database (``--payload-url``: SQLite by default, PostgreSQL when several
replicas share it), apart from the registry. Rows are written by the scoring workers (payloads,
feedback) and by the monitor (evaluations); the monitor reads windows of recent payloads with
their feedback, and the workers read the latest evaluation to say why a model is refused.

Every payload row names the caller who had it scored (``caller``; None in ``--no-auth``
development mode) and every label the person who gave it (``labeller``). A request id has at
most one *current* label: the row of ``mlgov_feedback`` whose ``superseded_by`` is NULL, held so
by a unique partial index (`CURRENT_LABEL_INDEX`), which makes two concurrent first labels for
one id fail in the database whatever process or replica wrote them. A correction never destroys
a label: the label it replaces keeps its row, marked ``superseded_by`` (the seq of the correcting
row) and ``superseded_at``; the correcting row names the label it replaces (``corrects``), who
corrected it (``labeller``), when (``ts``) and why (``reason``).

An older payload database, written while "the latest label wins", may hold several labels for
one id. `create_all` migrates it without losing any: every label but the latest of an id is
marked superseded by the latest (the label the monitor has been using all along), and then the
unique index is created. On a database without partial indexes (MySQL, MariaDB) the index is not
created: the writer's check in the same transaction still refuses a second label, but two
concurrent first labels for one id are not stopped there (a warning says so at start).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

log = logging.getLogger(__name__)
metadata = sa.MetaData()
_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")

payload = sa.Table(
    "mlgov_payload",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("ts", sa.BigInteger, nullable=False),  # epoch milliseconds
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("staging", sa.Boolean, nullable=False, default=False),
    sa.Column("features", sa.Text, nullable=False),  # one JSON object: the row as scored
    sa.Column("prediction", sa.Integer, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("replica", sa.String(128), nullable=True),  # which sidecar process answered: host, pid
    sa.Column("caller", sa.String(256), nullable=True),  # who had it scored (None: --no-auth)
    sa.Index("mlgov_payload_model_version", "model", "version", "seq"),
)

feedback = sa.Table(
    "mlgov_feedback",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("ts", sa.BigInteger, nullable=False),  # when this label was given (epoch ms)
    sa.Column("label", sa.Integer, nullable=False),
    sa.Column("labeller", sa.String(256), nullable=True),  # who gave it (None: --no-auth)
    sa.Column("superseded_by", sa.BigInteger, nullable=True),  # seq of the correction; NULL: current
    sa.Column("superseded_at", sa.BigInteger, nullable=True),  # when it was corrected (epoch ms)
    sa.Column("corrects", sa.BigInteger, nullable=True),  # on a correction: seq of the label it replaces
    sa.Column("reason", sa.Text, nullable=True),  # on a correction: why
)

evaluation = sa.Table(
    "mlgov_monitor_evaluation",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
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
    sa.Column("callers", sa.Text),  # JSON {caller: rows of the window}, "(anonymous)" for None
    sa.Column("labellers", sa.Text),  # JSON {labeller: labelled rows of the window}
    sa.Index("mlgov_evaluation_model_version", "model", "version", "seq"),
)

# Columns added after the first release, to tables that may already exist: name -> DDL type.
ADDED_COLUMNS = {
    "mlgov_payload": {"replica": "VARCHAR(128)", "caller": "VARCHAR(256)"},
    "mlgov_feedback": {"labeller": "VARCHAR(256)", "superseded_by": "BIGINT", "superseded_at": "BIGINT",
                       "corrects": "BIGINT", "reason": "TEXT"},
    "mlgov_monitor_evaluation": {"callers": "TEXT", "labellers": "TEXT"},
}

# At most one current label per request id (see the module docstring).
CURRENT_LABEL_INDEX = "mlgov_feedback_current_label"
PARTIAL_INDEX_DIALECTS = ("sqlite", "postgresql")

# Labels of an old database that a later label of the same id replaced ("the latest label
# wins"): marked superseded by the latest one, kept.
_SUPERSEDE_OLDER = sa.text(
    "UPDATE mlgov_feedback SET superseded_by = (SELECT MAX(l.seq) FROM mlgov_feedback l "
    "WHERE l.request_id = mlgov_feedback.request_id AND l.superseded_by IS NULL) "
    "WHERE superseded_by IS NULL AND seq < (SELECT MAX(l.seq) FROM mlgov_feedback l "
    "WHERE l.request_id = mlgov_feedback.request_id AND l.superseded_by IS NULL)"
)
_CREATE_CURRENT_INDEX = sa.text(
    f"CREATE UNIQUE INDEX IF NOT EXISTS {CURRENT_LABEL_INDEX} ON mlgov_feedback (request_id) "
    "WHERE superseded_by IS NULL"
)


def create_all(engine: sa.Engine) -> None:
    """Create the sidecar's tables if they do not exist, add the columns that later releases
    added to an older payload database, and hold one current label per request id (idempotent,
    safe across replicas)."""
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
    one_current_label(engine)


def has_current_label_index(engine: sa.Engine) -> bool:
    return CURRENT_LABEL_INDEX in {ix["name"] for ix in sa.inspect(engine).get_indexes("mlgov_feedback")}


def one_current_label(engine: sa.Engine, attempts: int = 5) -> bool:
    """Create the unique index on the current label of each request id, first marking the older
    labels of an id that has several as superseded by its latest (kept, not deleted); False where
    the database has no partial indexes."""
    if engine.dialect.name not in PARTIAL_INDEX_DIALECTS:
        log.warning("the payload database (%s) has no partial indexes: one label per request id is checked "
                    "by each writer, but two concurrent first labels for one id are not stopped by the database",
                    engine.dialect.name)
        return False
    if has_current_label_index(engine):
        return True
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":  # no label is written between the two statements
                    conn.execute(sa.text("LOCK TABLE mlgov_feedback IN SHARE ROW EXCLUSIVE MODE"))
                migrated = conn.execute(_SUPERSEDE_OLDER).rowcount
                conn.execute(_CREATE_CURRENT_INDEX)
            if migrated and migrated > 0:
                log.warning("payload database: %d older label(s) of request ids labelled more than once are now "
                            "marked superseded by the latest label of their id (kept)", migrated)
            return True
        except sa.exc.DBAPIError:
            # Another replica created the index meanwhile, or an older release wrote a second
            # label between the two statements (SQLite): look again, then try again.
            if has_current_label_index(engine):
                return True
            if attempt == attempts - 1:
                raise
    return True
