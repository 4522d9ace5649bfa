"""The scoring sidecar as users meet it: ``mlgov serve`` (real gunicorn, 127.0.0.1, a free port)
over a private copy of the production registry, payloads in SQLite.

One sidecar serves the whole module (it takes seconds to start): scoring in the four body
formats against the registered model's own predictions, payload rows, feedback, every kind of bad
body and a few hundred random ones, /status, /metrics, and the gate: a manual and a monitor's
usability reject (423 naming who and why) lifted by the owner's accept without a restart, and,
last because it ends the version's life, decommissioning (410).
"""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.sidecar import schema
from tests.conftest import acting
from tests.test_sidecar_support import (
    CACHE_SECONDS,
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


@pytest.fixture(scope="module")
def served(production_model, tmp_path_factory):
    """(registry copy, running sidecar) for the module."""
    work = tmp_path_factory.mktemp("sidecar")
    registry = copy_registry(production_model, work, "registry.db")
    env = sidecar_env(registry.registry_uri, registry.tracking_uri, MLGOV_USER="mona")
    with run_sidecar(work / "run", env, "--model", registry.model,
                     *serve_args("--max-body-bytes", str(MAX_BODY))) as sidecar:
        yield registry, sidecar


@pytest.fixture(scope="module")
def payload_db(served):
    registry, sidecar = served
    engine = sa.create_engine(f"sqlite:///{sidecar.workdir / 'mlgov-payloads.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def rows(winter_flights):
    """Twelve winter flights, one of them without a departure delay (a missing value the model imputes)."""
    missing = winter_flights[winter_flights["DEPARTURE_DELAY"].isna()].head(1)
    sample = winter_flights.dropna(subset=["DEPARTURE_DELAY"]).sample(11, random_state=3)
    return feature_rows(pd.concat([sample, missing])).reset_index(drop=True)


def expected_scores(registry, frame, monkeypatch, tmp_path):
    from mlflow_governance.safe.model_files import load_mlflow_sklearn
    from mlflow_governance.scoring.decision import score
    from mlflow_governance.training.data import feature_frame

    for key, value in registry.env().items():
        monkeypatch.setenv(key, value)
    model, _ = load_mlflow_sklearn(f"models:/{registry.model}/{registry.version}", tmp_path / "model")
    return score(model, feature_frame(frame))


def payload_rows(engine, ids):
    p = schema.payload
    with engine.connect() as conn:
        return {r.request_id: r for r in conn.execute(sa.select(p).where(p.c.request_id.in_(list(ids))))}


def good_body(rows):
    return {"dataframe_records": records(rows.head(2))}


# --- scoring and payloads --------------------------------------------------------------------------


def test_every_body_format_scores_like_the_registered_model(served, payload_db, rows, monkeypatch, tmp_path):
    registry, sidecar = served
    prediction, probability = expected_scores(registry, rows, monkeypatch, tmp_path)
    ids = []
    for name, body in bodies_for(rows).items():
        r = sidecar.score(body)
        assert r.status_code == 200, (name, r.text)
        out = r.json()
        assert out["predictions"] == prediction.tolist(), name
        np.testing.assert_allclose(out["probabilities"], probability, rtol=1e-9, atol=1e-12)
        assert out["model"] == registry.model and out["version"] == registry.version
        assert "staging" not in out
        assert len(out["request_ids"]) == len(rows)
        ids += out["request_ids"]
    assert len(set(ids)) == len(ids) == 4 * len(rows)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)

    stored = eventually(lambda: (found := payload_rows(payload_db, ids)) and len(found) == len(ids) and found,
                        what="every scored row in mlgov_payload")
    expected_features = records(rows) * 4
    for i, rid in enumerate(ids):
        row = stored[rid]
        assert row.model == registry.model and row.version == registry.version and not row.staging
        assert json.loads(row.features) == expected_features[i]
        assert row.prediction == prediction[i % len(rows)]
        assert row.probability == pytest.approx(probability[i % len(rows)], rel=1e-9)
        assert abs(row.ts / 1000 - time.time()) < 600


def test_feedback_is_stored_and_unknown_ids_are_reported(served, payload_db, rows):
    _, sidecar = served
    ids = sidecar.score(good_body(rows)).json()["request_ids"]
    body = {"feedback": [{"request_id": ids[0], "label": 1}, {"request_id": ids[1], "label": 0},
                         {"request_id": "f" * 32, "label": 1}]}
    r = sidecar.post("/feedback", body)  # right after scoring: the rows may still be on their way
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "unknown": ["f" * 32], "labeller": None}  # --no-auth: nobody
    f = schema.feedback
    with payload_db.connect() as conn:
        labels = dict(conn.execute(sa.select(f.c.request_id, f.c.label).where(f.c.request_id.in_(ids))).all())
    assert labels == {ids[0]: 1, ids[1]: 0}
    for bad in ({"feedback": []}, {"feedback": [{"request_id": ids[0], "label": 2}]},
                {"feedback": [{"request_id": ids[0]}]}, {"labels": []}, [1, 2]):
        r = sidecar.post("/feedback", bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error_code"] in ("BAD_FORMAT", "WRONG_TYPE")
    r = sidecar.post("/feedback", data="{", content_type="application/json")
    assert r.status_code == 400 and r.json()["error_code"] == "MALFORMED_JSON"


# --- bad bodies ----------------------------------------------------------------------------------


def bad_bodies(rows):
    one = records(rows.head(1))[0]
    columns = list(rows.columns)

    def rec(**change):
        row = {**one, **change}
        return json.dumps({"dataframe_records": [{k: v for k, v in row.items() if v is not ...}]})

    return [
        ("malformed JSON", '{"dataframe_records": [', "application/json", 400, "MALFORMED_JSON"),
        ("trailing garbage", json.dumps({"instances": [one]}) + "}", "application/json", 400, "MALFORMED_JSON"),
        ("not UTF-8", b'{"instances": [{"CARRIER": "\xff\xfe"}]}', "application/json", 400, "MALFORMED_JSON"),
        ("NaN literal", rec(DISTANCE="__NAN__").replace('"__NAN__"', "NaN"), "application/json", 400,
         "MALFORMED_JSON"),
        ("wrong content type", json.dumps({"instances": [one]}), "text/plain", 400, "UNSUPPORTED_CONTENT_TYPE"),
        ("form content type", "a=1", "application/x-www-form-urlencoded", 400, "UNSUPPORTED_CONTENT_TYPE"),
        ("csv", "MONTH,DAY\n1,2\n", "text/csv", 400, "UNSUPPORTED_CONTENT_TYPE"),
        ("empty body", "", "application/json", 400, "EMPTY_BODY"),
        ("blank body", "   \n", "application/json", 400, "EMPTY_BODY"),
        ("deeply nested list", "[" * 20_000 + "]" * 20_000, "application/json", 400, "NESTING_TOO_DEEP"),
        ("deeply nested object", '{"a":' * 8_000 + "1" + "}" * 8_000, "application/json", 400,
         "NESTING_TOO_DEEP"),
        ("nested under a key", json.dumps({"dataframe_records": [{"MONTH": 1}]}).replace(
            "1}", "[" * 5000 + "]" * 5000 + "}"), "application/json", 400, "NESTING_TOO_DEEP"),
        ("over the size limit", json.dumps({"instances": [one] * 400}), "application/json", 413, "BODY_TOO_LARGE"),
        ("deep and over the size limit", "[" * 100_000 + "]" * 100_000, "application/json", 413, "BODY_TOO_LARGE"),
        ("top-level list", json.dumps([one]), "application/json", 400, "BAD_FORMAT"),
        ("no known key", json.dumps({"rows": [one]}), "application/json", 400, "BAD_FORMAT"),
        ("two formats", json.dumps({"instances": [one], "inputs": [one]}), "application/json", 400, "BAD_FORMAT"),
        ("params", json.dumps({"instances": [one], "params": {"x": 1}}), "application/json", 400, "BAD_FORMAT"),
        ("records not a list", json.dumps({"dataframe_records": one}), "application/json", 400, "BAD_FORMAT"),
        ("row not an object", json.dumps({"instances": [list(one.values())]}), "application/json", 400,
         "BAD_FORMAT"),
        ("split row too short", json.dumps({"dataframe_split": {"columns": columns, "data": [[1, 2]]}}),
         "application/json", 400, "BAD_FORMAT"),
        ("inputs lengths differ", json.dumps({"inputs": {**{c: [one[c]] for c in columns}, "MONTH": [1, 2]}}),
         "application/json", 400, "BAD_FORMAT"),
        ("no rows", json.dumps({"dataframe_records": []}), "application/json", 400, "NO_ROWS"),
        ("missing column", rec(CARRIER=...), "application/json", 400, "MISSING_COLUMN"),
        ("missing column (split)", json.dumps({"dataframe_split": {"columns": columns[1:],
                                                                   "data": [list(one.values())[1:]]}}),
         "application/json", 400, "MISSING_COLUMN"),
        ("unknown column", rec(TAIL_NUMBER="N123"), "application/json", 400, "UNKNOWN_COLUMN"),
        ("text for a month", rec(MONTH="seven"), "application/json", 400, "WRONG_TYPE"),
        ("fraction for a month", rec(MONTH=1.5), "application/json", 400, "WRONG_TYPE"),
        ("null month", rec(MONTH=None), "application/json", 400, "WRONG_TYPE"),
        ("boolean distance", rec(DISTANCE=True), "application/json", 400, "WRONG_TYPE"),
        ("text distance", rec(DISTANCE="far"), "application/json", 400, "WRONG_TYPE"),
        ("number for a carrier", rec(CARRIER=7), "application/json", 400, "WRONG_TYPE"),
        ("list for a carrier", rec(CARRIER=["UA"]), "application/json", 400, "WRONG_TYPE"),
        ("object for a carrier", rec(CARRIER={"a": 1}), "application/json", 400, "WRONG_TYPE"),
        ("huge integer", rec(DAY="__BIG__").replace('"__BIG__"', "9" * 30), "application/json", 400, "WRONG_TYPE"),
        ("overflowing float", rec(DISTANCE="__INF__").replace('"__INF__"', "1e999"), "application/json", 400,
         "WRONG_TYPE"),
        ("too many digits", rec(DAY="__BIG__").replace('"__BIG__"', "9" * 5000), "application/json", 400,
         "MALFORMED_JSON"),
    ]


def test_bad_bodies_get_a_json_error_and_the_server_keeps_serving(served, rows):
    _, sidecar = served
    for name, data, content_type, status, code in bad_bodies(rows):
        r = sidecar.post("/invocations", data=data, content_type=content_type)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        body = r.json()
        assert body["error_code"] == code, (name, body)
        assert body["message"] and "Traceback" not in body["message"], name
    r = sidecar.score(good_body(rows))
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    assert sidecar.get("/nowhere").json()["error_code"] == "ENDPOINT_NOT_FOUND"
    r = requests.get(sidecar.url + "/invocations", timeout=10)
    assert r.status_code == 405 and r.json()["error_code"] == "METHOD_NOT_ALLOWED"


def random_bodies(rows, n, seed=11):
    """``n`` random and mutated bodies: truncations, flipped bytes, odd values, odd nesting, odd types."""
    rnd = random.Random(seed)
    valid = [json.dumps(b) for b in bodies_for(rows.head(3)).values()]
    one = records(rows.head(1))[0]
    odd = [None, True, False, 0, -1, 2**70, 1e308, -0.0, "", "x" * 300, [], {}, [[[]]], {"a": {"b": []}}, "\u0000",
           "\ud800", 3.5]
    types = ["application/json"] * 8 + ["text/plain", "application/json; charset=latin-1", "", "application/xml"]
    out = []
    for _ in range(n):
        kind = rnd.randrange(7)
        base = rnd.choice(valid)
        if kind == 0:
            data = base[: rnd.randrange(len(base))]
        elif kind == 1:
            raw = bytearray(base.encode())
            for _ in range(rnd.randrange(1, 6)):
                raw[rnd.randrange(len(raw))] = rnd.randrange(256)
            data = bytes(raw)
        elif kind == 2:
            row = dict(one)
            row[rnd.choice(list(row))] = rnd.choice(odd)
            data = json.dumps({rnd.choice(["dataframe_records", "instances"]): [row]})
        elif kind == 3:
            depth = rnd.choice([10, 900, 3000, 20000])
            data = "[" * depth + "]" * depth if rnd.random() < 0.5 else '{"inputs":' * depth + "1" + "}" * depth
        elif kind == 4:
            data = json.dumps(rnd.choice(odd + [{"dataframe_split": rnd.choice(odd)}, {"inputs": rnd.choice(odd)}]))
        elif kind == 5:
            data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400)))
        else:
            data = json.dumps({"instances": [one] * rnd.choice([1, 50, 500])})
        out.append((data, rnd.choice(types)))
    return out


