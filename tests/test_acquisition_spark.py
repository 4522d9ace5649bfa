"""The acquisition on Apache Spark, in local mode, against the session's real PostgreSQL and SQLite.

One local Spark session (``local[2]``, Debian's JDBC drivers) serves every in-process test and is
stopped at the end; ``mlflow run -e acquire -P engine=spark`` starts its own. The Spark output is
compared with the streaming path's: the same Arrow schema, rows and order, dataset digest, profile
and verdict. The refusals are those of the streaming path: nothing written, no run logged.
"""

from __future__ import annotations

import json
import math
import zipfile

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from mlflow_governance.acquisition import jdbc, quality, spark_engine
from mlflow_governance.acquisition.dataset import parquet_digest
from mlflow_governance.acquisition.errors import AcquisitionError
from mlflow_governance.acquisition.join import JoinSpec
from mlflow_governance.core import workflow as wf
from tests.conftest import acting, free_port, unique
from tests.plugins.acquisition_fixtures import expected_training_set
from tests.test_acquisition_step import mlflow_run, model_in_data_acquisition, only_run, run_cli

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install -e '.[test]' installs it)")
if not (jdbc.JAR_DIRECTORY / "postgresql.jar").is_file() or not (jdbc.JAR_DIRECTORY / "sqlite-jdbc.jar").is_file():
    pytest.skip("Debian's JDBC drivers are missing (make spark-jdbc installs them)", allow_module_level=True)


@pytest.fixture(scope="module")
def spark(acquisition_sources, tmp_path_factory):
    _, jars = spark_engine.driver_jars([acquisition_sources.sqlite_url, acquisition_sources.pg_url])
    session = spark_engine.new_session("local[2]", jars, tmp_path_factory.mktemp("spark-scratch"), shuffle_partitions=2)
    yield session
    session.stop()


def _nulls(result) -> dict[str, int]:
    return {name: col["nulls"] for name, col in result.profile["columns"].items()}


def _same_profile(got: dict, expected: dict) -> None:
    """Counts and values equal; means, deviations and skews to floating-point rounding."""
    assert got["rows"] == expected["rows"] and got["label"] == expected["label"]
    assert list(got["columns"]) == list(expected["columns"])
    for name, column in expected["columns"].items():
        other = got["columns"][name]
        assert set(other) == set(column), name
        for stat, value in column.items():
            if stat in ("mean", "std", "skew") and value is not None:
                assert math.isclose(other[stat], value, rel_tol=1e-9, abs_tol=1e-12), (name, stat)
            else:
                assert other[stat] == value, (name, stat)


def test_spark_output_digest_and_profile_equal_the_stream_engines(spark, acquisition_sources, acquired_training_set,
                                                                   tmp_path):
    out = tmp_path / "spark.parquet"
    result = spark_engine.acquire(acquisition_sources.sqlite_url, acquisition_sources.pg_url, [1, 2, 3], out, spark=spark)
    stream = acquired_training_set.result

    got, expected = pq.read_table(out), pq.read_table(acquired_training_set.path)
    assert got.schema.equals(expected.schema)  # same names, order and Arrow types
    assert got.equals(expected)  # same rows in the same order
    assert result.rows == stream.rows == len(expected_training_set([1, 2, 3]))
    digest = parquet_digest(out, _nulls(result))
    assert digest == parquet_digest(acquired_training_set.path, _nulls(stream))
    assert digest == mlflow.data.from_pandas(pd.read_parquet(out)).digest

    _same_profile(result.profile, stream.profile)
    assert {k: v for k, v in result.join.items() if k != "max_buffered_rows"} == \
        {k: v for k, v in stream.join.items() if k != "max_buffered_rows"}
    verdict, stream_verdict = quality.evaluate(result.profile, key="FLIGHT_ID"), quality.evaluate(stream.profile,
                                                                                                   key="FLIGHT_ID")
    assert verdict["flag"] == stream_verdict["flag"] and verdict["reasons"] == stream_verdict["reasons"]
    assert verdict["warnings"] == stream_verdict["warnings"]

    # Read over JDBC in partitions of the key, bounds from the databases.
    assert result.readers == {"flights": "spark-jdbc-sqlite", "airports": "spark-jdbc-postgresql"}
    for role in ("flights", "airports"):
        note = result.sources[role]["notes"][0]
        assert note.startswith("2 JDBC partition(s) on FLIGHT_ID in [1, "), note
    provenance = json.loads(pq.ParquetFile(out).metadata.metadata[b"mlgov.acquisition"])
    assert provenance["sources"]["flights"]["reader"] == "spark-jdbc-sqlite"
    assert [p.name for p in tmp_path.iterdir()] == ["spark.parquet"]  # no part files or staging left here


