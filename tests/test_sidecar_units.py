"""The sidecar's parts in process, fast: body checks, the gate's rule and its fail-closed clock,
the payload writer's spool and replay, and micro-batching."""

from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlflow_governance.core import workflow as wf
from mlflow_governance.core.features import FEATURES
from mlflow_governance.sidecar import ServeOptions, bodies, gate, payloads, schema
from mlflow_governance.training.data import feature_frame

SIGNATURE = {"signature": {"inputs": json.dumps(
    [{"type": "long", "name": c, "required": True} for c in ("MONTH", "DAY", "DAY_OF_WEEK", "SCHEDULED_HOUR")]
    + [{"type": "double", "name": "DEPARTURE_DELAY", "required": False},
       {"type": "double", "name": "DISTANCE", "required": True}]
    + [{"type": "string", "name": c, "required": True} for c in ("CARRIER", "ORIGIN_AIRPORT", "DESTINATION_AIRPORT")]
)}}
COLUMNS = bodies.columns_from_mlmodel(SIGNATURE)
ROWS = [
    {"MONTH": 1, "DAY": 2, "DAY_OF_WEEK": 3, "SCHEDULED_HOUR": 9, "DEPARTURE_DELAY": None, "DISTANCE": 1400,
     "CARRIER": "UA", "ORIGIN_AIRPORT": "EWR", "DESTINATION_AIRPORT": "IAH"},
    {"MONTH": 2, "DAY": 28, "DAY_OF_WEEK": 7, "SCHEDULED_HOUR": 23.0, "DEPARTURE_DELAY": -3.5, "DISTANCE": 200.0,
     "CARRIER": None, "ORIGIN_AIRPORT": "JFK", "DESTINATION_AIRPORT": "BOS"},
]


# --- bodies --------------------------------------------------------------------------------------


def test_the_four_formats_give_the_frame_the_model_takes():
    columns = list(FEATURES)
    documents = [
        {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in ROWS], "index": [0, 1]}},
        {"dataframe_records": ROWS},
        {"instances": ROWS},
        {"inputs": {c: [r[c] for r in ROWS] for c in columns}},
        {"inputs": ROWS},
    ]
    expected = feature_frame(pd.DataFrame(ROWS))
    for document in documents:
        frame = bodies.parse_invocation(document, COLUMNS).frame()
        pd.testing.assert_frame_equal(frame, expected[list(frame.columns)], check_dtype=True)
    optional = [{k: v for k, v in r.items() if k != "DEPARTURE_DELAY"} for r in ROWS]
    frame = bodies.parse_invocation({"instances": optional}, COLUMNS).frame()
    assert frame["DEPARTURE_DELAY"].isna().all()


@pytest.mark.parametrize(("raw", "content_type", "code"), [
    (b'{"instances": [}', "application/json", "MALFORMED_JSON"),
    (b'{"instances": [{"DISTANCE": Infinity}]}', "application/json", "MALFORMED_JSON"),
    (b"[" * 5000, "application/json", "NESTING_TOO_DEEP"),
    (b"", "application/json", "EMPTY_BODY"),
    (b"{}", "text/json", "UNSUPPORTED_CONTENT_TYPE"),
    (b"{}", "application/json; charset=utf-16", "UNSUPPORTED_CONTENT_TYPE"),
    (b"{}", None, "UNSUPPORTED_CONTENT_TYPE"),
])
def test_load_json_refusals(raw, content_type, code):
    with pytest.raises(bodies.BodyError) as info:
        bodies.load_json(raw, content_type, 1 << 20)
    assert info.value.error_code == code and info.value.status == 400
    assert bodies.load_json(b'{"a": 1}', "application/json; charset=UTF-8", 100) == {"a": 1}
    with pytest.raises(bodies.BodyError) as info:
        bodies.load_json(b" " * 101, "application/json", 100)
    assert info.value.status == 413


@pytest.mark.parametrize(("change", "code", "words"), [
    ({"MONTH": "1"}, "WRONG_TYPE", "column 'MONTH', row 0: expected a whole number"),
    ({"MONTH": True}, "WRONG_TYPE", "MONTH"),
    ({"DAY": 2**63}, "WRONG_TYPE", "between"),
    ({"DISTANCE": [1]}, "WRONG_TYPE", "got a list"),
    ({"CARRIER": 1}, "WRONG_TYPE", "a string or null"),
    ({"EXTRA": 1}, "UNKNOWN_COLUMN", "'EXTRA'"),
])
def test_row_refusals_name_the_column(change, code, words):
    row = {**ROWS[0], **change}
    with pytest.raises(bodies.BodyError) as info:
        bodies.parse_invocation({"instances": [ROWS[1], row] if code == "UNKNOWN_COLUMN" else [row]}, COLUMNS)
    assert info.value.error_code == code and words in info.value.message


