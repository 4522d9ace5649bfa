"""Explanations: ``POST /explain`` on a real sidecar, ``mlgov explain REQUEST_ID`` on its payload rows,
an imported outside model, and the choice between SHAP's tree and model-agnostic explainers.

What is checked everywhere: the contributions are keyed by exactly the raw feature columns, and
base value + contributions = the model's output (P(DELAYED)) within the additivity tolerance; a
counterfactual, when there is one, flips the prediction when the changed row is scored again.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import sqlalchemy as sa
from click.testing import CliRunner

from mlflow_governance.cli.main import cli
from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.features import FEATURES
from mlflow_governance.scoring import explanations
from mlflow_governance.scoring.decision import DECISION_THRESHOLD
from mlflow_governance.sidecar import schema
from mlflow_governance.training.data import feature_frame, label_rows
from tests.cli_in_process import mlgov as mlgov_in_process
from tests.conftest import acting, free_port
from tests.test_sidecar import bad_bodies, wait_for_status
from tests.test_sidecar_support import (
    bodies_for,
    copy_registry,
    eventually,
    feature_rows,
    records,
    run_sidecar,
    serve_args,
    sidecar_env,
)

MAX_BODY = 65536
TOLERANCE = explanations.ADDITIVITY_TOLERANCE


@pytest.fixture(scope="module")
def served(production_model, tmp_path_factory):
    """(registry copy, running sidecar) for the module."""
    work = tmp_path_factory.mktemp("explain-sidecar")
    registry = copy_registry(production_model, work, "registry.db")
    env = sidecar_env(registry.registry_uri, registry.tracking_uri, MLGOV_USER="mona")
    with run_sidecar(work / "run", env, "--model", registry.model,
                     *serve_args("--max-body-bytes", str(MAX_BODY))) as sidecar:
        yield registry, sidecar


@pytest.fixture(scope="module")
def payload_url(served):
    return f"sqlite:///{served[1].workdir / 'mlgov-payloads.db'}"


@pytest.fixture(scope="module")
def near_threshold(served, winter_flights):
    """Ten winter flights the served model scores closest to the decision threshold (where a
    single change most often flips the prediction), one of them without a departure delay."""
    _, sidecar = served
    pool = feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).sample(200, random_state=5))
    scored = sidecar.score({"dataframe_split": json.loads(pool.to_json(orient="split"))}).json()
    order = np.argsort(np.abs(np.asarray(scored["probabilities"]) - DECISION_THRESHOLD))
    missing = feature_rows(winter_flights[winter_flights["DEPARTURE_DELAY"].isna()].head(1))
    return pd.concat([pool.iloc[order[:9]], missing]).reset_index(drop=True)


def assert_explained(item, output=None):
    assert set(item["contributions"]) == set(FEATURES)
    assert len(item["contributions"]) == len(FEATURES)
    total = item["base_value"] + sum(item["contributions"].values())
    assert abs(total - item["output"]) <= TOLERANCE, item
    assert item["additivity_error"] <= TOLERANCE
    assert 0.0 <= item["base_value"] <= 1.0
    assert item["prediction"] == int(item["output"] >= DECISION_THRESHOLD)
    if output is not None:
        assert item["output"] == pytest.approx(output, rel=1e-9, abs=1e-12)


# --- POST /explain -------------------------------------------------------------------------------


def test_explain_is_additive_in_raw_features_and_its_counterfactuals_flip(served, near_threshold):
    registry, sidecar = served
    body = {"dataframe_records": records(near_threshold)}
    scored = sidecar.score(body).json()
    started = time.perf_counter()
    r = sidecar.post("/explain", body, timeout=120)
    assert r.status_code == 200, r.text
    print(f"\nfirst /explain of {len(near_threshold)} rows (a worker's first: SHAP imported, the reference "
          f"read): {time.perf_counter() - started:.2f} s")
    out = r.json()
    assert out["model"] == registry.model and out["version"] == registry.version and "staging" not in out
    assert out["method"] in (explanations.TREE, explanations.KERNEL)
    assert out["background_rows"] == explanations.BACKGROUND_ROWS
    assert out["actionable_features"] == list(explanations.ACTIONABLE_FEATURES)
    assert len(out["explanations"]) == len(near_threshold)
    flipped = 0
    for i, item in enumerate(out["explanations"]):
        assert_explained(item, scored["probabilities"][i])
        assert item["prediction"] == scored["predictions"][i]
        cf = item["counterfactual"]
        if cf is None:
            assert "no single change" in item["counterfactual_reason"]
            continue
        assert cf["feature"] in explanations.ACTIONABLE_FEATURES and cf["to"] != cf["from"]
        changed = records(near_threshold.iloc[[i]])[0] | {cf["feature"]: cf["to"]}
        again = sidecar.score({"dataframe_records": [changed]}).json()
        assert again["predictions"][0] == cf["prediction"] != item["prediction"]
        assert again["probabilities"][0] == pytest.approx(cf["probability"], rel=1e-9)
        flipped += 1
    assert flipped >= 1, [e["counterfactual_reason"] for e in out["explanations"]]
    # every body format /invocations takes, the same explanation
    one = near_threshold.head(2)
    first = sidecar.post("/explain", {"dataframe_records": records(one)}).json()["explanations"]
    for name, fmt in bodies_for(one).items():
        again = sidecar.post("/explain", fmt).json()["explanations"]
        for a, b in zip(first, again, strict=True):
            assert a["contributions"] == pytest.approx(b["contributions"], abs=1e-12), name
    # one explanation, warm: measured and printed (not asserted)
    started = time.perf_counter()
    timed = sidecar.post("/explain", {"dataframe_records": records(near_threshold.head(1))}).json()
    print(f"\none explanation ({timed['method']}): {timed['seconds']:.3f} s in the worker, "
          f"{time.perf_counter() - started:.3f} s over HTTP")


def test_explain_refuses_bad_bodies_as_scoring_does(served, near_threshold):
    _, sidecar = served
    for name, data, content_type, status, code in bad_bodies(near_threshold):
        r = sidecar.post("/explain", data=data, content_type=content_type)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        assert r.json()["error_code"] == code, (name, r.json())
        assert "Traceback" not in r.json()["message"]
    many = pd.concat([near_threshold] * 3).head(explanations_max_rows() + 1)
    r = sidecar.post("/explain", {"dataframe_records": records(many)})
    assert r.status_code == 400 and r.json()["error_code"] == "TOO_MANY_ROWS", r.text
    assert str(explanations_max_rows()) in r.json()["message"]
    assert sidecar.post("/explain", {"dataframe_records": records(near_threshold.head(1))}).status_code == 200
    text = sidecar.get("/metrics").text
    assert 'mlgov_sidecar_requests_total{endpoint="explain",status="200"}' in text
    assert "mlgov_sidecar_rows_explained_total" in text


def explanations_max_rows() -> int:
    from mlflow_governance.sidecar.app import MAX_EXPLAIN_ROWS

    return MAX_EXPLAIN_ROWS


def test_explain_is_refused_with_423_while_usability_is_reject(served, near_threshold):
    registry, sidecar = served
    client = GovernanceClient(registry.registry_uri)
    body = {"dataframe_records": records(near_threshold.head(1))}
    assert sidecar.post("/explain", body).status_code == 200
    with acting("mona"):
        client.transition(registry.model, wf.REJECT, registry.version, comment="explanations under review")
    try:
        wait_for_status(sidecar, body, 423)  # every worker refuses scoring now
        for _ in range(4):
            r = sidecar.post("/explain", body)
            assert r.status_code == 423, r.text
            assert r.json()["error_code"] == "MODEL_EXECUTION_NOT_ALLOWED"
            assert "explanations under review" in r.json()["message"]
        assert 'mlgov_sidecar_refusals_total{reason="usability_reject"}' in sidecar.get("/metrics").text
    finally:
        with acting("olivia"):
            client.transition(registry.model, wf.ACCEPT, registry.version, comment="reviewed")
    wait_for_status(sidecar, body, 200)
    assert sidecar.post("/explain", body).status_code == 200


# --- mlgov explain REQUEST_ID ------------------------------------------------------------------


def stored(payload_url, request_id):
    engine = sa.create_engine(payload_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(schema.payload).where(schema.payload.c.request_id == request_id)).first()
    finally:
        engine.dispose()


def test_mlgov_explain_explains_a_scored_request_like_the_sidecar(served, payload_url, near_threshold, tmp_path):
    registry, sidecar = served
    row = near_threshold.head(1)
    request_id = sidecar.score({"dataframe_records": records(row)}).json()["request_ids"][0]
    payload = eventually(lambda: stored(payload_url, request_id), what="the payload row")
    env = sidecar_env(registry.registry_uri, registry.tracking_uri)
    done = mlgov_in_process("explain", request_id, "--payload-url", payload_url, "--format", "json", cwd=tmp_path,
                            env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["request_id"] == request_id and doc["model"] == registry.model and doc["version"] == registry.version
    assert doc["staging"] is False
    assert_explained(doc, payload.probability)
    assert doc["scored_probability"] == payload.probability and doc["prediction"] == payload.prediction
    assert doc["features"] == json.loads(payload.features)
    # the same explanation as the sidecar's (same background, same method)
    live = sidecar.post("/explain", {"dataframe_records": records(row)}).json()["explanations"][0]
    assert doc["contributions"] == pytest.approx(live["contributions"], abs=1e-9)
    assert doc["base_value"] == pytest.approx(live["base_value"], abs=1e-12)
    assert doc["counterfactual"] == live["counterfactual"]
    # text: contributions by magnitude, the base value, the output and the counterfactual
    dashed = f"{request_id[:8]}-{request_id[8:12]}-{request_id[12:16]}-{request_id[16:20]}-{request_id[20:]}"
    text = mlgov_in_process("explain", dashed.upper(), "--payload-url", payload_url, cwd=tmp_path, env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"request {request_id}: {registry.model} version {registry.version} (production)")
    assert f"P(DELAYED) = {payload.probability:.4f}" in lines[1]
    assert lines[2].startswith(f"base value: {doc['base_value']:.4f}")
    shown = [line.split()[0] for line in lines[4:4 + len(FEATURES)]]
    ranked = sorted(doc["contributions"], key=lambda k: (-abs(doc["contributions"][k]), k))
    assert shown == ranked
    assert lines[-1].startswith("counterfactual: ")


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_mlgov_explain_errors_are_one_line_with_the_right_exit_code(served, payload_url, tmp_path):
    registry, _ = served
    env = {"MLFLOW_TRACKING_URI": registry.tracking_uri, "MLFLOW_REGISTRY_URI": registry.registry_uri}
    cases = [
        (["explain", "not-an-id", "--payload-url", payload_url], 2, "'not-an-id' is not a request id"),
        (["explain", "g" * 32, "--payload-url", payload_url], 2, "is not a request id"),
        (["explain", "0" * 32, "--payload-url", payload_url], 4, f"no scored row with request id {'0' * 32}"),
        (["explain", "0" * 32, "--payload-url", "not a url"], 2, "is not a database URL"),
        (["explain", "0" * 32, "--payload-url", f"sqlite:///{tmp_path / 'nowhere.db'}"], 6,
         f"the payload database sqlite:///{tmp_path / 'nowhere.db'} does not exist"),
    ]
    port = free_port()  # nothing listens there: the payload database is down
    down = f"postgresql://mlgov:s3cret-pw@127.0.0.1:{port}/payloads"
    cases.append((["explain", "0" * 32, "--payload-url", down], 6,
                  f"the payload database postgresql://mlgov:***@127.0.0.1:{port}/payloads is not reachable"))
    for args, code, message in cases:
        result = invoke(*args, env=env)
        assert result.exit_code == code, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "s3cret-pw" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "nowhere.db").exists()
    # a payload row of a version the registry does not have: 4, naming it
    engine = sa.create_engine(payload_url)
    with engine.begin() as conn:
        conn.execute(schema.payload.insert().values(
            request_id="a" * 32, ts=int(time.time() * 1000), model=registry.model, version=99, staging=False,
            features="{}", prediction=0, probability=0.1))
    engine.dispose()
    result = invoke("explain", "a" * 32, "--payload-url", payload_url, env=env)
    assert result.exit_code == 4, result.output
    assert f"{registry.model} version 99" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_staging_sidecar_explains_and_says_staging(trained_model, winter_flights, tmp_path):
    from tests.plugins.training_fixtures import _env

    registry = copy_registry(trained_model, tmp_path, "registry.db")
    with _env(MLGOV_ADMIN="admin"), acting("olivia"):
        GovernanceClient(registry.registry_uri).transition(registry.model, wf.APPROVE, registry.version,
                                                           comment="ready for validation")
    env = sidecar_env(registry.registry_uri, registry.tracking_uri, MLGOV_USER="victor")
    rows = feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(2))
    with run_sidecar(tmp_path / "run", env, "--model", registry.model, "--version", str(registry.version),
                     "--staging", *serve_args(workers=1)) as sidecar:
        scored = sidecar.score({"dataframe_records": records(rows)}).json()
        r = sidecar.post("/explain", {"dataframe_records": records(rows)})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["staging"] is True and out["version"] == registry.version
        for item, p in zip(out["explanations"], scored["probabilities"], strict=True):
            assert_explained(item, p)
        url = f"sqlite:///{sidecar.workdir / 'mlgov-payloads.db'}"
        eventually(lambda: stored(url, scored["request_ids"][0]), what="the staging payload row")
    result = invoke("explain", scored["request_ids"][0], "--payload-url", url,
                    env={"MLFLOW_TRACKING_URI": registry.tracking_uri, "MLFLOW_REGISTRY_URI": registry.registry_uri})
    assert result.exit_code == 0, result.output
    assert f"version {registry.version} (staging)" in result.stdout.splitlines()[0]


# --- an imported outside model -------------------------------------------------------------------


def outside_pipeline(parquet):
    """A model 'developed elsewhere', not one of our families: binned delay and distance, one-hot
    calendar and categories into a calibrated linear SVM, and DAY not used at all."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder
    from sklearn.svm import LinearSVC

    from mlflow_governance.core.features import CATEGORICAL_FEATURES

    data = label_rows(pd.read_parquet(parquet))
    binned = Pipeline([("impute", SimpleImputer(strategy="median")),
                       ("bins", KBinsDiscretizer(n_bins=6, encode="onehot-dense",
                                                 quantile_method="averaged_inverted_cdf"))])
    categorical = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="?")),
                            ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=20))])
    columns = ColumnTransformer([
        ("binned", binned, ["DEPARTURE_DELAY", "DISTANCE"]),
        ("calendar", OneHotEncoder(handle_unknown="ignore"), ["MONTH", "DAY_OF_WEEK", "SCHEDULED_HOUR"]),
        ("cat", categorical, list(CATEGORICAL_FEATURES)),
    ])  # remainder: DAY is dropped
    model = Pipeline([("features", columns), ("svm", CalibratedClassifierCV(LinearSVC(C=0.1), cv=3))])
    return model.fit(data.X, data.y)


