"""Stream one source as Arrow record batches, ordered by the join key.

`resolve` checks a source before anything is read: the database answers, every month table
exists, every requested column exists, the key is an integer column. It builds one SELECT with
SQLAlchemy constructs (identifiers quoted by the dialect): only the requested columns, rows with
a key, the month filter (one table per month, or ``WHERE MONTH IN (...)`` on a single table),
``UNION ALL`` over the month tables and ``ORDER BY`` the key, so the database does the selection,
the filtering and the ordering.

`stream` reads that SELECT in chunks. PostgreSQL and SQLite go through their ADBC drivers
(Arrow-native: the rows never become Python objects); every other engine, DB2 included, through
their SQLAlchemy engine's DB-API driver with a streaming (server-side) cursor, each fetched chunk
converted to Arrow in one call (`_rows_to_batch`). Every batch is
cast to the source's Arrow schema, derived from the reflected column types, so the output does
not depend on the engine or the path.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
import sqlalchemy as sa

from mlflow_governance.acquisition import databases
from mlflow_governance.acquisition.errors import AcquisitionError
from mlflow_governance.acquisition.identifiers import check_identifier, is_month_template, render_table

T = TypeVar("T")
READERS = ("auto", "arrow", "sqlalchemy")
DEFAULT_CHUNK_ROWS = 65_536


class ArrowTypeInferenceError(AcquisitionError):
    """The ADBC SQLite driver guessed a column type from a first batch of NULLs."""

    def __init__(self, message: str, role: str):
        super().__init__(message)
        self.role = role


@dataclass(frozen=True)
class SourceSpec:
    """What to read from one database: a table (or month table template), columns and the key."""

    role: str
    url: str
    table: str
    columns: tuple[str, ...]
    key: str
    month_column: str | None = "MONTH"


@dataclass
class Source:
    """A checked source, ready to stream."""

    spec: SourceSpec
    engine: sa.Engine
    tables: list[str]
    schema: pa.Schema
    statement: Any
    month_filter: str
    path: str = ""
    rows: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def role(self) -> str:
        return self.spec.role

    def describe(self) -> dict[str, Any]:
        """The source as recorded in the summary and the profile."""
        return {
            "url": databases.display_url(self.engine.url),
            "engine": self.engine.url.get_backend_name(),
            "tables": self.tables,
            "columns": self.schema.names,
            "month_filter": self.month_filter,
            "reader": self.path,
            "rows": self.rows,
            **({"notes": self.notes} if self.notes else {}),
        }

    def sql(self) -> str:
        """The SELECT as the database receives it."""
        return str(self.statement.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))


def arrow_type(sa_type: Any) -> pa.DataType:
    """The Arrow type a reflected column is read as."""
    if isinstance(sa_type, sa.Boolean):
        return pa.bool_()
    if isinstance(sa_type, sa.Integer):
        return pa.int64()
    if isinstance(sa_type, sa.Float):
        return pa.float64()
    if isinstance(sa_type, sa.Numeric):
        return pa.int64() if sa_type.scale == 0 else pa.float64()
    if isinstance(sa_type, sa.DateTime):
        return pa.timestamp("us")
    if isinstance(sa_type, sa.Date):
        return pa.date32()
    return pa.string()


def _match(wanted: str, available: Sequence[str]) -> str | None:
    """The database's spelling of ``wanted``: exact, else the one case-insensitive match."""
    if wanted in available:
        return wanted
    found = [a for a in available if a.lower() == wanted.lower()]
    return found[0] if len(found) == 1 else None


def resolve(spec: SourceSpec, months: Sequence[int]) -> Source:
    """Check ``spec`` against its database and build the ordered, filtered SELECT."""
    key = check_identifier(spec.key, "join key")
    columns: list[str] = []
    for c in spec.columns:  # the key as spelled in the join definition, each column once
        name = key if c.lower() == key.lower() else check_identifier(c, f"{spec.role} column")
        if name.lower() not in (x.lower() for x in columns):
            columns.append(name)
    if key not in columns:
        columns.insert(0, key)
    engine = databases.create_engine(spec.url, spec.role)
    try:
        inspector = sa.inspect(engine)
        available = inspector.get_table_names()
    except Exception as exc:
        engine.dispose()
        raise databases.connection_error(exc, engine, spec.role) from None
    try:
        return _resolve(spec, months, engine, inspector, available, key, columns)
    except BaseException:
        engine.dispose()
        raise


