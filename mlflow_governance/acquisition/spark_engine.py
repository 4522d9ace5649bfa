"""The acquisition on Apache Spark: the same checked sources, read over JDBC in parallel partitions.

The sources are resolved and checked exactly as on the streaming path (`pipeline`: tables,
columns, key types, the SELECT with its month filter), so the refusals are the same and come
before Spark starts. Each side's SELECT becomes a Spark JDBC table (``dbtable`` subquery),
partitioned on the key: bounds and row count from one ``min``/``max``/``count`` query, a partition
count sized to the rows (`ROWS_PER_PARTITION`), column types fixed by ``customSchema`` from the
source's Arrow schema. Spark joins, sorts on the key and writes Parquet part files to a staging
directory; the driver then streams those parts, in key order and one row group at a time, into the
output file with the streaming path's schema, row groups and provenance (so the file, and the
dataset digest MLflow records, are the same), and installs it atomically. The join counts and
the profile are Spark aggregations (`spark_profile`); no table is collected to the driver.

The session (`session`): ``local[*]`` by default (every core here), any master URL for a
cluster (``spark://host:7077``, ``yarn``, ``k8s://...``); the JDBC driver jars are passed as
``spark.jars``; Spark's scratch files, warehouse and the JVM's temporary files go to a temporary
directory that is removed afterwards. A Spark session already running in the process (a notebook,
the tests) is used as it is and left running.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from mlflow_governance.acquisition import jdbc, readers
from mlflow_governance.acquisition.errors import AcquisitionError
from mlflow_governance.acquisition.join import JoinSpec, JoinStats, output_schema
from mlflow_governance.airline import flights

DEFAULT_MASTER = "local[*]"
ROWS_PER_PARTITION = 50_000  # JDBC partitions per side: one per this many rows, at most MAX_PARTITIONS_PER_CORE per core
MAX_PARTITIONS_PER_CORE = 4
FETCH_ROWS = 10_000  # JDBC fetch size: the PostgreSQL driver otherwise loads a whole partition at once
_MASTER = re.compile(r"local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|(spark|k8s|mesos)://\S+|yarn")
_SPARK_TYPES = {pa.int64(): "BIGINT", pa.int32(): "INT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
                pa.string(): "STRING", pa.date32(): "DATE", pa.timestamp("us"): "TIMESTAMP_NTZ"}


_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
"""


def check_master(master: str) -> str:
    """A Spark master URL, or a clear error."""
    master = (master or "").strip() or DEFAULT_MASTER
    if not _MASTER.fullmatch(master):
        raise AcquisitionError(
            f"Spark master {master!r} is not a master URL (local[*], local[N], spark://HOST:7077, yarn, k8s://...)"
        )
    return master


def check_runtime() -> None:
    """pyspark installed and a Java runtime to start it, or a clear error."""
    import importlib.util
    import os

    if importlib.util.find_spec("pyspark") is None:
        raise AcquisitionError("the spark engine needs pyspark: pip install 'mlflow-governance[spark]'")
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not Path(java).exists():
        raise AcquisitionError("the spark engine needs a Java runtime (17 or later): apt-get install openjdk-17-jre-headless")


def driver_jars(urls: Sequence[str], extra: Sequence[str | Path] = ()) -> tuple[list[jdbc.JdbcSource], list[Path]]:
    """The JDBC form of each source URL and the jars to pass to Spark (checked, before any work)."""
    given = jdbc.check_jars([j for j in extra if str(j).strip()])
    sources = [jdbc.jdbc_source(url, role, given) for url, role in zip(urls, ("flights", "airports"), strict=True)]
    jars = list(dict.fromkeys([*(s.jar for s in sources), *given]))
    return sources, jars


def check(flights_url: str, airports_url: str, master: str, jars: Sequence[str | Path] = (),
          staging: str | None = None) -> str:
    """Everything the spark engine needs besides the sources: pyspark, Java, the master URL, the
    drivers, the staging location. Returns the master URL."""
    master = check_master(master)
    driver_jars([flights_url, airports_url], jars)
    if staging:
        _staging(staging, Path(tempfile.gettempdir()))
    check_runtime()
    return master


@contextmanager
def session(master: str = DEFAULT_MASTER, jars: Sequence[Path] = (), *, shuffle_partitions: int | None = None):
    """A Spark session for the acquisition (the running one, if any; else a new one, stopped after)."""
    check_runtime()
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is not None:
        spark = SparkSession.builder.getOrCreate()
        loaded = spark.sparkContext.getConf().get("spark.jars", "")
        missing = [str(j) for j in jars if str(j) not in loaded]
        if missing:
            raise AcquisitionError(f"the running Spark session lacks the JDBC driver jar(s) {', '.join(missing)} "
                                   "(start it with them in spark.jars)")
        yield spark
        return
    scratch = Path(tempfile.mkdtemp(prefix="mlgov-spark-"))
    try:
        spark = _start(master, jars, scratch, shuffle_partitions)
        try:
            yield spark
        finally:
            spark.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def new_session(master: str, jars: Sequence[Path], scratch: Path, shuffle_partitions: int | None = None):
    """A new Spark session writing nothing outside ``scratch`` (the caller stops it)."""
    check_runtime()
    return _start(check_master(master), jars, scratch, shuffle_partitions)


