"""JDBC for the Spark engine: a source's SQLAlchemy URL as a JDBC URL, and the driver jar found by path.

Spark reads the sources with its JDBC data source, so every source needs a JDBC driver jar on
this machine; nothing is downloaded at run time. PostgreSQL and SQLite use Debian's packages
(``libpostgresql-jdbc-java``, ``libxerial-sqlite-jdbc-java``: ``make spark-jdbc`` installs them),
found under ``/usr/share/java``. DB2 uses IBM's JDBC driver (``db2jcc4.jar``), which Debian does
not package: the user names the jar (``--jdbc-jar``); without it a DB2 source is refused with a
message saying so. ``--jdbc-jar`` also adds or overrides a jar for the other engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from mlflow_governance.acquisition import databases
from mlflow_governance.acquisition.errors import AcquisitionError

JAR_DIRECTORY = Path("/usr/share/java")


@dataclass(frozen=True)
class Driver:
    """One JDBC driver: its class, the jar file names it ships as, where it comes from."""

    backend: str
    driver_class: str
    jar_names: tuple[str, ...]
    provided_by: str


DRIVERS = {
    "postgresql": Driver("postgresql", "org.postgresql.Driver", ("postgresql.jar",),
                         "Debian's libpostgresql-jdbc-java (make spark-jdbc installs it)"),
    "sqlite": Driver("sqlite", "org.sqlite.JDBC", ("sqlite-jdbc.jar", "xerial-sqlite-jdbc.jar"),
                     "Debian's libxerial-sqlite-jdbc-java (make spark-jdbc installs it)"),
    "db2": Driver("db2", "com.ibm.db2.jcc.DB2Driver", ("db2jcc4.jar", "db2jcc.jar"),
                  "IBM's JDBC driver: give its jar with --jdbc-jar /path/to/db2jcc4.jar"),
}


@dataclass(frozen=True)
class JdbcSource:
    """How Spark reaches one database: URL, driver class, connection properties and the driver jar."""

    url: str
    driver_class: str
    properties: dict[str, str]
    jar: Path

    def options(self) -> dict[str, str]:
        """The Spark JDBC options (credentials included: never log these)."""
        return {"url": self.url, "driver": self.driver_class, **self.properties}


def _jar_class(jar: Path) -> set[str]:
    """The driver classes a jar registers (``META-INF/services/java.sql.Driver``)."""
    import zipfile

    try:
        with zipfile.ZipFile(jar) as archive:
            text = archive.read("META-INF/services/java.sql.Driver").decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return set()
    return {line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()}


def check_jars(jars: Sequence[str | Path]) -> list[Path]:
    """The user's ``--jdbc-jar`` files, each an existing readable jar, or a clear error."""
    checked = []
    for jar in jars:
        path = Path(str(jar)).expanduser().resolve()
        if not path.is_file():
            raise AcquisitionError(f"JDBC driver jar {jar} does not exist (or is not a file)")
        if not _jar_class(path):
            raise AcquisitionError(f"{jar} is not a JDBC driver jar (no META-INF/services/java.sql.Driver in it)")
        checked.append(path)
    return checked


def find_jar(backend: str, role: str, extra: Sequence[Path] = (), directory: Path = JAR_DIRECTORY) -> Path:
    """The jar of ``backend``'s driver: a given jar that registers its class first, else the packaged one."""
    driver = DRIVERS.get(backend)
    if driver is None:
        raise AcquisitionError(
            f"the spark engine reads PostgreSQL, SQLite and DB2 over JDBC; the {role} database is {backend} "
            "(use the default engine, which reads any SQLAlchemy database)"
        )
    for jar in extra:
        if driver.driver_class in _jar_class(jar):
            return jar
    for name in driver.jar_names:
        candidate = directory / name
        if candidate.is_file():
            return candidate.resolve()
    where = f" or {directory}/{driver.jar_names[0]}" if backend != "db2" else ""
    raise AcquisitionError(
        f"no JDBC driver for the {role} database ({backend}): the spark engine needs {driver.driver_class} "
        f"from {driver.provided_by}{where}; nothing is downloaded at run time"
    )


def jdbc_source(url: str | sa.URL, role: str, extra_jars: Sequence[Path] = ()) -> JdbcSource:
    """The JDBC form of a source's SQLAlchemy URL (password passed as a property, not in the URL)."""
    parsed = url if isinstance(url, sa.URL) else databases.parse_url(url, role)
    backend = parsed.get_backend_name()
    jar = find_jar(backend, role, extra_jars)
    driver = DRIVERS[backend]
    properties: dict[str, str] = {}
    if parsed.username:
        properties["user"] = parsed.username
    if parsed.password:
        properties["password"] = str(parsed.password)
    host = parsed.host or "localhost"
    if backend == "sqlite":
        path = databases.sqlite_path(parsed)
        if path is None:
            raise AcquisitionError(f"the {role} database is an in-memory SQLite database, which Spark cannot open")
        return JdbcSource(f"jdbc:sqlite:{path}", driver.driver_class, {}, jar)
    if backend == "postgresql":
        jdbc = f"jdbc:postgresql://{host}:{parsed.port or 5432}/{parsed.database or ''}"
        properties["connectTimeout"] = str(databases.CONNECT_TIMEOUT_SECONDS)
    else:  # db2
        jdbc = f"jdbc:db2://{host}:{parsed.port or 50000}/{parsed.database or ''}"
    return JdbcSource(jdbc, driver.driver_class, properties, jar)