def _resolve(spec, months, engine, inspector, available, key, columns) -> Source:
    where = databases.display_url(engine.url)
    templated = is_month_template(spec.table)
    wanted = [render_table(spec.table, m, spec.role) for m in months] if templated else [
        render_table(spec.table, None, spec.role)
    ]
    tables = {w: _match(w, available) for w in wanted}
    missing = [w for w, t in tables.items() if t is None]
    if missing:
        shown = ", ".join(sorted(available)[:20]) or "none"
        raise AcquisitionError(
            f"the {spec.role} database {where} has no table {', '.join(missing)} (its tables: {shown})"
        )
    schema: pa.Schema | None = None
    parts: list[tuple[str, dict[str, str], str | None]] = []
    month_filter = "one table per month" if templated else "none"
    for name in wanted:
        table = tables[name]
        reflected = {c["name"]: c for c in inspector.get_columns(table)}
        actual = {c: _match(c, list(reflected)) for c in columns}
        absent = [c for c, a in actual.items() if a is None]
        if absent:
            raise AcquisitionError(
                f"table {table} in the {spec.role} database {where} has no column {', '.join(absent)} "
                f"(its columns: {', '.join(reflected)})"
            )
        types = {c: arrow_type(reflected[actual[c]]["type"]) for c in columns}
        if not pa.types.is_integer(types[key]):
            raise AcquisitionError(
                f"join key {key} of table {table} in the {spec.role} database is "
                f"{reflected[actual[key]]['type']}, not an integer column"
            )
        if schema is None:
            schema = pa.schema([pa.field(c, types[c]) for c in columns])
        month_col = _match(spec.month_column, list(reflected)) if spec.month_column and not templated else None
        if month_col is not None:
            month_filter = f"WHERE {month_col} IN ({', '.join(map(str, months))})"
        parts.append((table, actual, month_col))
    statement = build_select(parts, columns, key, months)
    assert schema is not None
    return Source(spec, engine, [tables[w] for w in wanted], schema, statement, month_filter)


def build_select(
    parts: Sequence[tuple[str, dict[str, str], str | None]], columns: Sequence[str], key: str, months: Sequence[int]
):
    """One SELECT over ``parts`` (table, requested -> actual column names, month column or None):
    the requested columns under their requested names, rows with a key, the month filter where a
    month column is given, ``UNION ALL`` of the tables, ``ORDER BY`` the key. Names are quoted by
    the dialect when the statement is compiled; nothing here is formatted into SQL text."""
    selects = []
    key_label = None
    for table, actual, month_col in parts:
        source_table = sa.table(table, *(sa.column(actual[c]) for c in columns),
                                *([sa.column(month_col)] if month_col and month_col not in actual.values() else []))
        labelled = [source_table.c[actual[c]].label(c) for c in columns]
        key_label = labelled[list(columns).index(key)]
        stmt = sa.select(*labelled).where(source_table.c[actual[key]].is_not(None))
        if month_col is not None:
            stmt = stmt.where(source_table.c[month_col].in_(list(months)))
        selects.append(stmt)
    if len(selects) == 1:
        return selects[0].order_by(key_label)
    union = sa.union_all(*selects)
    return union.order_by(union.selected_columns[key])


def choose_path(source: Source, reader: str = "auto") -> str:
    """``adbc-postgresql``/``adbc-sqlite`` (Arrow-native) or ``sqlalchemy-<dialect>`` (chunked)."""
    if reader not in READERS:
        raise AcquisitionError(f"reader must be one of {', '.join(READERS)}, not {reader!r}")
    backend = databases.adbc_backend(source.engine)
    if reader == "arrow" and backend is None:
        raise AcquisitionError(
            f"no Arrow-native (ADBC) reader for the {source.role} database "
            f"({source.engine.url.get_backend_name()}); use the sqlalchemy reader"
        )
    if reader != "sqlalchemy" and backend is not None:
        return f"adbc-{backend}"
    return f"sqlalchemy-{source.engine.url.get_backend_name()}"


