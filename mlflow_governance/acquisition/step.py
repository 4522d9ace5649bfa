"""The acquisition step: an MLflow run around the pipeline, and the governance record.

Used by ``mlflow run . -e acquire`` (``projects/acquire.py``) and ``mlgov acquire``. The run logs
the readers each source took, row counts per source and after the join, unmatched keys, the
Parquet file (``data/``), the profile (``profile/profile.json``, ``profile/profile.html``), a
summary (``acquisition/summary.json``) and the training set as an MLflow dataset input. With a
model name, the step first checks that the model waits in Data Acquisition for the acting user,
then records ``training_data_asset`` and ``training_data_quality_flag`` through the governance
core as the ModelDataEngineer (``mlgov.`` tags are never written here).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlflow_governance.acquisition import databases, quality
from mlflow_governance.acquisition.join import JoinSpec
from mlflow_governance.acquisition.readers import DEFAULT_CHUNK_ROWS
from mlflow_governance.airline import flights

ENGINES = ("stream", "spark")
DATA_ARTIFACTS = "data"
PROFILE_ARTIFACTS = "profile"


def check_model(model: str) -> dict[str, Any]:
    """Refuse early unless the acting user may submit ``model``'s training data (`GovernanceClient.may`)."""
    from mlflow_governance.client.governance import GovernanceClient
    from mlflow_governance.core import workflow

    client = GovernanceClient()
    client.require(model, workflow.SUBMIT)
    return client.status(model)


def months_label(months: Sequence[int]) -> str:
    return "all" if list(months) == list(flights.MONTHS) else "-".join(map(str, months))


def _dataset_source(artifact_uri: str, output: Path | None, local: Path) -> str:
    """The dataset source: the logged artifact where MLflow can resolve it, else the local file."""
    from mlflow_governance.acquisition.dataset import resolve_source

    for candidate in (artifact_uri, str(output) if output else None, str(local)):
        if not candidate:
            continue
        try:
            resolve_source(candidate)
            return candidate
        except Exception:
            continue
    return str(local)


def run_acquisition(
    flights_url: str,
    airports_url: str,
    months: Sequence[int] | str | None,
    output: str | Path | None = None,
    model: str | None = None,
    spec: JoinSpec | None = None,
    *,
    reader: str = "auto",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    experiment: str | None = None,
    echo: Callable[[str], None] = print,
    force: bool = False,
    engine: str = "stream",
    spark_master: str | None = None,
    jdbc_jars: Sequence[str] = (),
    spark_staging: str | None = None,
) -> dict[str, Any]:
    """Acquire, profile, log to MLflow and (with ``model``) record the data on the governed model.

    ``engine``: ``stream`` (this machine: the streaming readers and join of `pipeline`) or
    ``spark`` (`spark_engine`: JDBC partitions, Spark join and aggregations, on ``spark_master``,
    default ``local[*]``). Both write the same file and log the same dataset digest.

    ``output`` (optional; the run's artifact is always logged) follows the rule of every mlgov
    ``--output`` (`mlflow_governance.safe.outputs`): it is checked first, before the model, the
    databases or MLflow are touched; an existing file is replaced only with ``force``, a
    directory or a special file never.
    """
    from mlflow_governance.acquisition.pipeline import check_output, check_sources

    spec = spec or JoinSpec()
    months = flights.parse_months(months) if months is None or isinstance(months, str) else list(months)
    model = (model or "").strip() or None
    output = output if output is not None and str(output).strip() else None
    # The output path first: refused before any database (the registry included) is read.
    requested = check_output(output, force) if output else None
    if model:
        check_model(model)
    if engine not in ENGINES:
        raise MlflowException(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}",
                              error_code=INVALID_PARAMETER_VALUE)
    if engine == "spark":
        from mlflow_governance.acquisition import spark_engine

        if reader != "auto":
            raise MlflowException(f"--reader {reader} chooses the stream engine's readers; the spark engine reads "
                                  "over JDBC (leave --reader at auto)", error_code=INVALID_PARAMETER_VALUE)
        spark_master = spark_engine.check(flights_url, airports_url, spark_master or spark_engine.DEFAULT_MASTER,
                                          jdbc_jars, spark_staging)
    # Bad input (connections, tables, columns, names) is refused before any run or experiment exists.
    check_sources(flights_url, airports_url, months, requested, spec,
                  reader=reader, chunk_rows=chunk_rows, force=force)
    with ExitStack() as stack:
        spark = None
        if engine == "spark":
            _, jars = spark_engine.driver_jars([flights_url, airports_url], jdbc_jars)
            spark = stack.enter_context(spark_engine.session(spark_master, jars))
            spark_master = spark.sparkContext.master  # a running session is used as it is
            echo(f"Spark {spark.version} on {spark_master}, {spark.sparkContext.defaultParallelism} task slot(s)")
        if experiment:
            import mlflow

            mlflow.set_experiment(experiment)
        return _logged_run(flights_url, airports_url, months, output, requested, model, spec, reader, chunk_rows,
                           echo, force, engine, spark_master, jdbc_jars, spark_staging, spark)


