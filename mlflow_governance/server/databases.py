"""The governance server's databases: which they are, a cheap reachability probe, one migration.

A governance server uses up to three databases, usually one and the same: the governed registry
(``--registry-store-uri governed-...``; MLflow's registry tables and the ``mlgov_`` tables), the
tracking store (``--backend-store-uri``, by default the registry's database) and MLflow's
basic-auth user database (``MLGOV_AUTH_DATABASE_URI``, by default the registry's database).
`server_databases` lists the distinct ones, each named by the first service it holds ("registry
database", "tracking database", "user database"): that name, never a URL or a driver's message,
is what clients are told when one is down (`mlflow_governance.server.outage`).

`probe` answers whether a database takes a ``SELECT 1`` within a few seconds, on a connection of
its own (no pool, a connect and a statement timeout), so a readiness check never waits on the
server's pools nor leaves a connection behind.

`migrate` brings the registry and the user database to MLflow's current schema in the process
that starts the server, before ``mlflow server`` forks its workers. Why: every uvicorn worker
builds the governance app, and MLflow's basic-auth ``create_app`` runs the auth database's Alembic
migrations in each of them (`mlflow.server.auth.sqlalchemy_store.SqlAlchemyStore.init_db` ->
``migrate_if_needed``: "not at head? upgrade"). On a fresh database two workers both find no
revision and both run the initial migration; the loser dies on ``table users already exists``
(SQLite) or a duplicate ``alembic_version_auth`` type (PostgreSQL) and uvicorn restarts it.
``mlflow server`` itself bootstraps the auth database before forking only for its own
``basic-auth`` app; it does migrate the tracking and registry stores before forking (their stores
are built in the CLI process), so once the user database is at head too, each worker only finds
everything current.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from mlflow_governance.core import environment_variables as ev
from mlflow_governance.safe.urls import scrub

_log = logging.getLogger(__name__)

REGISTRY, TRACKING, USERS = "registry database", "tracking database", "user database"
#: Seconds a probe waits to connect, and for its statement.
PROBE_TIMEOUT = 3
DATABASE_BACKENDS = ("sqlite", "postgresql", "mysql", "mssql")
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def auth_database_uri() -> str:
    """The user database's URL: MLGOV_AUTH_DATABASE_URI, else the governed registry's database."""
    explicit = ev.MLGOV_AUTH_DATABASE_URI.get()
    if explicit:
        return explicit
    from mlflow.server.constants import BACKEND_STORE_URI_ENV_VAR, REGISTRY_STORE_URI_ENV_VAR

    registry = (
        os.environ.get(REGISTRY_STORE_URI_ENV_VAR)  # set by `mlflow server` for its workers
        or ev.MLFLOW_REGISTRY_STORE_URI.get()  # the configuration file, before the server starts
        or os.environ.get(BACKEND_STORE_URI_ENV_VAR)
        or ""
    )
    if registry.startswith("governed-"):
        return registry.removeprefix("governed-")
    raise MlflowException(
        "the governance app needs --registry-store-uri governed-sqlite:///... or governed-postgresql://... "
        f"(or {ev.MLGOV_AUTH_DATABASE_URI} for the user database)",
        error_code=INVALID_PARAMETER_VALUE,
    )


def governed_store():
    """The server's registry store; it must be the governed one."""
    from mlflow.server.handlers import _get_model_registry_store

    from mlflow_governance.core.store import GovernedSqlAlchemyStore

    store = _get_model_registry_store()
    if not isinstance(store, GovernedSqlAlchemyStore):
        raise MlflowException(
            "this server's registry is not governed: start it with --registry-store-uri governed-...",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return store


@dataclass(frozen=True)
class Database:
    """One database of the server: the service it is named after, its URL (with any password:
    never shown; `where` is the printable form) and the settings that name it."""

    service: str
    url: str
    settings: tuple[str, ...]

    @property
    def backend(self) -> str:
        return sa.engine.make_url(self.url).get_backend_name()

    @property
    def where(self) -> str:
        """The URL without its password or secret query values, for the operator's messages and the log."""
        from mlflow_governance.safe.urls import mask_url

        return mask_url(self.url)


def _canonical(url: str) -> str | None:
    """The URL as SQLAlchemy renders it (so equal databases compare equal), or None when ``url``
    is not a database (a file store, an http server)."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None
    backend = parsed.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        return None
    if backend != "sqlite":  # postgresql+psycopg://h/db and postgresql://h:5432/db are one database
        parsed = parsed.set(drivername=backend, port=parsed.port or DEFAULT_PORTS.get(backend))
    return parsed.render_as_string(hide_password=False)


def server_databases(registry_uri: str, backend_uri: str | None, auth_uri: str) -> list[Database]:
    """The distinct databases of a server with these store URIs, in the order registry, tracking,
    users; one used for several services is listed once, under the first (with every setting).
    A registry or tracking store that is no database (a file store) is left out; the user
    database must be one (INVALID_PARAMETER_VALUE naming the setting)."""
    from mlflow_governance.core.store import SCHEME_PREFIX

    registry = (registry_uri or "").removeprefix(SCHEME_PREFIX)
    candidates = (
        (REGISTRY, registry, "MLFLOW_REGISTRY_STORE_URI"),
        (TRACKING, backend_uri or registry, "MLFLOW_BACKEND_STORE_URI"),
        (USERS, auth_uri, "MLGOV_AUTH_DATABASE_URI"),
    )
    found: dict[str, Database] = {}
    for service, url, setting in candidates:
        key = _canonical(url)
        if key is None and service == USERS:
            scheme = url.partition(":")[0] if ":" in url else "no scheme"
            raise MlflowException(
                f"{setting} must name a database (sqlite:///PATH, postgresql://HOST/DB, ...), not a {scheme!r} URI",
                error_code=INVALID_PARAMETER_VALUE,
            )
        if key is None:
            continue  # e.g. a file tracking store: not a database, nothing to probe or name
        if key in found:
            db = found[key]
            found[key] = Database(db.service, db.url, (*db.settings, setting))
        else:
            found[key] = Database(service, url, (setting,))
    return list(found.values())


def from_environment() -> list[Database]:
    """The databases of this server process: the URIs ``mlflow server`` hands its workers, else the
    governance settings (the process that starts the server)."""
    from mlflow.server.constants import BACKEND_STORE_URI_ENV_VAR, REGISTRY_STORE_URI_ENV_VAR

    from mlflow_governance.core import environment_variables as ev
    registry = os.environ.get(REGISTRY_STORE_URI_ENV_VAR) or ev.MLFLOW_REGISTRY_STORE_URI.get() or ""
    backend = os.environ.get(BACKEND_STORE_URI_ENV_VAR) or ev.MLFLOW_BACKEND_STORE_URI.get()
    return server_databases(registry, backend, auth_database_uri())


def holding(databases: list[Database], setting: str) -> Database | None:
    """The database that ``setting`` names, if it names one."""
    return next((db for db in databases if setting in db.settings), None)


def service_of(url: sa.engine.URL | str, databases: list[Database]) -> str | None:
    """The service name of the database at ``url`` (an engine's URL), or None when it is not one
    of ``databases``."""
    key = _canonical(url.render_as_string(hide_password=False) if isinstance(url, sa.engine.URL) else url)
    for db in databases:
        if key is not None and _canonical(db.url) == key:
            return db.service
    return None


# --- probing ------------------------------------------------------------------------------------

_PROBE_ENGINES: dict[str, sa.engine.Engine] = {}


def is_probe_engine(engine: sa.engine.Engine | None) -> bool:
    """True for the engines of `probe` (their failures are the probe's answer, not an outage)."""
    return bool(getattr(engine, "_mlgov_probe", False))


def _sqlite_path(url: sa.engine.URL) -> str | None:
    database = url.database
    return None if not database or database == ":memory:" else database


def _probe_engine(db: Database, timeout: float) -> sa.engine.Engine:
    key = f"{timeout}:{db.url}"
    engine = _PROBE_ENGINES.get(key)
    if engine is not None:
        return engine
    url = sa.engine.make_url(db.url)
    backend = url.get_backend_name()
    kwargs: dict = {"poolclass": sa.pool.NullPool}
    if backend == "sqlite":
        path = _sqlite_path(url)
        if path is not None:
            # Read-only and never created: a probe must not make an empty database where one is missing.
            target = f"file:{quote(os.path.abspath(path))}?mode=ro"
            kwargs["creator"] = lambda: sqlite3.connect(target, uri=True, timeout=timeout, check_same_thread=False)
    elif backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": max(2, int(timeout)),
                                  "options": f"-c statement_timeout={int(timeout * 1000)}"}
    elif backend == "mysql":
        kwargs["connect_args"] = {"connect_timeout": max(1, int(timeout)), "read_timeout": max(1, int(timeout))}
    engine = sa.create_engine(url, **kwargs)
    engine._mlgov_probe = True  # type: ignore[attr-defined]
    return _PROBE_ENGINES.setdefault(key, engine)


def probe(db: Database, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when ``db`` answers a ``SELECT 1`` within ``timeout`` seconds, else the first line of
    why not (for the server log and the operator only: it may name hosts and drivers)."""
    try:
        engine = _probe_engine(db, timeout)
        statement = "SELECT count(*) FROM sqlite_master" if db.backend == "sqlite" else "SELECT 1"
        with engine.connect() as conn:
            conn.execute(sa.text(statement)).scalar()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the reason is logged
        return _first_line(exc)


# --- migration before the workers start -------------------------------------------------------


def _unreachable(db: Database, reason: str) -> MlflowException:
    return MlflowException(
        f"cannot reach the {db.service} at {db.where} ({scrub(reason, db.url)}): start it, or fix "
        f"{' / '.join(db.settings)}",
        error_code=TEMPORARILY_UNAVAILABLE,
    )


def migrate(registry_uri: str, backend_uri: str | None, auth_uri: str) -> None:
    """Check that every database answers, then bring the registry (MLflow's tables and the
    governance tables) and MLflow's user database to the current schema, once, in this process.

    Raises `MlflowException` in one line naming the database (its URL without password) when one
    does not answer (TEMPORARILY_UNAVAILABLE) or a migration fails (INTERNAL_ERROR).
    """
    databases = server_databases(registry_uri, backend_uri, auth_uri)
    registry_db, users_db = holding(databases, "MLFLOW_REGISTRY_STORE_URI"), holding(databases, "MLGOV_AUTH_DATABASE_URI")
    if registry_db is None or users_db is None:
        raise MlflowException("MLFLOW_REGISTRY_STORE_URI must be governed-sqlite:///... or governed-postgresql://...",
                              error_code=INVALID_PARAMETER_VALUE)
    for db in databases:
        if db.backend == "sqlite":
            continue  # a local file, made by the migration when missing
        reason = probe(db, timeout=5)
        if reason is not None:
            raise _unreachable(db, reason)
    step = registry_db
    try:
        from mlflow_governance.core.plugin import governed_store_builder

        store = governed_store_builder(registry_uri)  # MLflow's registry schema, then the mlgov_ tables
        store.engine.dispose()
        step = users_db
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore

        auth = AuthStore()
        auth.init_db(auth_uri)  # MLflow's basic-auth Alembic migrations, to head
        auth.engine.dispose()
    except MlflowException as exc:
        if isinstance(exc.__cause__, sa.exc.OperationalError | sa.exc.InterfaceError):
            raise _unreachable(step, _first_line(exc.__cause__)) from None
        raise MlflowException(f"preparing the {step.service} at {step.where} failed: {_first_line(exc)}",
                              error_code=INTERNAL_ERROR) from None
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise _unreachable(step, _first_line(exc)) from None
    except sa.exc.SQLAlchemyError as exc:
        _log.error("migrating the %s failed", step.service, exc_info=exc)
        raise MlflowException(f"preparing the {step.service} at {step.where} failed: {_first_line(exc)}",
                              error_code=INTERNAL_ERROR) from None
    _log.info("databases ready: %s", ", ".join(f"{db.service} ({db.where})" for db in databases))


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    message = getattr(original, "message", None) or str(original)
    lines = str(message).strip().splitlines()
    return lines[0] if lines else type(original).__name__