def test_an_imported_outside_model_is_explained(approved_model, training_parquet, training_holdout, tmp_path,
                                                 training_cli):
    from mlflow_governance.safe.model_files import load_mlflow_sklearn
    from mlflow_governance.sidecar import payloads
    from mlflow_governance.sidecar.bodies import columns_from_mlmodel

    path = tmp_path / "outside.skops"
    sio.dump(outside_pipeline(training_parquet), path)
    result = training_cli("import-model", "--model-file", str(path), "--model", approved_model, "--json")
    assert result.exit_code == 0, result.output
    version = json.loads(result.stdout)["version"]
    fields = GovernanceClient().status(approved_model, version)["version"]["fields"]
    model, document = load_mlflow_sklearn(f"models:/{approved_model}/{version}", tmp_path / "model")
    columns = [c.name for c in columns_from_mlmodel(document)]
    explainer = explanations.for_version(approved_model, version, model, columns, fields)
    assert explainer.method == explanations.KERNEL  # not a tree ensemble: the model-agnostic explainer
    rows = feature_frame(training_holdout).head(3)
    found = explainer.explain(rows)
    probability = model.predict_proba(rows[columns])[:, 1]
    for item, p in zip(found, probability, strict=True):
        assert_explained(item.to_dict(), p)
        assert item.exact
        assert abs(item.contributions["DAY"]) < 1e-12  # a column the model never reads gets nothing
    # and mlgov explain on a row the sidecar would have stored for it
    url = f"sqlite:///{tmp_path / 'payloads.db'}"
    engine = payloads.make_engine(url)
    schema.create_all(engine)
    features = records(rows.head(1))[0]
    with engine.begin() as conn:
        conn.execute(schema.payload.insert().values(
            request_id="b" * 32, ts=int(time.time() * 1000), model=approved_model, version=version, staging=False,
            features=json.dumps(features), prediction=int(probability[0] >= DECISION_THRESHOLD),
            probability=float(probability[0])))
    engine.dispose()
    result = invoke("explain", "b" * 32, "--payload-url", url, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["method"] == explanations.KERNEL and doc["version"] == version
    assert_explained(doc, probability[0])


# --- which explainer for which model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def flights_xy(training_parquet):
    data = label_rows(pd.read_parquet(training_parquet))
    return data.X, data.y


@pytest.mark.parametrize("family, params, method", [
    ("random_forest", {"n_estimators": 20, "max_depth": 8}, explanations.TREE),
    # native categorical splits: SHAP's tree reader would misread them, so the model-agnostic explainer
    ("hist_gradient_boosting", {"max_iter": 40}, explanations.KERNEL),
    ("logistic_regression", {"C": 0.1}, explanations.KERNEL),
])
def test_each_family_gets_its_explainer_and_is_additive_in_raw_features(flights_xy, family, params, method):
    from mlflow_governance.training.pipeline import build_pipeline

    X, y = flights_xy
    model = build_pipeline(family, params, seed=1).fit(X, y)
    rows = X.sample(4, random_state=2)
    rows.iloc[0, rows.columns.get_loc("DEPARTURE_DELAY")] = np.nan
    rows.iloc[1, rows.columns.get_loc("CARRIER")] = np.nan
    found = explanations.explain(model, rows, X)
    assert {e.method for e in found} == {method}
    probability = model.predict_proba(rows)[:, 1]
    for i, (item, p) in enumerate(zip(found, probability, strict=True)):
        assert_explained(item.to_dict(), p)
        assert list(item.contributions) == list(X.columns)
        if item.counterfactual is not None:
            changed = rows.iloc[[i]].copy()
            changed[item.counterfactual["feature"]] = item.counterfactual["to"]
            assert int(model.predict_proba(changed)[0, 1] >= DECISION_THRESHOLD) != item.prediction


def test_a_histogram_gradient_boosting_without_categorical_splits_gets_the_tree_explainer(flights_xy):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    from mlflow_governance.training.pipeline import one_hot_preprocessor

    X, y = flights_xy
    model = Pipeline([("pre", one_hot_preprocessor(scale=False).set_params(sparse_threshold=0.0)),
                      ("hgb", HistGradientBoostingClassifier(max_iter=30, random_state=0))]).fit(X, y)
    found = explanations.explain(model, X.head(3), X)
    assert {e.method for e in found} == {explanations.TREE}
    for item, p in zip(found, model.predict_proba(X.head(3))[:, 1], strict=True):
        assert_explained(item.to_dict(), p)


def test_the_kernel_explainer_gives_shaps_exact_values(flights_xy):
    """The enumeration is complete: the kernel explainer's values are shap.explainers.Exact's."""
    from mlflow_governance.training.pipeline import build_pipeline

    X, y = flights_xy
    model = build_pipeline("logistic_regression", {"C": 0.1}, seed=1).fit(X, y)
    explainer = explanations.Explainer(model, X, background_rows=30)
    import shap  # after the explainer, which imports it without its matplotlib warnings
    row = X.head(1)
    values, base, exact = explainer.contributions(row)
    codec = explainer._codec
    reference = shap.explainers.Exact(explainer._predict_codes,
                                      shap.maskers.Independent(codec.encode(explainer.background), max_samples=30))
    expected = reference(codec.encode(row), silent=True)
    np.testing.assert_allclose(values[0], expected.values[0], atol=1e-10)
    assert base == pytest.approx(float(expected.base_values[0]), abs=1e-12) and exact == [True]


def test_no_counterfactual_without_an_actionable_feature(flights_xy):
    from sklearn.linear_model import LogisticRegression

    X, y = flights_xy
    numeric = X[["DEPARTURE_DELAY", "DISTANCE"]].fillna(0.0)
    model = LogisticRegression().fit(numeric, y)
    found = explanations.explain(model, numeric.head(2), numeric)
    assert all(e.counterfactual is None and "none of the actionable features" in e.counterfactual_reason
               for e in found)
    assert all(set(e.contributions) == {"DEPARTURE_DELAY", "DISTANCE"} and e.additive for e in found)


def test_the_explain_route_answers_503_when_the_version_has_no_reference(flights_xy, tmp_path, monkeypatch):
    """In process: the route's own refusals (the gate's are the real sidecar's above)."""
    from sklearn.linear_model import LogisticRegression

    from mlflow_governance.sidecar import ServeOptions, bodies
    from mlflow_governance.sidecar import app as sidecar_app

    X, y = flights_xy
    numeric = X[["DEPARTURE_DELAY", "DISTANCE"]].fillna(0.0)
    model = LogisticRegression().fit(numeric, y)
    columns = [bodies.Column("DEPARTURE_DELAY", "double"), bodies.Column("DISTANCE", "double")]
    monkeypatch.setattr(sidecar_app.ModelCache, "load", lambda self, v: sidecar_app.ServedModel(v, model, columns))
    fields: dict[str, str] = {}

    class Client:
        remote = False

        def status(self, name, version=None):
            return {"governed": True, "production_alias": "production", "production_version": 1,
                    "versions": [{"version": 1, "stage": wf.READY_TO_USE, "usability": "accept"}],
                    "version": {"version": 1, "fields": fields}}

        def audit(self, name, limit=None):
            return []

    options = ServeOptions(model="m", payload_url=f"sqlite:///{tmp_path / 'p.db'}", spool_dir=str(tmp_path / "s"),
                           no_auth=True)
    app = sidecar_app.create_app(options, client=Client(), start_threads=False).test_client()
    body = {"inputs": {"DEPARTURE_DELAY": [30.0], "DISTANCE": [500.0]}}
    r = app.post("/explain", json=body)
    assert r.status_code == 503 and r.json["error_code"] == "EXPLANATION_UNAVAILABLE", r.json
    assert "m version 1 cannot be explained" in r.json["message"] and "training_data_statistics" in r.json["message"]
    monkeypatch.setattr(explanations, "load_reference", lambda name, version, f: numeric)
    r = app.post("/explain", json=body)
    assert r.status_code == 200, r.json
    assert r.json["explanations"][0]["counterfactual"] is None and r.json["actionable_features"] == []
    assert set(r.json["explanations"][0]["contributions"]) == {"DEPARTURE_DELAY", "DISTANCE"}
    assert r.json["explanations"][0]["additivity_error"] <= TOLERANCE


def test_beyond_the_exact_limit_the_kernel_explainer_samples_and_says_so():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    columns = [f"X{i}" for i in range(explanations.EXACT_MAX_FEATURES + 1)]
    frame = pd.DataFrame(rng.normal(size=(300, len(columns))), columns=columns)
    labels = (frame.sum(axis=1) + rng.normal(size=300) > 0).astype(int)
    model = LogisticRegression().fit(frame, labels)
    found = explanations.Explainer(model, frame, background_rows=10).explain(frame.head(1))
    assert found[0].method == explanations.KERNEL and found[0].exact is False
    assert found[0].additivity_error <= TOLERANCE  # the kernel regression is constrained to additivity


def test_explain_answers_410_once_the_version_is_decommissioned(served, near_threshold):
    """Last in the module: the version's life ends here."""
    registry, sidecar = served
    body = {"dataframe_records": records(near_threshold.head(1))}
    with acting("olivia"):
        GovernanceClient(registry.registry_uri).transition(registry.model, wf.DECOMMISSION, registry.version,
                                                           comment="replaced")
    wait_for_status(sidecar, body, 410)
    r = sidecar.post("/explain", body)
    assert r.status_code == 410 and r.json()["error_code"] == "MODEL_DECOMMISSIONED", r.text


def test_an_explanation_flood_gets_429_and_scoring_goes_on(production_model, winter_flights, tmp_path):
    """Found: eight anonymous explain loops tripled scoring latency and a legitimate explanation
    waited about 14 s. Now one worker takes one running explanation and a bounded queue (here none),
    at most ``--explain-per-minute`` per caller; the rest get 429 with Retry-After at once."""
    from concurrent.futures import ThreadPoolExecutor

    registry = copy_registry(production_model, tmp_path, "registry.db")
    env = sidecar_env(registry.registry_uri, registry.tracking_uri, MLGOV_USER="mona")
    rows = records(feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(5)))
    with run_sidecar(tmp_path / "run", env, "--model", registry.model, "--threads", "8", "--explain-queue", "0",
                     "--explain-per-minute", "4", *serve_args(workers=1)) as sidecar:
        assert sidecar.post("/explain", {"dataframe_records": rows[:1]}).status_code == 200  # explainer built
        with ThreadPoolExecutor(8) as pool:
            flood = [pool.submit(sidecar.post, "/explain", {"dataframe_records": rows}) for _ in range(8)]
            scored = [sidecar.score({"dataframe_records": rows[:1]}) for _ in range(5)]
            answers = [f.result() for f in flood]
        assert [s.status_code for s in scored] == [200] * 5
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 429} and codes.count(200) <= 3 and codes.count(429) >= 5, codes
        busy = next(a for a in answers if a.status_code == 429)
        assert busy.json()["error_code"] == "TOO_MANY_EXPLANATIONS" and int(busy.headers["Retry-After"]) >= 1
        # The caller's budget of 4 a minute is spent: the next one is refused even with the worker idle.
        spent = eventually(lambda: [r] if (r := sidecar.post("/explain", {"dataframe_records": rows[:1]}))
                           .status_code == 429 and "a minute" in r.json()["message"] else None,
                           timeout=30, what="the per-caller rate refusing")[0]
        assert int(spent.headers["Retry-After"]) >= 1
