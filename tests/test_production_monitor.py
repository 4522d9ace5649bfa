"""The production monitor (`sidecar.watch`): live windows of scored rows, and usability turned red.

Scored rows are written to a real payload database in the shape the scoring workers write them
(features as scored, prediction and probability from `scoring.score` of the registered version),
then the watcher evaluates them with the version's monitors. Summer flights (July, far from the
January and February training months) breach and turn usability to reject, audited as the
ModelMonitor; more winter flights do not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.features import FEATURES
from mlflow_governance.safe.model_files import load_mlflow_sklearn
from mlflow_governance.scoring.decision import score
from mlflow_governance.sidecar import schema
from mlflow_governance.sidecar.watch import POLL_SECONDS, Watcher, read_window
from mlflow_governance.training.data import feature_frame
from tests.conftest import acting
from tests.plugins.training_fixtures import REPO

ROWS = 5000


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture
def payloads(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'payloads.db'}"
    schema.create_all(sa.create_engine(url))
    return url


def log_rows(url: str, reg, frame: pd.DataFrame, staging: bool = False) -> list[str]:
    """Score ``frame`` with the registered version and log it as the workers do; returns request ids."""
    model, _ = load_mlflow_sklearn(reg.model_uri, Path(os.environ.get("TMPDIR", "/tmp")) / uuid.uuid4().hex)
    features = feature_frame(frame)
    prediction, probability = score(model, features)
    ids = [uuid.uuid4().hex for _ in range(len(frame))]
    now = int(time.time() * 1000)
    records = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    rows = [
        {"request_id": i, "ts": now, "model": reg.model, "version": reg.version, "staging": staging,
         "features": json.dumps(r), "prediction": int(p), "probability": float(q)}
        for i, r, p, q in zip(ids, records, prediction, probability, strict=True)
    ]
    with sa.create_engine(url).begin() as conn:
        conn.execute(schema.payload.insert(), rows)
    return ids


def test_summer_traffic_turns_usability_red(production_registry, payloads, summer_flights):
    reg = production_registry
    log_rows(payloads, reg, summer_flights.sample(n=ROWS, random_state=1))
    with acting("mona"):
        watcher = Watcher(model=reg.model, payload_url=payloads)
        evaluation = watcher.run_once()
    assert evaluation.verdict == "breach"
    drift = evaluation.result("drift")
    assert drift.verdict == "breach"
    status = GovernanceClient().status(reg.model, reg.version)
    assert status["version"]["usability"] == wf.USABILITY_REJECT
    assert "REFUSED" in status["production"]
    row = GovernanceClient().audit(reg.model)[-1]
    assert (row["action"], row["actor"], row["role"], row["outcome"]) == ("reject", "mona", wf.MODEL_MONITOR, "allowed")
    assert "drift.share_drifted=" in row["comment"] and watcher.last["run_id"] in row["comment"]
    with sa.create_engine(payloads).connect() as conn:
        recorded = conn.execute(sa.select(schema.evaluation)).all()
    assert len(recorded) == 1 and recorded[0].usability_action == "reject" and recorded[0].rows == ROWS
    assert any(b["monitor"] == "drift" and b["key"] == "drift.share_drifted" for b in json.loads(recorded[0].breaches))
    # The change's governance event carries the monitor's figures (for the people it notifies).
    event = GovernanceClient().events(0, 1000, reg.model)[-1]
    assert (event["kind"], event["actor"], event["usability"]) == ("usability_changed", "mona", wf.USABILITY_REJECT)
    assert event["evidence"]["run_id"] == watcher.last["run_id"] and event["evidence"]["rows"] == ROWS
    assert event["evidence"]["breaches"] == json.loads(recorded[0].breaches)
    run = MlflowClient().get_run(watcher.last["run_id"])
    assert run.data.tags["mlgov_monitor_verdict"] == "breach" and run.data.tags["governed_version"] == str(reg.version)
    assert run.data.metrics["drift.share_drifted"] == pytest.approx(evaluation.figures()["drift.share_drifted"]["value"])
    assert {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "monitoring")} >= {
        "monitoring/evaluation.json", "monitoring/evidently_drift.html"}
    # A second breach does not reject again: the version already waits for its owner.
    log_rows(payloads, reg, summer_flights.sample(n=1000, random_state=2))
    with acting("mona"):
        assert watcher.run_once().verdict == "breach"
    assert watcher.last["usability_action"] is None
    assert [r["action"] for r in GovernanceClient().audit(reg.model)].count("reject") == 1
    assert GovernanceClient().verify_audit()["ok"]


def test_a_refused_reject_leaves_the_evaluation_row_without_it(production_registry, payloads, summer_flights):
    """The row names its reject before the transition; when the registry refuses the reject (here
    the watcher acts as the model owner, who may not reject a version), the row is unmarked, the
    usability stays green and the refusal is what the monitor reports."""
    reg = production_registry
    log_rows(payloads, reg, summer_flights.sample(n=ROWS, random_state=5))
    with acting("olivia"):
        watcher = Watcher(model=reg.model, payload_url=payloads)
        evaluation = watcher.run_once()
    assert evaluation.verdict == "breach"
    assert watcher.last["usability_action"] is None
    assert watcher.last["comment"].startswith("the reject was refused: "), watcher.last["comment"]
    assert GovernanceClient().status(reg.model, reg.version)["version"]["usability"] == wf.USABILITY_ACCEPT
    with sa.create_engine(payloads).connect() as conn:
        recorded = conn.execute(sa.select(schema.evaluation)).all()
    assert len(recorded) == 1 and recorded[0].verdict == "breach" and recorded[0].usability_action is None
    assert "reject" not in [r["action"] for r in GovernanceClient().audit(reg.model) if r["outcome"] == "allowed"]


def test_winter_traffic_passes_and_feedback_reaches_quality(production_registry, payloads, winter_flights):
    reg = production_registry
    sample = winter_flights[winter_flights["DELAYED"].notna()].sample(n=ROWS, random_state=3).reset_index(drop=True)
    ids = log_rows(payloads, reg, sample)
    labelled = sample.index[:3000]
    with sa.create_engine(payloads).begin() as conn:
        conn.execute(schema.feedback.insert(), [  # first labels, corrected since: kept, superseded, not read
            {"request_id": ids[i], "ts": 1, "label": 1 - int(sample.loc[i, "DELAYED"]), "superseded_by": 0,
             "superseded_at": 2} for i in labelled[:10]])
        conn.execute(schema.feedback.insert(), [  # the current labels
            {"request_id": ids[i], "ts": 2, "label": int(sample.loc[i, "DELAYED"])} for i in labelled])
    with acting("mona"):
        evaluation = Watcher(model=reg.model, payload_url=payloads).run_once()
    assert evaluation.verdict == "pass", evaluation.reason
    assert GovernanceClient().status(reg.model, reg.version)["version"]["usability"] == wf.USABILITY_ACCEPT
    from sklearn.metrics import accuracy_score

    model, _ = load_mlflow_sklearn(reg.model_uri, Path(os.environ.get("TMPDIR", "/tmp")) / uuid.uuid4().hex)
    prediction, _ = score(model, feature_frame(sample.loc[labelled]))
    expected = accuracy_score(sample.loc[labelled, "DELAYED"].astype(int), prediction)
    assert evaluation.figures()["quality.accuracy"]["value"] == pytest.approx(expected, abs=1e-12)
    window, top = read_window(sa.create_engine(payloads), reg.model, reg.version, ROWS)
    assert len(window) == ROWS and int((~pd.isna(window.labels)).sum()) == len(labelled)
    assert list(window.features.columns) == list(FEATURES)


def test_staging_rows_are_judged_but_never_change_usability(production_registry, payloads, summer_flights):
    reg = production_registry
    log_rows(payloads, reg, summer_flights.sample(n=ROWS, random_state=4), staging=True)
    with acting("mona"):
        watcher = Watcher(model=reg.model, version=reg.version, payload_url=payloads, staging=True)
        assert watcher.run_once().verdict == "breach"
        # The production rows are another window: there are none.
        assert Watcher(model=reg.model, payload_url=payloads).run_once() is None
    assert GovernanceClient().status(reg.model, reg.version)["version"]["usability"] == wf.USABILITY_ACCEPT


def test_the_loop_evaluates_every_n_rows_and_stops(production_registry, payloads, winter_flights):
    reg = production_registry
    stop = threading.Event()
    with acting("mona"):
        watcher = Watcher(model=reg.model, payload_url=payloads, every_rows=2500, every_seconds=0)
        answers: list[bool] = []  # what each pass of the loop decided (`due`), in order
        decide = watcher.due
        watcher.due = lambda: answers.append(decide()) or answers[-1]
        thread = threading.Thread(target=watcher.loop, args=(stop,), daemon=True)
        thread.start()
        try:
            log_rows(payloads, reg, winter_flights.sample(n=1000, random_state=5))
            # Two more passes of the loop (so at least one began after the 1,000 rows were in):
            # each decided that 1,000 rows are not yet due, and nothing was evaluated.
            seen = len(answers)
            deadline = time.monotonic() + 30
            while len(answers) < seen + 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(answers) >= seen + 2 and not any(answers[seen:]), answers
            engine = sa.create_engine(payloads)
            with engine.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(schema.evaluation)).scalar() == 0
            log_rows(payloads, reg, winter_flights.sample(n=2000, random_state=6))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    done = conn.execute(sa.select(schema.evaluation.c.rows)).scalars().all()
                if done:
                    break
                time.sleep(0.5)
            assert done == [3000]
        finally:
            stop.set()
            thread.join(timeout=30)
    assert not thread.is_alive()


def test_mlflow_run_monitor_as_a_batch_job(production_registry, payloads, summer_flights, tmp_path):
    reg = production_registry
    log_rows(payloads, reg, summer_flights.sample(n=ROWS, random_state=7))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    env.update(reg.env(), MLGOV_USER="mona", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(REPO), "-e", "monitor", "--env-manager", "local",
         "-P", f"model={reg.model}", "-P", f"payload_url={payloads}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode != 0 and "usability turned to reject" in done.stdout, done.stdout + done.stderr[-3000:]
    assert GovernanceClient().status(reg.model, reg.version)["version"]["usability"] == wf.USABILITY_REJECT
    refused = subprocess.run(
        [str(Path(sys.executable).parent / "mlgov"), "monitor", "--model", reg.model, "--payload-url", payloads],
        cwd=tmp_path, env={**env, "MLGOV_USER": "olivia"}, capture_output=True, text=True, timeout=600,
    )
    # Already red: judged again, no second reject, exit 5 for the breach.
    assert refused.returncode == 5, refused.stderr


def test_after_the_owner_re_accepts_the_reviewed_rows_do_not_turn_it_red_again(production_registry, payloads,
                                                                              summer_flights, winter_flights):
    reg = production_registry
    log_rows(payloads, reg, summer_flights.sample(n=ROWS, random_state=8))
    with acting("mona"):
        watcher = Watcher(model=reg.model, payload_url=payloads)
        assert watcher.run_once().verdict == "breach"
    time.sleep(0.01)
    with acting("olivia"):
        GovernanceClient().transition(reg.model, "accept", reg.version, comment="July schedule change reviewed")
    with acting("mona"):
        # The same watcher, and a new one (a restarted sidecar), start their window after the review.
        for w in (watcher, Watcher(model=reg.model, payload_url=payloads)):
            assert w.run_once() is None and "no scored rows" in w.last["reason"]
        log_rows(payloads, reg, winter_flights.sample(n=3000, random_state=9))
        evaluation = watcher.run_once()
    assert evaluation.verdict == "pass" and watcher.last["usability_action"] is None
    assert GovernanceClient().status(reg.model, reg.version)["version"]["usability"] == wf.USABILITY_ACCEPT


def _evaluation_times(url: str) -> list[int]:
    with sa.create_engine(url).connect() as conn:
        return conn.execute(sa.select(schema.evaluation.c.ts).order_by(schema.evaluation.c.seq)).scalars().all()


def _wait_for_evaluations(url: str, count: int, timeout: float = 90) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = _evaluation_times(url)
        if len(done) >= count:
            return done
        time.sleep(0.3)
    raise AssertionError(f"{count} evaluations expected within {timeout}s, saw {len(_evaluation_times(url))}")


def test_one_time_preparation_is_not_charged_to_the_cpu_share(production_registry, payloads, winter_flights):
    """warm_up (run by the loop before its first evaluation) prepares the served version's monitors;
    an evaluation's charged CPU is its own, and the preparation a cold watcher does inside its first
    evaluation is left out of it (otherwise a new monitor would wait a minute after start)."""
    reg = production_registry
    log_rows(payloads, reg, winter_flights.sample(n=2000, random_state=12))
    with acting("mona"):
        warm = Watcher(model=reg.model, payload_url=payloads)
        assert warm.warm_up() > 0
        assert [version for version, _ in warm._prepared] == [reg.version]
        prepared = warm._preparation_cost
        before = time.thread_time()
        warm.run_once()
        total = time.thread_time() - before
        assert warm._preparation_cost == prepared  # nothing prepared again
        assert warm.last["cpu_seconds"] == pytest.approx(total, abs=0.05)
        cold = Watcher(model=reg.model, payload_url=payloads)
        before = time.thread_time()
        cold.run_once()
        total = time.thread_time() - before
    assert cold._preparation_cost > 0
    assert cold.last["cpu_seconds"] == pytest.approx(total - cold._preparation_cost, abs=0.05)


# cpu-share at the default fifth of a core: the first evaluation (with evidently's report, about a
# CPU second or more) is followed by the next some 5 s later, not within the 1 s poll.
@pytest.mark.parametrize("min_interval, cpu_share", [(6.0, 1.0), (0.0, 0.2)], ids=["min-interval", "cpu-share"])
def test_heavy_traffic_cannot_make_the_monitor_evaluate_back_to_back(production_registry, payloads, winter_flights,
                                                                      min_interval, cpu_share):
    """Rows arrive far faster than every_rows: evaluations stay min_interval apart, and an
    evaluation that cost c CPU seconds is followed by one no sooner than c / cpu_share later."""
    reg = production_registry
    stop = threading.Event()
    with acting("mona"):
        watcher = Watcher(model=reg.model, payload_url=payloads, every_rows=500, every_seconds=0,
                          min_interval_seconds=min_interval, cpu_share=cpu_share)
        thread = threading.Thread(target=watcher.loop, args=(stop,), daemon=True)
        thread.start()
        try:
            log_rows(payloads, reg, winter_flights.sample(n=3000, random_state=10))
            first = _wait_for_evaluations(payloads, 1)[0]
            cost = watcher.last["cpu_seconds"]
            log_rows(payloads, reg, winter_flights.sample(n=3000, random_state=11))  # due at once by rows
            second = _wait_for_evaluations(payloads, 2)[1]
        finally:
            stop.set()
            thread.join(timeout=30)
    assert cost > 0
    assert (second - first) / 1000 >= max(min_interval, cost / cpu_share) - 0.05
    assert max(min_interval, cost / cpu_share) > 2 * POLL_SECONDS  # the rule, not the poll, set the gap


def test_evidently_report_on_the_first_evaluation_every_breach_and_otherwise_periodically(
        production_registry, payloads, winter_flights, summer_flights):
    reg = production_registry

    def artifacts(run_id: str) -> set[str]:
        return {a.path for a in MlflowClient().list_artifacts(run_id, "monitoring")}

    with acting("mona"):
        watcher = Watcher(model=reg.model, payload_url=payloads, report_every_seconds=300)
        log_rows(payloads, reg, winter_flights.sample(n=3000, random_state=12))
        runs = []
        for _ in range(2):
            assert watcher.run_once().verdict == "pass"
            runs.append(watcher.last["run_id"])
        log_rows(payloads, reg, summer_flights.sample(n=ROWS, random_state=13))
        assert watcher.run_once().verdict == "breach"
        runs.append(watcher.last["run_id"])
    first, second, breach = runs
    assert "monitoring/evidently_drift.html" in artifacts(first)
    assert artifacts(second) == {"monitoring/evaluation.json"}
    assert MlflowClient().get_run(second).data.tags["mlgov_monitor_report"] == "figures only"
    assert "monitoring/evidently_drift.html" in artifacts(breach)
    assert MlflowClient().get_run(breach).data.tags["mlgov_monitor_report"] == "evidently"