def _start(master: str, jars: Sequence[Path], scratch: Path, shuffle_partitions: int | None):
    import os

    from pyspark.sql import SparkSession

    scratch.mkdir(parents=True, exist_ok=True)
    logging = scratch / "log4j2.properties"  # errors only, on stderr: no start-up chatter in the CLI's output
    logging.write_text(_LOG4J, encoding="utf-8")
    java_options = (f"-Djava.io.tmpdir={scratch} -Dderby.system.home={scratch} -XX:-UsePerfData "
                    f"-Dlog4j2.configurationFile={logging.as_uri()}")
    builder = (
        SparkSession.builder.master(master).appName("mlgov-acquire")
        .config("spark.jars", ",".join(str(j) for j in jars))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.local.dir", str(scratch / "local"))
        .config("spark.sql.warehouse.dir", (scratch / "warehouse").as_uri())
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.executor.extraJavaOptions", java_options if master.startswith("local") else "-XX:-UsePerfData")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.adaptive.enabled", "true")
    )
    if shuffle_partitions or master.startswith("local"):
        cores = os.cpu_count() or 1
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions or max(2, 2 * cores)))
    try:
        spark = builder.getOrCreate()
    except Exception as exc:
        raise AcquisitionError(f"cannot start Spark on master {master}: {_first_line(exc)}") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("Caused by:", "org.", "java.", "py4j")) and ":" in line:
            return line.split(":", 1)[1].strip() if line.startswith("Caused by:") else line
    return text.splitlines()[0]


def _bounds(source: readers.Source) -> tuple[Any, Any, int]:
    """Minimum and maximum key and row count of the source's SELECT (one query on the database)."""
    sub = source.statement.order_by(None).subquery("mlgov_src")
    key = sub.c[source.spec.key]
    query = sa.select(sa.func.min(key), sa.func.max(key), sa.func.count())
    try:
        with source.engine.connect() as conn:
            lo, hi, rows = conn.execute(query.select_from(sub)).one()
    except sa.exc.DBAPIError as exc:
        from mlflow_governance.acquisition import databases

        raise databases.connection_error(exc, source.engine, source.role) from None
    return lo, hi, int(rows)


def partitions(rows: int, lo: int, hi: int, cores: int) -> int:
    """The JDBC partition count of one side: sized to its rows, bounded by the cores and the key range."""
    wanted = max(1, math.ceil(rows / ROWS_PER_PARTITION))
    return int(max(1, min(wanted, MAX_PARTITIONS_PER_CORE * max(1, cores), hi - lo + 1)))


def read_side(spark, source: readers.Source, target: jdbc.JdbcSource, bounds: tuple[Any, Any, int]):
    """The source's SELECT as a Spark DataFrame, partitioned on the key, typed as the source's Arrow schema."""
    lo, hi, rows = bounds
    sql = str(source.statement.order_by(None).compile(dialect=source.engine.dialect,
                                                      compile_kwargs={"literal_binds": True}))
    n = partitions(rows, int(lo), int(hi), spark.sparkContext.defaultParallelism)
    custom = ", ".join(f"`{f.name}` {_SPARK_TYPES.get(f.type, 'STRING')}" for f in source.schema)
    reader = spark.read.format("jdbc").options(**target.options()).options(
        dbtable=f"({sql}) mlgov_src", customSchema=custom, fetchsize=str(FETCH_ROWS),
    )
    if n > 1:
        reader = reader.options(partitionColumn=source.spec.key, lowerBound=str(lo), upperBound=str(hi),
                                numPartitions=str(n))
    source.path = f"spark-jdbc-{source.engine.url.get_backend_name()}"
    source.rows = rows
    source.notes.append(f"{n} JDBC partition(s) on {source.spec.key} in [{lo}, {hi}]")
    return reader.load()


def _staging(staging: str | None, scratch: Path) -> tuple[str, Any, str]:
    """Where Spark writes its part files: (URI for Spark, pyarrow filesystem, path on it)."""
    import pyarrow.fs as pafs

    if not staging:
        local = scratch / "joined"
        return local.as_uri(), pafs.LocalFileSystem(), str(local)
    uri = staging.rstrip("/") + f"/mlgov-acquire-{uuid.uuid4().hex[:12]}"
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise AcquisitionError(f"the staging location {staging} cannot be opened here: {exc}") from None
    return uri, fs, path


