"""Source databases: URL parsing, engines with clear connection errors, Arrow-native drivers.

Any SQLAlchemy URL works. PostgreSQL and SQLite are also read through their ADBC drivers
(Arrow-native, no Python objects per row); every other engine, DB2 included
(``db2+ibm_db://USER:PASSWORD@HOST:50000/DATABASE``), goes through SQLAlchemy.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from mlflow_governance.acquisition.errors import AcquisitionError
from mlflow_governance.safe.urls import UNPARSABLE, mask_url, scrub

# The embedded default: two SQLite files in the working directory.
DEFAULT_FLIGHTS_URL = "sqlite:///flights.db"
DEFAULT_AIRPORTS_URL = "sqlite:///airports.db"
CONNECT_TIMEOUT_SECONDS = 10
# ADBC driver module by SQLAlchemy backend name.
ADBC_DRIVERS = {"postgresql": "adbc_driver_postgresql", "sqlite": "adbc_driver_sqlite"}


def parse_url(url: str, role: str) -> sa.URL:
    """The SQLAlchemy URL of the ``role`` ("flights"/"airports") database, or a clear error."""
    if not url or not str(url).strip():
        raise AcquisitionError(f"the {role} database URL is empty")
    try:
        parsed = sa.make_url(str(url).strip())
    except Exception:
        raise AcquisitionError(
            f"the {role} database URL {display_url(str(url))!r} is not a SQLAlchemy URL "
            "(for example postgresql://user@host:5432/db, sqlite:///path.db, db2+ibm_db://user:pw@host:50000/DB)"
        ) from None
    return parsed


def display_url(url: str | sa.URL) -> str:
    """The URL with its password and secret query values masked (`mlflow_governance.safe.urls.mask_url`),
    for logs, params and messages."""
    try:
        text = url.render_as_string(hide_password=False) if isinstance(url, sa.URL) else str(url)
    except Exception:
        return UNPARSABLE
    return mask_url(text)


def sqlite_path(url: sa.URL) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return Path(url.database).expanduser().resolve()


def create_engine(url: str | sa.URL, role: str, *, must_exist: bool = True) -> sa.Engine:
    """An engine for the ``role`` database; a SQLite file must exist unless ``must_exist`` is False."""
    parsed = url if isinstance(url, sa.URL) else parse_url(url, role)
    backend = parsed.get_backend_name()
    kwargs: dict = {}
    if backend == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            if must_exist and not path.is_file():
                raise AcquisitionError(f"the {role} database file {path} does not exist (seed it first)")
            if not must_exist:
                path.parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(path))
    elif backend == "postgresql" and parsed.get_driver_name() in ("psycopg2", "psycopg"):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    try:
        return sa.create_engine(parsed, **kwargs)
    except Exception as exc:  # unknown dialect, missing driver
        raise AcquisitionError(f"cannot use the {role} database {display_url(parsed)}: "
                               f"{scrub(_first_line(exc), parsed.render_as_string(hide_password=False))}") from None


def check_connection(engine: sa.Engine, role: str) -> None:
    """Connect once; an unreachable database becomes a clear error."""
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise connection_error(exc, engine, role) from None


def connection_error(exc: BaseException, engine: sa.Engine, role: str) -> AcquisitionError:
    """A message naming the database and the driver's reason, without its traceback."""
    reason = scrub(_first_line(getattr(exc, "orig", exc)), engine.url.render_as_string(hide_password=False))
    hint = ""
    if engine.url.get_backend_name() in SERVER_DATABASES and ("does not exist" in reason or "Unknown database" in reason):
        hint = " (mlgov sources seed --create-database creates it)"
    return AcquisitionError(f"cannot connect to the {role} database {display_url(engine.url)}: {reason}{hint}")


# Backends whose databases live on a server, with the database every server has to connect to.
SERVER_DATABASES = {"postgresql": "postgres", "mysql": "information_schema", "mariadb": "information_schema"}


def create_database_if_missing(engine: sa.Engine, role: str) -> bool:
    """Create the PostgreSQL or MySQL/MariaDB database ``engine`` names if it does not exist.

    Connects to a database every server has (PostgreSQL's ``postgres``, MySQL's ``information_schema``) with
    the same credentials; returns True when it created the database. SQLite files are created by
    connecting; other backends are refused.
    """
    backend = engine.url.get_backend_name()
    name = engine.url.database
    if backend == "sqlite":
        return False
    if backend not in SERVER_DATABASES or not name:
        raise AcquisitionError(f"--create-database works for PostgreSQL and MySQL/MariaDB, not {backend!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}", name):
        raise AcquisitionError(f"database name {name!r} of the {role} URL is not a plain identifier")
    server = sa.create_engine(engine.url.set(database=SERVER_DATABASES[backend]), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            if backend == "postgresql":
                exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            else:
                exists = conn.execute(sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                                      {"n": name}).first()
            if exists:
                return False
            quoted = server.dialect.identifier_preparer.quote_identifier(name)
            conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
            return True
    except sa.exc.SQLAlchemyError as exc:
        raise AcquisitionError(
            f"cannot create the {role} database {display_url(engine.url)}: "
            f"{scrub(_first_line(getattr(exc, 'orig', exc)), engine.url.render_as_string(hide_password=False))}"
        ) from None
    finally:
        server.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def adbc_backend(engine: sa.Engine) -> str | None:
    """``"postgresql"``/``"sqlite"`` when an installed ADBC driver can read this database, else None."""
    backend = engine.url.get_backend_name()
    module = ADBC_DRIVERS.get(backend)
    if module is None or importlib.util.find_spec(module) is None:
        return None
    if backend == "sqlite" and sqlite_path(engine.url) is None:
        return None  # an in-memory database is private to its SQLAlchemy connection
    return backend


def adbc_connect(engine: sa.Engine, *, read_only: bool = True):
    """A DB-API connection of the ADBC driver for ``engine``'s database (SQLite opened read-only)."""
    backend = adbc_backend(engine)
    if backend == "postgresql":
        import adbc_driver_postgresql.dbapi

        uri = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return adbc_driver_postgresql.dbapi.connect(uri)
    if backend == "sqlite":
        import adbc_driver_sqlite.dbapi

        path = str(sqlite_path(engine.url))
        return adbc_driver_sqlite.dbapi.connect(f"file:{quote(path)}?mode=ro" if read_only else path)
    raise AcquisitionError(f"no Arrow-native (ADBC) driver for {engine.url.get_backend_name()} databases")