def _logged_run(flights_url, airports_url, months, output, requested, model, spec, reader, chunk_rows, echo, force,
                engine, spark_master, jdbc_jars, spark_staging, spark) -> dict[str, Any]:
    import mlflow

    from mlflow_governance.acquisition.dataset import quiet_mlflow_data, training_dataset
    from mlflow_governance.acquisition.pipeline import acquire
    from mlflow_governance.acquisition.profile import write_html

    with mlflow.start_run() as run, tempfile.TemporaryDirectory(prefix="mlgov-acquire-") as tmp:
        run_id = run.info.run_id
        work = Path(tmp)
        target = requested or work / "training.parquet"
        mlflow.log_params(
            {
                "flights_source": databases.display_url(flights_url),
                "airports_source": databases.display_url(airports_url),
                "join_months": ",".join(map(str, months)),
                "join_key": spec.key,
                "join_how": spec.how,
                "engine": engine,
                **({"reader_requested": reader, "chunk_size_rows": chunk_rows} if engine == "stream"
                   else {"spark_session_master": spark_master}),
            }
        )
        if engine == "spark":
            from mlflow_governance.acquisition import spark_engine

            result = spark_engine.acquire(flights_url, airports_url, months, target, spec, master=spark_master,
                                          jars=jdbc_jars, staging=spark_staging, force=force, spark=spark)
        else:
            result = acquire(flights_url, airports_url, months, target, spec, reader=reader, chunk_rows=chunk_rows,
                             force=force)
        join, sources = result.join, result.sources
        for role in ("flights", "airports"):
            echo(
                f"{role}: {sources[role]['rows']:,} rows from {len(sources[role]['tables'])} table(s) "
                f"via {sources[role]['reader']} ({sources[role]['url']})"
            )
        echo(
            f"joined on {spec.key} ({spec.how}): {join['joined_rows']:,} rows; unmatched keys: "
            f"{join['unmatched_flight_keys']:,} flights, {join['unmatched_airport_keys']:,} airports"
        )
        mlflow.log_params(
            {
                "flights_reader": sources["flights"]["reader"],
                "airports_reader": sources["airports"]["reader"],
                "flights_tables": ",".join(sources["flights"]["tables"]),
                "airports_tables": ",".join(sources["airports"]["tables"]),
            }
        )
        mlflow.log_metrics(
            {
                "flight_rows": join["flight_rows"],
                "airport_rows": join["airport_rows"],
                "joined_rows": join["joined_rows"],
                "matched_keys": join["matched_keys"],
                "unmatched_flight_keys": join["unmatched_flight_keys"],
                "unmatched_airport_keys": join["unmatched_airport_keys"],
                "acquisition_seconds": result.seconds,
                "rows_per_second": join["joined_rows"] / result.seconds if result.seconds else 0.0,
            }
        )
        verdict = quality.evaluate(result.profile, key=spec.key)
        profile = {**result.profile, "quality": verdict}
        profile_dir = work / PROFILE_ARTIFACTS
        profile_dir.mkdir()
        (profile_dir / "profile.json").write_text(json.dumps(profile, indent=2, default=str), encoding="utf-8")
        html_info = write_html(target, profile, verdict, profile_dir / "profile.html", key=spec.key, label=flights.LABEL)
        mlflow.log_artifacts(str(profile_dir), PROFILE_ARTIFACTS)
        mlflow.log_artifact(str(target), DATA_ARTIFACTS)
        artifact = f"{DATA_ARTIFACTS}/{target.name}"
        asset = f"runs:/{run_id}/{artifact}"
        nulls = {name: col["nulls"] for name, col in result.profile["columns"].items()}
        source = _dataset_source(mlflow.get_artifact_uri(artifact), requested, target)
        dataset = training_dataset(
            target, source, nulls, name=f"airline_delays_2013_months_{months_label(months)}", targets=flights.LABEL
        )
        with quiet_mlflow_data():
            mlflow.log_input(dataset, context="training")
        mlflow.set_tags(
            {"training_data_quality_flag": verdict["flag"], "training_data_asset": asset, "dataset_digest": dataset.digest}
        )
        echo(f"quality: {verdict['flag']}" + "".join(f"\n  reason: {r}" for r in verdict["reasons"])
             + "".join(f"\n  warning: {w}" for w in verdict["warnings"]))
        summary: dict[str, Any] = {
            "run_id": run_id,
            "output": str(target) if output else None,
            "training_data_asset": asset,
            "rows": result.rows,
            "months": months,
            "engine": engine,
            "readers": {role: sources[role]["reader"] for role in sources},
            "sources": sources,
            "join": join,
            "dataset": {"name": dataset.name, "digest": dataset.digest, "source": source},
            "training_data_quality_flag": verdict["flag"],
            "reasons": verdict["reasons"],
            "warnings": verdict["warnings"],
            "profile_html": html_info,
        }
        if model:
            summary["governance"] = record(model, asset, verdict, run_id, result.rows)
            echo(f"recorded on {model}: training_data_asset={asset}, training_data_quality_flag={verdict['flag']} "
                 f"(now {summary['governance']['stage']!r})")
        mlflow.log_dict(summary, "acquisition/summary.json")
        echo(f"training set: {asset}" + (f" (and {target})" if output else "") + f", digest {dataset.digest}")
        return summary


def record(model: str, asset: str, verdict: dict[str, Any], run_id: str, rows: int) -> dict[str, Any]:
    """Submit the Data Acquisition step of ``model`` as the acting ModelDataEngineer."""
    from mlflow_governance.client.governance import GovernanceClient

    if verdict["flag"] not in (quality.ACCEPTABLE, quality.NOT_ACCEPTABLE):
        raise MlflowException(f"unexpected quality flag {verdict['flag']!r}", error_code=INVALID_PARAMETER_VALUE)
    comment = f"acquisition run {run_id}: {rows:,} rows, data {verdict['flag']}"
    if verdict["reasons"]:
        comment += "; reasons: " + "; ".join(verdict["reasons"])
    if verdict["warnings"]:
        comment += "; warnings: " + "; ".join(verdict["warnings"])
    comment += f"; profile: runs:/{run_id}/{PROFILE_ARTIFACTS}/profile.html"
    client = GovernanceClient()
    client.transition(
        model,
        "submit",
        fields={"training_data_asset": asset, "training_data_quality_flag": verdict["flag"]},
        comment=comment,
    )
    status = client.status(model)
    return {"model": model, "stage": status.get("stage"), "fields": status.get("fields", {})}