def stream(source: Source, path: str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
    """Batches of ``source`` in key order, each cast to ``source.schema``; counts ``source.rows``."""
    if chunk_rows < 1:
        raise AcquisitionError(f"chunk rows must be positive, not {chunk_rows}")
    source.path = path
    source.rows = 0
    batches = _adbc_batches(source, chunk_rows) if path.startswith("adbc-") else _sqlalchemy_batches(source, chunk_rows)
    try:
        for batch in batches:
            if batch.num_rows:
                source.rows += batch.num_rows
                yield batch
    finally:
        batches.close()  # closes the connection now, also when the consumer stops early


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s names and types (a lossy cast is an error)."""
    arrays = []
    for column, target in zip(batch.columns, schema, strict=True):
        arrays.append(column if column.type == target.type else column.cast(target.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _adbc_batches(source: Source, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    backend = databases.adbc_backend(source.engine)
    sql = source.sql()
    try:
        conn = databases.adbc_connect(source.engine)
    except Exception as exc:
        raise databases.connection_error(exc, source.engine, source.role) from None
    try:
        with conn.cursor() as cur:
            if backend == "sqlite":
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(chunk_rows)})
            else:
                hint = max(4096, chunk_rows * _copy_row_bytes(source.schema))
                cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(hint)})
            try:
                cur.execute(sql)
                reader = cur.fetch_record_batch()
                for batch in reader:
                    yield conform(batch, source.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise AcquisitionError(f"the {source.role} data does not fit its declared column types: {exc}") from None
            except Exception as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if backend == "sqlite" and "type mismatch" in message.lower():
                    raise ArrowTypeInferenceError(
                        f"the ADBC SQLite driver mis-typed a column of the {source.role} database: {message}",
                        source.role,
                    ) from None
                raise AcquisitionError(f"reading the {source.role} database through ADBC failed: {message}") from None
    finally:
        conn.close()


def _copy_row_bytes(schema: pa.Schema) -> int:
    """Estimated bytes of one row in PostgreSQL's binary COPY (its ADBC batch size is a byte hint)."""
    return 2 + sum(4 + (f.type.byte_width if pa.types.is_primitive(f.type) else 8) for f in schema)


def _sqlalchemy_batches(source: Source, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The SELECT through the engine's DB-API driver: a server-side cursor where the driver needs one
    (PostgreSQL, MySQL), ``fetchmany`` of ``chunk_rows`` tuples, each chunk converted by Arrow in one
    call into a struct array and split into columns (no per-row or per-value Python)."""
    schema = source.schema
    struct = pa.struct(list(schema))
    try:
        raw = source.engine.raw_connection()
    except sa.exc.DBAPIError as exc:
        raise databases.connection_error(exc, source.engine, source.role) from None
    try:
        cursor = _server_side_cursor(raw, source.engine)
        try:
            cursor.arraysize = chunk_rows
            if hasattr(cursor, "itersize"):
                cursor.itersize = chunk_rows
            cursor.execute(source.sql())
            while True:
                rows = cursor.fetchmany(chunk_rows)
                if not rows:
                    break
                yield _rows_to_batch(rows, schema, struct)
        finally:
            cursor.close()
    except AcquisitionError:
        raise
    except source.engine.dialect.loaded_dbapi.Error as exc:
        raise databases.connection_error(exc, source.engine, source.role) from None
    finally:
        raw.close()  # back to the pool, rolled back


def _server_side_cursor(raw, engine: sa.Engine):
    """A DB-API cursor that streams: PostgreSQL's named cursor, MySQL's unbuffered cursor; other
    drivers (SQLite, DB2's ibm_db, ...) stream with a plain cursor and ``fetchmany``."""
    backend, driver = engine.url.get_backend_name(), engine.dialect.driver
    if backend == "postgresql" and driver in ("psycopg2", "psycopg"):
        return raw.cursor(name=f"mlgov_read_{threading.get_ident()}")
    if backend in ("mysql", "mariadb") and driver in ("pymysql", "mysqldb"):
        return raw.cursor(engine.dialect.loaded_dbapi.cursors.SSCursor)
    return raw.cursor()


def _rows_to_batch(rows: Sequence[Any], schema: pa.Schema, struct: pa.StructType) -> pa.RecordBatch:
    """A chunk of DB-API rows as one record batch of ``schema``."""
    if not isinstance(rows[0], tuple):
        rows = [tuple(r) for r in rows]
    try:
        return pa.RecordBatch.from_struct_array(pa.array(rows, type=struct))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        pass  # a value Arrow does not convert directly (Decimal, text numbers, driver types): per column
    columns = list(zip(*rows, strict=True))
    arrays = [_to_array(values, f.type) for values, f in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _to_array(values: Sequence[Any], target: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        pass
    if pa.types.is_string(target):  # a type without an Arrow mapping is read as its text
        return pa.array([None if v is None else str(v) for v in values], type=target)
    try:  # Decimal, numpy scalars, text numbers: infer, then cast
        return pa.array(values).cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise AcquisitionError(f"values do not fit the column type {target}: {exc}") from None


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


def prefetch(items: Iterator[T], depth: int = 2, name: str = "prefetch") -> Iterator[T]:
    """Run ``items`` in a background thread, at most ``depth`` items ahead (the database reads
    while the join works). Errors are re-raised in the consumer; closing the consumer stops
    and closes the producer."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer
            put(_Failure(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()