def test_signatures_the_sidecar_cannot_check_are_refused():
    with pytest.raises(ValueError, match="no input signature"):
        bodies.columns_from_mlmodel({})
    with pytest.raises(ValueError, match="cannot check"):
        bodies.columns_from_mlmodel({"signature": {"inputs": json.dumps([{"type": "tensor", "tensor-spec": {}}])}})


def test_feedback_bodies():
    assert bodies.parse_feedback({"feedback": [{"request_id": "a" * 32, "label": 1}]}) == [("a" * 32, 1)]
    for bad in ({"feedback": [{"request_id": "a", "label": True}]}, {"feedback": [{"request_id": 5, "label": 1}]},
                {"feedback": [{"request_id": "a", "label": 1, "x": 2}]}, {"feedback": "a"}):
        with pytest.raises(bodies.BodyError):
            bodies.parse_feedback(bad)


# --- the gate's rule -----------------------------------------------------------------------------


def status(production=1, versions=((1, wf.READY_TO_USE, "accept"),)):
    return {"governed": True, "production_alias": "production", "production_version": production,
            "versions": [{"version": v, "stage": s, "usability": u} for v, s, u in versions]}


PRODUCTION = ServeOptions(model="m")
PINNED = ServeOptions(model="m", alias=None, version=1)
STAGING = ServeOptions(model="m", alias=None, version=2, staging=True)


@pytest.mark.parametrize(("options", "state", "previous", "expected"), [
    (PRODUCTION, status(), None, (1, None)),
    (PRODUCTION, status(versions=((1, wf.READY_TO_USE, "reject"),)), None, (1, 423)),
    (PRODUCTION, status(None, ((1, wf.DECOMMISSIONED, None),)), 1, (1, 410)),
    (PRODUCTION, status(None, ((1, wf.MODEL_DEVELOPMENT_COMPLETED, None),)), None, (None, 503)),
    (PRODUCTION, status(2, ((1, wf.DECOMMISSIONED, None), (2, wf.READY_TO_USE, "accept"))), 1, (2, None)),
    (PINNED, status(), None, (1, None)),
    (PINNED, status(2, ((1, wf.DECOMMISSIONED, None), (2, wf.READY_TO_USE, "accept"))), 1, (1, 410)),
    (PINNED, status(2, ((1, wf.PRE_PRODUCTION_REVIEW, None), (2, wf.READY_TO_USE, "accept"))), None, (1, 503)),
    (STAGING, status(1, ((1, wf.READY_TO_USE, "accept"), (2, wf.APPROVED_FOR_VALIDATION, None))), None, (2, None)),
    (STAGING, status(1, ((1, wf.READY_TO_USE, "accept"), (2, wf.PRE_PRODUCTION_REVIEW, None))), None, (2, None)),
    (STAGING, status(2, ((2, wf.READY_TO_USE, "accept"),)), None, (2, 409)),
    (STAGING, status(1, ((1, wf.READY_TO_USE, "accept"), (2, wf.MODEL_DEVELOPMENT_COMPLETED, None))), None,
     (2, 409)),
    (STAGING, status(1, ((2, wf.DECOMMISSIONED, None),)), None, (2, 410)),
    (STAGING, status(1, ()), None, (2, 503)),
])
def test_decide(options, state, previous, expected):
    verdict = gate.decide(options, state, previous)
    assert (verdict.version, verdict.refusal.status if verdict.refusal else None) == expected
    assert verdict.serving == (expected[1] is None)


def audit_row(seq, action, actor, comment=None, version=1, source=wf.READY_TO_USE, dest=wf.READY_TO_USE):
    return {"seq": seq, "ts": seq * 1000, "version": version, "action": action, "actor": actor, "role": "r",
            "comment": comment, "outcome": "allowed", "from_stage": source, "to_stage": dest}