def test_random_bodies_get_no_500_and_no_dropped_connection(served, rows):
    _, sidecar = served
    session = requests.Session()
    statuses, dropped = {}, []
    for i, (data, content_type) in enumerate(random_bodies(rows, 300)):
        try:
            r = sidecar.post("/invocations", data=data, content_type=content_type, session=session)
        except requests.ConnectionError as exc:
            dropped.append((i, str(exc)[:200]))
            continue
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code in (200, 400, 413), (i, r.status_code, r.text[:300])
        if r.status_code != 200:
            assert r.json()["error_code"] and r.json()["message"], i
    assert not dropped, dropped[:5]
    assert statuses.get(400, 0) > 100
    assert sidecar.score(good_body(rows)).status_code == 200


# --- status, metrics, health -------------------------------------------------------------------------


def test_status_health_and_metrics(served, rows):
    registry, sidecar = served
    assert sidecar.get("/health").json() == {"status": "ok"}
    sidecar.score(good_body(rows))
    sidecar.post("/invocations", data="{", content_type="application/json")
    status = sidecar.get("/status").json()
    assert status["model"] == registry.model and status["version"] == registry.version
    assert status["mode"] == "production" and status["staging"] is False
    assert status["stage"] == wf.READY_TO_USE and status["usability"] == wf.USABILITY_ACCEPT
    assert status["serving"] is True and status["refusal"] is None
    assert status["last_evaluation"] is None and status["usability_set_by"] is None
    assert status["registry"]["read_ok"] is True and status["registry"]["cache_seconds"] == CACHE_SECONDS
    assert status["payloads"]["database_up"] is True
    assert status["endpoint"] == sidecar.url + "/invocations"
    text = sidecar.get("/metrics").text
    assert 'mlgov_sidecar_requests_total{endpoint="invocations",status="200"}' in text
    assert 'mlgov_sidecar_refusals_total{reason="bad_request"}' in text
    assert "mlgov_sidecar_request_seconds_bucket" in text
    assert "mlgov_sidecar_rows_scored_total" in text and "mlgov_sidecar_rows_logged_total" in text
    assert "mlgov_sidecar_spool_rows" in text