def test_left_join_and_unmatched_keys_like_the_stream_engine(spark, acquisition_sources, tmp_path):
    from mlflow_governance.acquisition.pipeline import acquire

    spec = JoinSpec(how="left", flights_table="{MONTH}_FLIGHT_INFORMATION", airports_table="january_airport_information")
    args = (acquisition_sources.pg_url, acquisition_sources.sqlite_url, [1, 2])
    stream = acquire(*args, tmp_path / "stream.parquet", spec)
    result = spark_engine.acquire(*args, tmp_path / "spark.parquet", spec, spark=spark)
    assert pq.read_table(tmp_path / "spark.parquet").equals(pq.read_table(tmp_path / "stream.parquet"))
    assert result.join["unmatched_flight_keys"] == stream.join["unmatched_flight_keys"] > 0
    assert result.join["unmatched_flight_sample"] == stream.join["unmatched_flight_sample"]
    assert result.join["joined_rows"] == stream.join["joined_rows"]
    _same_profile(result.profile, stream.profile)


def test_staging_on_shared_storage_is_emptied_after_the_merge(spark, acquisition_sources, tmp_path):
    """--spark-staging: the part files go under a URI the cluster and the driver both open, then away."""
    from mlflow_governance.acquisition.pipeline import acquire

    shared = tmp_path / "shared"
    shared.mkdir()
    urls = (acquisition_sources.pg_url, acquisition_sources.sqlite_url)
    acquire(*urls, [1], tmp_path / "stream.parquet")
    spark_engine.acquire(*urls, [1], tmp_path / "spark.parquet", spark=spark, staging=shared.as_uri())
    assert pq.read_table(tmp_path / "spark.parquet").equals(pq.read_table(tmp_path / "stream.parquet"))
    assert list(shared.iterdir()) == []
    with pytest.raises(AcquisitionError, match="staging location nowhere://x cannot be opened here"):
        spark_engine.check(*urls, "local[2]", staging="nowhere://x")


def _refused(spark, tmp_path, match, flights_url, airports_url, months=(1,), spec=None):
    out = tmp_path / "out" / "training.parquet"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(b"previous good file")
    with pytest.raises(AcquisitionError, match=match):
        spark_engine.acquire(flights_url, airports_url, list(months), out, spec, spark=spark)
    assert out.read_bytes() == b"previous good file"
    assert [p.name for p in out.parent.iterdir()] == ["training.parquet"]