def test_the_423_names_the_monitor_or_the_person():
    trail = [audit_row(1, wf.APPROVE, "olivia", source=wf.PRE_PRODUCTION_REVIEW),
             audit_row(2, wf.REJECT, "mona", "drift seen"), audit_row(3, wf.ACCEPT, "olivia", "ok"),
             audit_row(4, wf.REJECT, "mona", "ops complaint")]
    message, who = gate.reject_story("m", 1, trail, lambda since: None)
    assert who["kind"] == "manual" and who["actor"] == "mona" and who["comment"] == "ops complaint"
    assert "model execution not allowed" in message and "ops complaint" in message
    seen = []
    breach = {"monitor": "fairness", "key": "fairness.disparate_impact", "value": 0.61, "threshold": 0.8,
              "comparison": ">="}

    def evaluation(since):
        seen.append(since)
        return {"breaches": [breach], "evaluated_at": "t", "run_id": "r", "seq": 9}

    message, who = gate.reject_story("m", 1, trail, evaluation)
    assert seen == [3000]  # only evaluations since the owner's last accept count
    assert who["kind"] == "monitor" and who["monitor"] == "fairness" and who["value"] == 0.61
    assert "fairness monitor fairness.disparate_impact = 0.61 (threshold >= 0.8)" in message


# --- the gate's clock: cached answers, then fail closed ---------------------------------------------


class FakeClient:
    remote = False

    def __init__(self):
        self.status_value = status()
        self.down = False
        self.reads = 0

    def status(self, model, version=None):
        self.reads += 1
        if self.down:
            raise ConnectionError("registry unreachable")
        return self.status_value

    def audit(self, model, limit=None):
        return [audit_row(1, wf.REJECT, "mona", "manual")]


def test_the_gate_fails_closed_after_the_cache_lifetime_and_recovers():
    now = [100.0]
    client = FakeClient()
    loaded = []
    def load(version):
        loaded.append(version)
        return SimpleNamespace(version=version)

    g = gate.Gate(ServeOptions(model="m", usability_cache_seconds=5), load, client=client, clock=lambda: now[0])
    _, refusal = g.current()
    assert refusal.status == 503  # never read: closed
    assert g.refresh() and loaded == [1]
    snap, refusal = g.current()
    assert refusal is None and snap.served.version == 1
    client.down = True
    now[0] += 5
    assert not g.refresh()
    now[0] += 4.9  # 9.9 s since the last good read: still within one lifetime of failures
    assert g.current()[1] is None
    now[0] += 0.2
    snap, refusal = g.current()
    assert refusal.status == 503 and refusal.error_code == "REGISTRY_UNAVAILABLE"
    assert "registry unreachable" in refusal.message and "fail closed" in refusal.message
    client.down = False
    assert g.refresh() and g.current()[1] is None and loaded == [1]  # the model was not loaded again
    client.status_value = status(versions=((1, wf.READY_TO_USE, "reject"),))
    g.refresh()
    refusal = g.current()[1]
    assert refusal.status == 423 and refusal.details["set_by"]["actor"] == "mona"
    # the production alias moves on (version 2 promoted, 1 decommissioned): followed at the next read
    client.status_value = status(2, ((1, wf.DECOMMISSIONED, None), (2, wf.READY_TO_USE, "accept")))
    assert g.refresh()
    snap, refusal = g.current()
    assert refusal is None and snap.served.version == 2 and loaded == [1, 2]
    client.status_value = status(None, ((1, wf.DECOMMISSIONED, None), (2, wf.DECOMMISSIONED, None)))
    g.refresh()
    assert g.current()[1].status == 410


def test_a_read_that_names_no_version_does_not_make_the_gate_forget_the_one_it_served():
    """Between serving version 1 and its decommissioning, a read without the production alias
    (and so without a version) must not turn the later 410 into 503 "no production version"."""
    client = FakeClient()
    g = gate.Gate(ServeOptions(model="m", usability_cache_seconds=5), lambda v: SimpleNamespace(version=v),
                  client=client)
    assert g.refresh() and g.current()[1] is None
    client.status_value = status(None, ((1, wf.READY_TO_USE, "accept"),))
    assert g.refresh()
    assert g.current()[1].status == 503 and g.current()[0].verdict.version is None
    client.status_value = status(None, ((1, wf.DECOMMISSIONED, None),))
    assert g.refresh()
    refusal = g.current()[1]
    assert refusal.status == 410 and refusal.details["version"] == 1, refusal


# --- the payload writer --------------------------------------------------------------------------


def scored(n, version=1, prefix="r"):
    ids = [f"{prefix}{i:04d}" for i in range(n)]
    columns = {"MONTH": np.ones(n, dtype="int64"), "DEPARTURE_DELAY": np.array([np.nan] + [1.5] * (n - 1)),
               "CARRIER": np.array([np.nan] + ["UA"] * (n - 1), dtype=object)}
    return payloads.Scored(ids, 123, "m", version, False, columns, np.zeros(n, dtype="int64"), np.full(n, 0.25))


def stored(url):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(schema.payload.c.request_id, schema.payload.c.features)).all()
    finally:
        engine.dispose()