def test_keep_alive_clients_starting_together_are_spread_over_both_workers(served):
    """Eight connections opened at once: each worker holds some (a keep-alive client stays on the
    worker that accepted it; gunicorn's own gthread worker often took all eight, leaving one core idle)."""
    import http.client

    registry, sidecar = served
    port = int(sidecar.url.rsplit(":", 1)[1])
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(8)]
    try:
        for conn in connections:
            conn.connect()
        pids = []
        for conn in connections:
            conn.request("GET", "/status")
            response = conn.getresponse()
            assert response.status == 200
            pids.append(json.loads(response.read())["worker_pid"])
        for conn in connections:  # the same connection stays with its worker
            conn.request("GET", "/status")
            assert json.loads(conn.getresponse().read())["worker_pid"] == pids[connections.index(conn)]
    finally:
        for conn in connections:
            conn.close()
    assert len(set(pids)) == 2, f"all eight connections went to one worker: {pids}"


# --- the gate --------------------------------------------------------------------------------------


def every_worker(sidecar, check, workers=2, timeout=CACHE_SECONDS * 2 + 8, what="every worker"):
    """Poll ``/status`` on several keep-alive connections opened one after the other (the sidecar
    spreads them over its workers, and each stays with the worker that accepted it) until one round
    of answers comes from ``workers`` different workers and every answer satisfies ``check``; that
    round's answers."""
    sessions = [requests.Session() for _ in range(workers * 3)]
    seen = []

    def round_of_answers():
        answers = [s.get(sidecar.url + "/status", timeout=30, auth=sidecar.auth).json() for s in sessions]
        seen[:] = [(a["worker_pid"], bool(check(a))) for a in answers]
        return answers if len({a["worker_pid"] for a in answers}) >= workers and all(ok for _, ok in seen) else None

    try:
        return eventually(round_of_answers, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last round's (worker pid, check): {seen}") from None
    finally:
        for s in sessions:
            s.close()


def serving_as(status):
    """A check of one worker's ``/status``: it answers scoring with HTTP ``status``."""
    if status == 200:
        return lambda s: s["serving"] is True and s["refusal"] is None
    return lambda s: s["serving"] is False and (s["refusal"] or {}).get("status") == status


def wait_for_status(sidecar, body, status, timeout=CACHE_SECONDS * 2 + 8, workers=2):
    """The first response with ``status``; then, once every worker's ``/status`` says it answers so
    (each has read governance again), every worker answers so."""
    found = eventually(lambda: [r] if (r := sidecar.score(body)).status_code == status else None, timeout=timeout,
                       what=f"HTTP {status}")
    every_worker(sidecar, serving_as(status), workers=workers, timeout=timeout,
                 what=f"every worker's /status answering HTTP {status}")
    assert [sidecar.score(body).status_code for _ in range(6)] == [status] * 6
    return found[0]


def test_a_manual_usability_reject_refuses_with_423_until_the_owner_accepts(served, rows):
    registry, sidecar = served
    client = GovernanceClient(registry.registry_uri)
    body = good_body(rows)
    assert sidecar.score(body).status_code == 200
    with acting("mona"):
        client.transition(registry.model, wf.REJECT, registry.version, comment="complaints from the ops desk")
    started = time.monotonic()
    refused = wait_for_status(sidecar, body, 423).json()
    assert time.monotonic() - started < CACHE_SECONDS * 2 + 3
    assert refused["error_code"] == "MODEL_EXECUTION_NOT_ALLOWED"
    assert "model execution not allowed" in refused["message"]
    assert "mona" in refused["message"] and "complaints from the ops desk" in refused["message"]
    assert refused["set_by"]["kind"] == "manual" and refused["set_by"]["actor"] == "mona"
    status = sidecar.get("/status").json()  # wait_for_status waited until every worker refuses
    assert status["usability"] == wf.USABILITY_REJECT and status["serving"] is False
    assert status["refusal"]["status"] == 423 and status["usability_set_by"]["comment"] == "complaints from the ops desk"
    assert 'mlgov_sidecar_refusals_total{reason="usability_reject"}' in sidecar.get("/metrics").text
    with acting("olivia"):
        client.transition(registry.model, wf.ACCEPT, registry.version, comment="reviewed: the desk was wrong")
    assert wait_for_status(sidecar, body, 200).json()["version"] == registry.version


def test_a_monitor_reject_names_the_monitor_its_value_and_threshold(served, payload_db, rows):
    registry, sidecar = served
    client = GovernanceClient(registry.registry_uri)
    body = good_body(rows)
    assert sidecar.score(body).status_code == 200
    breach = {"monitor": "drift", "key": "drift.share_drifted_features", "value": 0.7778, "threshold": 0.5,
              "comparison": "<="}
    figures = {"drift.share_drifted_features": {"value": 0.7778, "threshold": 0.5, "comparison": "<=",
                                                "verdict": "breach"},
               "quality.accuracy": {"value": 0.81, "threshold": 0.7, "comparison": ">=", "verdict": "pass"}}
    with acting("mona"):  # what the production monitor does on a breach: reject, audited with the figures
        client.transition(registry.model, wf.REJECT, registry.version,
                          comment="monitor breach on live traffic: drift: drift.share_drifted_features=0.7778 "
                                  "(needs <= 0.5)")
    with payload_db.begin() as conn:
        conn.execute(schema.evaluation.insert().values(
            ts=int(time.time() * 1000), model=registry.model, version=registry.version, rows=2000,
            verdict="breach", reason="drift breached", figures=json.dumps(figures), breaches=json.dumps([breach]),
            run_id="r123", usability_action=wf.USABILITY_REJECT, config_digest="sha256:x"))
    refused = eventually(lambda: (r := sidecar.score(body)).status_code == 423 and "drift" in r.text and r.json(),
                         timeout=CACHE_SECONDS * 2 + 8, what="423 naming the monitor")
    assert refused["set_by"]["kind"] == "monitor" and refused["set_by"]["monitor"] == "drift"
    assert refused["set_by"]["value"] == 0.7778 and refused["set_by"]["threshold"] == 0.5
    assert "drift monitor drift.share_drifted_features = 0.7778 (threshold <= 0.5)" in refused["message"]
    # every worker has read governance since the evaluation row was written: each names the monitor
    every_worker(sidecar, lambda s: (s["usability_set_by"] or {}).get("kind") == "monitor",
                 what="every worker's /status naming the monitor")
    status = sidecar.get("/status").json()
    assert status["usability_set_by"]["monitor"] == "drift"
    assert status["last_evaluation"]["verdict"] == "breach" and status["last_evaluation"]["run_id"] == "r123"
    assert status["last_evaluation"]["figures"]["quality.accuracy"]["value"] == 0.81
    assert 'mlgov_sidecar_monitor_value{figure="quality.accuracy"} 0.81' in sidecar.get("/metrics").text
    with acting("olivia"):
        client.transition(registry.model, wf.ACCEPT, registry.version, comment="drift explained by the season")
    assert wait_for_status(sidecar, body, 200).status_code == 200
    assert sidecar.get("/status").json()["usability_set_by"] is None


def test_a_decommissioned_version_answers_410(served, rows):
    """Last in the module: the version's life ends here."""
    registry, sidecar = served
    client = GovernanceClient(registry.registry_uri)
    body = good_body(rows)
    assert sidecar.score(body).status_code == 200
    with acting("olivia"):
        client.transition(registry.model, wf.DECOMMISSION, registry.version, comment="replaced by the summer model")
    gone = wait_for_status(sidecar, body, 410).json()
    assert gone["error_code"] == "MODEL_DECOMMISSIONED" and str(registry.version) in gone["message"]
    assert sidecar.get("/status").json()["refusal"]["status"] == 410