def test_spark_refusals_write_nothing(spark, acquisition_sources, tmp_path):
    lite, pg = acquisition_sources.sqlite_url, acquisition_sources.pg_url
    _refused(spark, tmp_path, "join on FLIGHT_ID matched nothing", lite, pg,
             spec=JoinSpec(flights_table="JANUARY_FLIGHT_INFORMATION", airports_table="february_airport_information"))
    _refused(spark, tmp_path, "has no table APRIL_FLIGHT_INFORMATION", pg, lite, months=(3, 4))
    _refused(spark, tmp_path, "cannot connect to the airports database", lite,
             f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    from mlflow_governance.acquisition.sources import flight_table

    engine = sa.create_engine(empty)
    flight_table("EMPTY_FLIGHTS").create(engine)
    engine.dispose()
    _refused(spark, tmp_path, "flights source returned no rows", empty, pg, spec=JoinSpec(flights_table="EMPTY_FLIGHTS"))
    with pytest.raises(AcquisitionError, match="'local\\[0\\]' is not a master URL"):
        spark_engine.check_master("local[0]")


def test_db2_needs_ibms_jar_and_mysql_is_refused(tmp_path):
    db2 = "db2+ibm_db://db2inst1:secret@127.0.0.1:50000/FLIGHTS"
    with pytest.raises(AcquisitionError, match=r"no JDBC driver for the flights database \(db2\).*--jdbc-jar"):
        jdbc.jdbc_source(db2, "flights")
    not_a_driver = tmp_path / "db2jcc4.jar"
    with zipfile.ZipFile(not_a_driver, "w") as archive:
        archive.writestr("README", "no driver here")
    with pytest.raises(AcquisitionError, match="is not a JDBC driver jar"):
        spark_engine.driver_jars([db2, db2], [not_a_driver])
    with pytest.raises(AcquisitionError, match="does not exist"):
        spark_engine.driver_jars([db2, db2], [tmp_path / "missing.jar"])
    # A jar that registers IBM's driver class is taken, the password kept out of the URL.
    fake = tmp_path / "ibm" / "db2jcc4.jar"
    fake.parent.mkdir()
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("META-INF/services/java.sql.Driver", "com.ibm.db2.jcc.DB2Driver\n")
    source = jdbc.jdbc_source(db2, "flights", jdbc.check_jars([fake]))
    assert (source.url, source.jar, source.properties) == (
        "jdbc:db2://127.0.0.1:50000/FLIGHTS", fake, {"user": "db2inst1", "password": "secret"})
    with pytest.raises(AcquisitionError, match="the spark engine reads PostgreSQL, SQLite and DB2"):
        jdbc.jdbc_source("mysql+pymysql://u@127.0.0.1/x", "airports")


def test_mlgov_acquire_engine_spark_records_the_same_dataset(spark, sqlite_registry, acquisition_sources, tmp_path):
    name = unique("delay")
    client = model_in_data_acquisition(name)
    urls = ("--flights-url", acquisition_sources.pg_url, "--airports-url", acquisition_sources.sqlite_url)
    r = run_cli("acquire", *urls, "--months", "1", "--engine", "spark", "--output", "jan.parquet", "--model", name,
                "--json", user="erin")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["engine"] == "spark"
    assert summary["readers"] == {"flights": "spark-jdbc-postgresql", "airports": "spark-jdbc-sqlite"}
    jan = pd.read_parquet(tmp_path / "jan.parquet")
    expected = expected_training_set([1])
    assert jan["FLIGHT_ID"].tolist() == expected["FLIGHT_ID"].tolist() and list(jan.columns) == list(expected.columns)
    run = only_run()
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == summary["dataset"]["digest"] == mlflow.data.from_pandas(jan).digest
    assert run.data.params["engine"] == "spark"
    assert run.data.params["spark_session_master"] == "local[2]"  # the session it ran on
    assert run.data.metrics["joined_rows"] == len(expected)
    status = client.status(name)
    assert status["stage"] == wf.DATA_ACQUISITION_COMPLETED
    assert status["fields"]["training_data_quality_flag"] == summary["training_data_quality_flag"] == "acceptable"
    # The session the tests started is still running: mlgov used it and left it alone.
    assert spark.sparkContext._jsc is not None and spark.range(3).count() == 3

    # Without --force, the existing output is refused before any run.
    r = run_cli("acquire", *urls, "--months", "1", "--engine", "spark", "--output", "jan.parquet", user="erin")
    assert r.exit_code == 2 and "already exists" in r.output
    assert len(MlflowClient().search_runs(["0"])) == 1


def test_mlgov_acquire_engine_spark_refusals(spark, sqlite_registry, acquisition_sources, tmp_path):
    urls = ("--flights-url", acquisition_sources.sqlite_url, "--airports-url", acquisition_sources.pg_url, "--months", "1")
    name = unique("delay")
    with acting("olivia"):
        from mlflow_governance.client.governance import GovernanceClient

        GovernanceClient().initiate(name, use_case="delay prediction")
    r = run_cli("acquire", *urls, "--engine", "spark", "--model", name, user="erin")
    assert r.exit_code == 3 and "is in stage 'Candidacy Review'" in r.output
    with acting("adam"):
        GovernanceClient().transition(name, "approve")
    r = run_cli("acquire", *urls, "--engine", "spark", "--model", name, user="devi")
    assert r.exit_code == 3 and "ModelDataEngineer role is required" in r.output
    r = run_cli("acquire", *urls, "--engine", "spark", "--flights-table", "NOPE_{MONTH}", "--output", "x.parquet")
    assert r.exit_code == 2 and "has no table NOPE_JANUARY" in r.output
    r = run_cli("acquire", "--flights-url", f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
                "--airports-url", acquisition_sources.pg_url, "--months", "1", "--engine", "spark")
    assert r.exit_code == 2 and "Error: cannot connect to the flights database" in r.output
    r = run_cli("acquire", "--flights-url", "db2+ibm_db://u:pw@127.0.0.1:50000/DB", "--airports-url",
                acquisition_sources.pg_url, "--months", "1", "--engine", "spark")
    assert r.exit_code == 2 and "Error: no JDBC driver for the flights database (db2)" in r.output
    assert "pw" not in r.output
    r = run_cli("acquire", *urls, "--engine", "spark", "--reader", "arrow")
    assert r.exit_code == 2 and "the spark engine reads over JDBC" in r.output
    r = run_cli("acquire", *urls, "--engine", "spark", "--spark-master", "nowhere")
    assert r.exit_code == 2 and "'nowhere' is not a master URL" in r.output
    assert MlflowClient().search_runs(experiment_ids=["0"]) == []
    assert not (tmp_path / "x.parquet").exists()
    assert GovernanceClient().status(name)["stage"] == wf.DATA_ACQUISITION


def test_mlflow_run_engine_spark(sqlite_registry, acquisition_sources, tmp_path):
    from mlflow_governance.acquisition.pipeline import acquire

    stream = acquire(acquisition_sources.sqlite_url, acquisition_sources.pg_url, [2], tmp_path / "stream.parquet")
    out = tmp_path / "training.parquet"
    proc = mlflow_run(f"flights_url={acquisition_sources.sqlite_url}", f"airports_url={acquisition_sources.pg_url}",
                      "months=2", f"output={out}", "engine=spark", "spark_master=local[2]", user="erin")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "stream.parquet"))
    run = only_run()
    assert run.data.params["engine"] == "spark" and run.data.params["flights_reader"] == "spark-jdbc-sqlite"
    assert run.data.tags["training_data_quality_flag"] == "not acceptable"  # February misses labels, as streamed
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == parquet_digest(tmp_path / "stream.parquet", _nulls(stream))
