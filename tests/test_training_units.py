"""The pieces of model development on their own: data handling, split, search, trust, statistics."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlflow_governance.cli.training import METRIC_CHOICES
from mlflow_governance.core.features import FEATURES, NOT_FEATURES
from mlflow_governance.training import data as tdata
from mlflow_governance.training.pipeline import build_pipeline, trusted_types
from mlflow_governance.training.search import METRICS, candidates, check_metric, evaluate, rank
from mlflow_governance.training.statistics import numeric_summary, reference_sample, training_data_statistics


@pytest.fixture(scope="module")
def labeled(training_parquet) -> tdata.LabeledData:
    return tdata.label_rows(pd.read_parquet(training_parquet))


def test_unlabeled_rows_are_dropped_and_counted(training_parquet, labeled):
    raw = pd.read_parquet(training_parquet)
    assert labeled.rows_total == len(raw)
    assert labeled.rows_missing_label == int(raw["DELAYED"].isna().sum()) > 0
    assert len(labeled.frame) == labeled.rows_total - labeled.rows_missing_label
    assert set(labeled.y.unique()) == {0, 1}
    # FLIGHT_ID and YEAR are not features; the features keep the acquisition types
    assert list(labeled.X.columns) == list(FEATURES)
    assert not set(NOT_FEATURES) & set(labeled.X.columns)
    assert labeled.X["MONTH"].dtype == "int64" and labeled.X["DEPARTURE_DELAY"].dtype == "float64"


def test_split_is_seeded_stratified_and_disjoint(labeled):
    a, b, c = tdata.split(labeled, seed=42), tdata.split(labeled, seed=42), tdata.split(labeled, seed=7)
    assert a.X_test.index.equals(b.X_test.index) and a.X_train.index.equals(b.X_train.index)
    assert not a.X_test.index.equals(c.X_test.index)
    parts = [set(a.X_train.index), set(a.X_val.index), set(a.X_test.index)]
    assert sum(map(len, parts)) == len(labeled.frame) == len(set().union(*parts))
    rate = labeled.y.mean()
    for y in (a.y_train, a.y_val, a.y_test):
        assert abs(y.mean() - rate) < 0.01
    sizes = a.sizes()
    assert sizes["train"] == pytest.approx(0.6 * len(labeled.frame), abs=2)


def test_local_path_accepts_paths_and_file_uris(training_parquet):
    assert tdata.local_path(str(training_parquet)) == training_parquet
    assert tdata.local_path(training_parquet.as_uri()) == training_parquet
    with pytest.raises(ValueError, match="no training data"):
        tdata.local_path("  ")


def test_training_and_validation_data_refuse_a_bad_parquet_each_in_its_own_words(tmp_path, training_parquet):
    """One check (`tdata.read_parquet`) serves both readers; each names its data and the columns it needs."""
    from mlflow_governance.scoring.inputs import read_validation_data

    (tmp_path / "text.parquet").write_text("not Parquet")
    pd.DataFrame({"A": [1]}).to_parquet(tmp_path / "a.parquet")
    pd.read_parquet(training_parquet).iloc[:0].to_parquet(tmp_path / "empty.parquet")
    for name, problem in (("missing.parquet", "does not exist (or is not a file)"), ("", "does not exist"),
                          ("text.parquet", "is not a readable Parquet file: ")):
        path = str(tmp_path / name)
        with pytest.raises(ValueError, match=re.escape(f"training data {path!r} {problem}")):
            tdata.read_training_data(path)
        with pytest.raises(ValueError, match=re.escape(f"validation data {path!r} {problem}")):
            read_validation_data(path)
    path = tmp_path / "a.parquet"
    with pytest.raises(ValueError, match=re.escape(  # the file as read (a file:// URI is a path here)
            f"training data {str(path)!r} lacks column(s) {', '.join(tdata.REQUIRED_COLUMNS)} (expected the "
            f"acquisition columns {', '.join(tdata.REQUIRED_COLUMNS)})")):
        tdata.read_training_data(path.as_uri())
    with pytest.raises(ValueError, match=re.escape(  # the data as given
            f"validation data {path.as_uri()!r} lacks the model's column(s) {', '.join(FEATURES)} (the model takes "
            f"{', '.join(FEATURES)})")):
        read_validation_data(path.as_uri())
    assert tdata.read_training_data(str(tmp_path / "empty.parquet")).empty  # label_rows refuses it later
    with pytest.raises(ValueError, match="has no rows"):
        read_validation_data(str(tmp_path / "empty.parquet"))


def test_train_and_import_model_share_their_options():
    """Declared once (cli/training.py), in each command's order, with each command's words for metric and seed."""
    from mlflow_governance.cli.training import import_model, train

    def options(command):
        return {p.name: (p.opts, p.type.name, p.required, p.default, p.metavar, p.help) for p in command.params}

    ours, theirs = options(train), options(import_model)
    assert list(ours) == ["data", "model", "quick", "metric", "seed", "experiment", "as_json"]
    assert list(theirs) == ["model_file", "data", "model", "development_system", "metric", "seed", "experiment",
                            "as_json"]
    assert all(ours[name] == theirs[name] for name in ("data", "model", "experiment", "as_json"))
    assert ours["metric"][:-1] == theirs["metric"][:-1] and ours["seed"][:-1] == theirs["seed"][:-1]
    assert ours["metric"][-1] == "Validation metric that picks the model to register."
    assert theirs["metric"][-1] == "Metric recorded as model_quality."
    assert (ours["seed"][-1], theirs["seed"][-1]) == ("Seed of the split and the estimators.",
                                                      "Seed of the evaluation split.")


def test_the_train_entry_point_hands_its_parameters_to_mlgov_train(capsys):
    """projects/train.py (`mlflow run -e train`): blank data and false quick are left out; a bad
    quick is argparse's usage error, a bad metric mlgov train's own; both exit 2."""
    spec = importlib.util.spec_from_file_location("entry_train", Path(__file__).resolve().parents[1] / "projects"
                                                  / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry = module.ENTRY
    assert entry.command(entry.parse(["--data= ", "--model=m", "--quick= Yes", "--metric=f1"])) == [
        "train", "--model", "m", "--metric", "f1", "--quick"]
    assert entry.command(entry.parse(["--data=d.parquet", "--model=m", "--quick=", "--metric=roc_auc"])) == [
        "train", "--model", "m", "--metric", "roc_auc", "--data", "d.parquet"]
    for argv, said in ((["--model=m", "--quick=maybe"], "error: quick must be true or false, not 'maybe'"),
                       (["--model=m", "--metric=bogus"], "Error: Invalid value for '--metric': 'bogus' is not one")):
        with pytest.raises(SystemExit) as exited:
            module.main(argv)
        assert exited.value.code == 2
        assert said in capsys.readouterr().err


def test_candidates_cover_three_families_and_quick_is_smaller():
    full, quick = candidates(), candidates(quick=True)
    assert (
        {c.family for c in full}
        == {c.family for c in quick}
        == {"logistic_regression", "random_forest", "hist_gradient_boosting"}
    )
    assert len(quick) < len(full)
    assert len({c.name for c in full}) == len(full)


def test_metric_choice_and_ranking():
    assert METRIC_CHOICES == METRICS  # the CLI offers exactly the metrics the search computes
    assert check_metric("f1") == "f1"
    with pytest.raises(ValueError, match="choose one of accuracy"):
        check_metric("auc")
    board = pd.DataFrame({"candidate": ["a", "b", "c"], "roc_auc": [0.7, 0.9, 0.8], "log_loss": [0.5, 0.3, 0.2]})
    assert list(rank(board, "roc_auc")["candidate"]) == ["b", "c", "a"]
    assert list(rank(board, "log_loss")["candidate"]) == ["c", "b", "a"]  # lower is better


def test_every_family_trains_on_raw_columns_and_tolerates_unseen_values(labeled):
    split = tdata.split(labeled)
    odd = split.X_test.head(20).copy()
    odd.loc[odd.index[:5], "CARRIER"] = "ZZ"  # a carrier never seen in training
    odd.loc[odd.index[5:10], "DEPARTURE_DELAY"] = np.nan  # a cancelled flight
    odd.loc[odd.index[10:12], "DESTINATION_AIRPORT"] = None
    for cand in candidates(quick=True):
        model = build_pipeline(cand.family, cand.params, seed=0).fit(split.X_train, split.y_train)
        scores = evaluate(model, split.X_val, split.y_val)
        assert set(scores) == set(METRICS) and 0.5 < scores["roc_auc"] <= 1.0
        assert set(model.predict(odd)) <= {0, 1}
        trusted_types(model)  # saves with skops, declared types all trusted


def test_trusted_types_refuse_foreign_code():
    X, y = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]}), [0, 1, 0, 1]
    evil = Pipeline([("f", FunctionTransformer(os.system)), ("clf", LogisticRegression())])
    with pytest.raises(ValueError, match=f"not trusted for loading.*{os.system.__module__}.system"):
        trusted_types(evil)
    # A NumPy *function* is refused too (only classes, and scikit-learn's own stored helpers, are
    # trusted): numpy.savetxt bound the same way would write files when the model scores.
    numpy_function = Pipeline(
        [("f", FunctionTransformer(functools.partial(np.clip, a_min=0, a_max=2))), ("clf", LogisticRegression())]
    ).fit(X, y)
    with pytest.raises(ValueError, match="numpy.clip"):
        trusted_types(numpy_function)
    from sklearn.utils.validation import check_array

    fine = Pipeline(
        [("f", FunctionTransformer(functools.partial(check_array, dtype=float))), ("clf", LogisticRegression())]
    ).fit(X, y)
    assert {"functools.partial", "sklearn.utils.validation.check_array"} <= set(trusted_types(fine))


def test_statistics_document(labeled):
    stats = training_data_statistics(labeled, {"train": 1}, seed=1, reference_rows=20)
    assert stats["reference_sample"]["rows"] == 20
    sample = reference_sample(labeled, seed=1, rows=20)
    assert len(sample) == 20 and list(sample.columns) == [*FEATURES, "DELAYED"]
    assert sample.equals(reference_sample(labeled, seed=1, rows=20))  # seeded
    assert set(stats["feature_statistics"]) == set(FEATURES)
    assert stats["label_distribution"]["shares"]["1"] == pytest.approx(labeled.y.mean())
    assert numeric_summary(pd.Series([np.nan, np.nan])) == {"type": "numeric", "count": 0, "missing": 2}
    s = numeric_summary(pd.Series([1.0, 2.0, 3.0, np.nan]))
    assert (s["count"], s["missing"], s["mean"], s["quantiles"]["0.5"]) == (3, 1, 2.0, 2.0)


def test_training_is_reproducible_for_a_seed(labeled):
    split = tdata.split(labeled)
    for cand in candidates(quick=True):
        first = build_pipeline(cand.family, cand.params, seed=5).fit(split.X_train, split.y_train)
        again = build_pipeline(cand.family, cand.params, seed=5).fit(split.X_train, split.y_train)
        # equal up to floating-point summation order in threaded code
        np.testing.assert_allclose(first.predict_proba(split.X_test), again.predict_proba(split.X_test), rtol=1e-9)


def test_reads_the_parquet_that_acquisition_writes(acquired_training_set):
    """The contract between the stages: acquisition's real output loads, labels and splits."""
    raw = pd.read_parquet(acquired_training_set.path)
    data, split = tdata.load(str(acquired_training_set.path))
    assert data.rows_total == len(raw) and data.rows_missing_label == int(raw["DELAYED"].isna().sum())
    assert sum(split.sizes().values()) == len(data.frame)
    X = data.X
    assert all(X[c].dtype == "int64" for c in tdata.INTEGER_FEATURES)
    assert all(X[c].dtype == "float64" for c in ("DEPARTURE_DELAY", "DISTANCE"))
    assert all(X[c].map(type).isin([str, float]).all() for c in tdata.CATEGORICAL_FEATURES)