def test_rows_wait_in_the_spool_while_the_database_is_down_and_land_once(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    writer = payloads.PayloadWriter(url, tmp_path / "spool", flush_seconds=0.02, retry_seconds=0.1).start()
    real = payloads.insert_new
    down = threading.Event()

    def flaky(conn, table, rows, key="request_id"):
        if down.is_set():
            raise sa.exc.OperationalError("INSERT INTO mlgov_payload ...", {}, Exception("database is down"))
        return real(conn, table, rows, key)

    monkeypatch.setattr(payloads, "insert_new", flaky)
    writer.submit(scored(3, prefix="a"))
    assert writer.flush()
    down.set()
    writer.submit(scored(5, prefix="b"))
    assert writer.flush()
    assert writer.spool_rows == 5 and not writer.database_up
    assert "INSERT" not in writer.state()["last_error"]  # no database text leaves the writer
    assert len(list((tmp_path / "spool").glob("payload-*.jsonl"))) == 1
    down.clear()
    writer.submit(scored(2, prefix="c"))
    deadline = time.monotonic() + 5
    while (writer.spool_rows or writer.pending) and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    rows = stored(url)
    ids = sorted(r.request_id for r in rows)
    assert ids == sorted([f"a{i:04d}" for i in range(3)] + [f"b{i:04d}" for i in range(5)]
                         + [f"c{i:04d}" for i in range(2)])
    assert json.loads(rows[0].features) == {"MONTH": 1, "DEPARTURE_DELAY": None, "CARRIER": None}
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_a_stopped_workers_spool_is_adopted_and_replayed_without_duplicates(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    spool = tmp_path / "spool"
    spool.mkdir()
    first = payloads.PayloadWriter(url, spool, flush_seconds=0.02).start()
    first.submit(scored(4, prefix="x"))
    assert first.flush()
    first.close()
    rows = payloads.rows_of(scored(4, prefix="x")) + payloads.rows_of(scored(2, prefix="y"))
    dead = 2**22 + 12345  # no such process
    while payloads._pid_alive(dead):
        dead += 1
    (spool / f"payload-{dead}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"torn')
    second = payloads.PayloadWriter(url, spool, flush_seconds=0.02).start()
    deadline = time.monotonic() + 5
    while len(stored(url)) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    second.close()
    assert sorted(r.request_id for r in stored(url)) == sorted([f"x{i:04d}" for i in range(4)] + ["y0000", "y0001"])
    assert not list(spool.glob("*.jsonl"))


def test_close_flushes_what_is_queued(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    writer = payloads.PayloadWriter(url, tmp_path / "spool", flush_seconds=30).start()
    writer.submit(scored(7))
    writer.close()
    assert len(stored(url)) == 7
    assert os.getpid() == writer._pid


# --- micro-batching ------------------------------------------------------------------------------


class CountingModel:
    """predict_proba = MONTH / 100, recording how many rows each call got."""

    def __init__(self):
        self.calls = []

    def predict_proba(self, frame):
        time.sleep(0.01)
        self.calls.append(len(frame))
        p = frame["MONTH"].to_numpy("float64") / 100
        return np.column_stack([1 - p, p])


def test_micro_batching_gives_each_request_its_own_rows():
    from mlflow_governance.sidecar.batching import MicroBatcher
    from mlflow_governance.sidecar.models import ServedModel

    model = CountingModel()
    served = ServedModel(1, model, COLUMNS)
    batcher = MicroBatcher(0.05)
    results, errors = {}, []

    def request(i):
        batcher.enter()
        try:
            rows = bodies.parse_invocation({"instances": [{**ROWS[0], "MONTH": (i % 12) + 1}] * (1 + i % 3)}, COLUMNS)
            results[i] = batcher.score(served, rows)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            batcher.leave()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    for i, (_, probability) in results.items():
        assert len(probability) == 1 + i % 3
        np.testing.assert_allclose(probability, ((i % 12) + 1) / 100)
    assert len(results) == 24 and sum(model.calls) == sum(1 + i % 3 for i in range(24))
    assert len(model.calls) < 24  # some requests were scored together
    start = time.monotonic()
    batcher.enter()
    batcher.score(served, bodies.parse_invocation({"instances": [ROWS[0]]}, COLUMNS))
    batcher.leave()
    assert time.monotonic() - start < 0.04  # a lone request does not wait for the window


def test_request_ids_are_unique_time_ordered_uuids():
    import uuid

    from mlflow_governance.sidecar.ids import request_ids

    first = request_ids(500)
    time.sleep(0.002)
    later = request_ids(500)
    assert len(set(first + later)) == 1000 and max(first) < min(later)
    for rid in first[:20]:
        parsed = uuid.UUID(hex=rid)
        assert parsed.hex == rid and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert abs(int(rid[:12], 16) / 1000 - time.time()) < 5


def test_a_worker_leaves_a_new_connection_to_a_live_worker_with_fewer():
    from mlflow_governance.sidecar import worker

    table = [0.0] * (worker.SLOTS * worker.FIELDS)

    def put(slot, pid, conns, beat):
        table[slot * worker.FIELDS:(slot + 1) * worker.FIELDS] = [pid, conns, beat]

    now = 1000.0
    put(1, 101, 4, now)
    assert not worker.fewer_elsewhere(table, 1, 4, now)  # alone: nobody to leave it to
    put(2, 102, 4, now - 0.5)
    assert not worker.fewer_elsewhere(table, 1, 4, now)  # as many: no deferring
    assert worker.fewer_elsewhere(table, 1, 5, now)  # one more than the other: defer
    put(2, 102, 0, now - worker.STALE_SECONDS - 1)
    assert not worker.fewer_elsewhere(table, 1, 5, now)  # the other stopped refreshing: not live
    put(3, 0, 0, now)
    assert not worker.fewer_elsewhere(table, 1, 5, now)  # a forgotten slot (pid 0) is nobody


# --- mlgov serve's options -----------------------------------------------------------------------


def serve_arguments(monkeypatch, *args: str) -> dict:
    """What ``mlgov serve --model m ARGS`` hands its callback (replaced: nothing is served)."""
    from click.testing import CliRunner

    from mlflow_governance.cli import serving

    seen: dict = {}
    monkeypatch.setattr(serving.serve_command, "callback", lambda **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(serving.serve_command, ["--model", "m", *args])
    assert result.exit_code == 0, result.output
    return seen


def test_serve_payload_url_defaults_to_mlgov_payload_url_and_the_option_wins(monkeypatch):
    url = "postgresql://mlgov:s3cret@db.example/payloads"
    monkeypatch.delenv("MLGOV_PAYLOAD_URL", raising=False)
    assert serve_arguments(monkeypatch)["payload_url"] is None  # the sidecar's own default next to the cwd
    monkeypatch.setenv("MLGOV_PAYLOAD_URL", "")
    assert serve_arguments(monkeypatch)["payload_url"] is None
    monkeypatch.setenv("MLGOV_PAYLOAD_URL", url)
    assert serve_arguments(monkeypatch)["payload_url"] == url
    assert serve_arguments(monkeypatch, "--payload-url", "sqlite:///x.db")["payload_url"] == "sqlite:///x.db"

    from click.testing import CliRunner

    from mlflow_governance.cli import serving

    text = " ".join(CliRunner().invoke(serving.serve_command, ["--help"]).output.split())
    assert "MLGOV_PAYLOAD_URL" in text and "s3cret" not in text  # named in the help, its value never shown


def test_the_workers_serve_the_payload_url_the_master_resolved(monkeypatch, tmp_path):
    from mlflow_governance.sidecar import environment_with

    monkeypatch.setenv("MLGOV_PAYLOAD_URL", "sqlite:///master.db")
    master = ServeOptions(model="m", payload_url=serve_arguments(monkeypatch)["payload_url"]).resolved(tmp_path)
    env = environment_with(master, {})
    monkeypatch.setenv("MLGOV_SERVE_OPTIONS", env["MLGOV_SERVE_OPTIONS"])
    monkeypatch.setenv("MLGOV_PAYLOAD_URL", "sqlite:///changed-since.db")
    worker = ServeOptions.from_environment()
    assert worker == master and worker.payload_url == "sqlite:///master.db"
    assert worker.resolved(tmp_path / "elsewhere").payload_url == "sqlite:///master.db"


@pytest.mark.parametrize(("flavors", "words"), [
    ({"python_function": {}}, "the model has no sklearn flavor"),
    ({"sklearn": {"serialization_format": "cloudpickle"}}, "the model was saved with 'cloudpickle'"),
])
def test_serve_checks_the_mlmodel_file_with_the_loading_policy(monkeypatch, tmp_path, flavors, words):
    import mlflow
    import yaml

    from mlflow_governance.sidecar import server

    def download(artifact_uri, dst_path):
        assert artifact_uri == "models:/m/3/MLmodel"
        path = tmp_path / "MLmodel"
        path.write_text(yaml.safe_dump({"flavors": flavors, **SIGNATURE}))
        return str(path)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    with pytest.raises(ValueError, match=words):
        server.check_model_document("m", 3)
    flavors = {"sklearn": {"serialization_format": "skops", "pickled_model": "model.skops"}}
    server.check_model_document("m", 3)  # a skops model with a signature the sidecar checks