def acquire(
    flights_url: str,
    airports_url: str,
    months: Sequence[int],
    output: str | Path,
    spec: JoinSpec | None = None,
    *,
    master: str = DEFAULT_MASTER,
    jars: Sequence[str | Path] = (),
    staging: str | None = None,
    label: str = flights.LABEL,
    force: bool = True,
    spark=None,
):
    """`pipeline.acquire` on Spark: the same output file, profile and refusals."""
    from mlflow_governance.acquisition import pipeline

    spec = spec or JoinSpec()
    if output is None:
        raise AcquisitionError("an output path is required")
    months, out = pipeline._check_arguments(months, output, spec, 1, force)
    master = check_master(master)
    targets, jar_paths = driver_jars([flights_url, airports_url], jars)
    with pipeline._opened_sources(flights_url, airports_url, months, spec, "auto") as (left, right, _):
        bounds = {}
        for side in (left, right):
            bounds[side.role] = _bounds(side)
            if bounds[side.role][2] == 0:
                raise AcquisitionError(
                    f"the {side.role} source returned no rows for months {','.join(map(str, months))} "
                    f"(tables {', '.join(side.tables)}, filter: {side.month_filter}); nothing was written"
                )
        if spark is not None:
            return _run(spark, left, right, targets, bounds, out, spec, months, label, force, staging)
        with session(master, jar_paths) as started:
            return _run(started, left, right, targets, bounds, out, spec, months, label, force, staging)


def _run(spark, left, right, targets, bounds, out: Path, spec: JoinSpec, months, label, force, staging):
    from mlflow_governance.acquisition import pipeline, spark_profile

    schema = output_schema(left.schema, right.schema, spec.key)
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="mlgov-acquire-spark-"))
    uri, fs, path = _staging(staging, scratch)
    frames = []
    try:
        try:
            lframe = read_side(spark, left, targets[0], bounds["flights"]).persist()
            rframe = read_side(spark, right, targets[1], bounds["airports"]).persist()
            frames = [lframe, rframe]
            stats = spark_profile.join_stats(lframe, rframe, spec.key, spec.how)
            pipeline._check(left, right, stats, spec.key, months)
            joined = lframe.join(rframe, spec.key, spec.how).select(*(f"`{n}`" for n in schema.names))
            joined.orderBy(f"`{spec.key}`").write.mode("errorifexists").parquet(uri)
        except AcquisitionError:
            raise
        except Exception as exc:
            raise AcquisitionError(f"the Spark acquisition failed: {_first_line(exc)}") from None
        provenance = {"months": list(months), "join_spec": spec.describe(), "join": _join_info(spec, stats),
                      "sources": {"flights": left.describe(), "airports": right.describe()}}
        rows = _merge(fs, path, schema, spec.key, out, force, provenance)
        try:
            profile = spark_profile.profile(spark.read.parquet(uri), schema, label)
        except Exception as exc:
            raise AcquisitionError(f"profiling with Spark failed: {_first_line(exc)}") from None
    finally:
        for frame in frames:
            frame.unpersist()
        try:
            fs.delete_dir(path)
        except (OSError, pa.ArrowException):
            pass
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started
    profile["key"] = spec.key
    profile["months"] = list(months)
    profile["join"] = provenance["join"]
    profile["sources"] = provenance["sources"]
    profile["join_spec"] = spec.describe()
    return pipeline.AcquisitionResult(out, rows, profile, seconds, {"flights": left.path, "airports": right.path})


def _join_info(spec: JoinSpec, stats: JoinStats) -> dict[str, Any]:
    from mlflow_governance.acquisition.pipeline import _join_info

    info = _join_info(spec, stats)
    info["max_buffered_rows"] = None  # a streaming measure: Spark buffers per partition
    return info


def _part_files(fs, path: str) -> list[str]:
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(path))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet"))


def _merge(fs, path: str, schema: pa.Schema, key: str, out: Path, force: bool, provenance: dict) -> int:
    """Spark's part files, in key order, into one Parquet file at ``out`` (atomically); its row count."""
    from mlflow_governance.acquisition import pipeline

    rows, last = 0, None
    with pipeline.parquet_output(out, schema, force) as writer:
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for part in _part_files(fs, path):
            with fs.open_input_file(part) as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=pipeline.ROW_GROUP_ROWS):
                    batch = readers.conform(batch.select(schema.names), schema)
                    keys = batch.column(key)
                    if len(keys):
                        first = keys[0].as_py()
                        if last is not None and first < last:
                            raise AcquisitionError(f"Spark's part files are not ordered by {key}")
                        last = keys[-1].as_py()
                    pending.append(batch)
                    pending_rows += batch.num_rows
                    if pending_rows >= pipeline.ROW_GROUP_ROWS:
                        table = pa.Table.from_batches(pending, schema=schema)
                        writer.write_table(table.slice(0, pipeline.ROW_GROUP_ROWS), row_group_size=pipeline.ROW_GROUP_ROWS)
                        rest = table.slice(pipeline.ROW_GROUP_ROWS)
                        pending, pending_rows = rest.to_batches(), rest.num_rows
                        rows += pipeline.ROW_GROUP_ROWS
        if pending_rows:
            writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=pipeline.ROW_GROUP_ROWS)
            rows += pending_rows
        writer.add_key_value_metadata({pipeline.PROVENANCE_KEY: json.dumps(provenance, default=str)})
    return rows


__all__ = ["DEFAULT_MASTER", "acquire", "check", "new_session", "session", "partitions"]
