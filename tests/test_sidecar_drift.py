"""The promise, end to end: a drifted model stops answering until a person reviews it.

A real ``mlgov serve`` (gunicorn workers plus its production monitor, at the default monitoring
settings) serves the production version of the winter-trained model, acting as mona, the
ModelMonitor. Winter traffic is scored; then real July flights arrive. The monitor's evaluation
turns usability red through the governance core (audited as mona, the figures in the comment),
the next request gets 423 naming the monitor, its value and its threshold, and after olivia,
the owner, re-accepts with a comment, scoring resumes without a restart and the reviewed July
rows do not turn it red again.
"""

from __future__ import annotations

import json
import time

import requests
import sqlalchemy as sa

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.sidecar import schema
from tests.conftest import acting
from tests.test_sidecar_support import copy_registry, eventually, feature_rows, records, run_sidecar, sidecar_env

REQUEST_ROWS = 100


def test_summer_traffic_turns_the_sidecar_red_until_the_owner_reviews_it(production_model, tmp_path, monkeypatch,
                                                                         winter_flights, summer_flights):
    registry = copy_registry(production_model, tmp_path, "registry.db")
    for key, value in registry.env().items():
        monkeypatch.setenv(key, value)
    env = sidecar_env(registry.registry_uri, registry.tracking_uri, MLGOV_USER="mona")
    # Default monitoring settings (every 1,000 rows or 20 s); a 1-second usability cache.
    with run_sidecar(tmp_path / "run", env, "--model", registry.model, "--workers", "2",
                     "--usability-cache-seconds", "1", "--no-auth") as sidecar:
        session = requests.Session()

        def score(frame):
            return sidecar.post("/invocations", {"dataframe_records": records(feature_rows(frame))}, session=session)

        winter = winter_flights.sample(n=500, random_state=11)
        for start in range(0, len(winter), REQUEST_ROWS):
            assert score(winter.iloc[start:start + REQUEST_ROWS]).status_code == 200
        summer = summer_flights.sample(n=6000, random_state=12).reset_index(drop=True)
        first_drifted = time.monotonic()
        refused = None
        for start in range(0, len(summer), REQUEST_ROWS):
            r = score(summer.iloc[start:start + REQUEST_ROWS])
            if r.status_code == 423:
                refused = r
                break
            assert r.status_code == 200, r.text
        if refused is None:  # the rows are in; the monitor's evaluation may still be running
            refused = eventually(lambda: (lambda r: [r] if r.status_code == 423 else None)(score(summer.head(5))),
                                 timeout=90, interval=1.0, what="a 423 once the monitor has turned usability red")[0]
        red_after = time.monotonic() - first_drifted
        body = refused.json()
        assert body["error_code"] and "not allowed" in body["message"].lower(), body
        set_by = body["set_by"]
        assert (set_by["kind"], set_by["monitor"], set_by["actor"]) == ("monitor", "drift", "mona"), json.dumps(body)
        drift = next(b for b in set_by["breaches"] if b["key"] == "drift.share_drifted")
        assert drift["value"] > drift["threshold"] and f"{drift['value']:.4f}" in body["message"]

        rows = GovernanceClient().audit(registry.model)
        reject = next(r for r in reversed(rows) if r["action"] == wf.REJECT)
        assert (reject["actor"], reject["role"], reject["outcome"]) == ("mona", wf.MODEL_MONITOR, "allowed")
        assert "drift.share_drifted=" in reject["comment"]
        # The 423 came from the worker this session's connection reached; each worker reads
        # governance on its own clock (a 1-second cache), so /status, on a fresh connection, waits for it.
        status = eventually(lambda: (st := sidecar.get("/status").json())["serving"] is False and st,
                            timeout=10, interval=0.2, what="/status saying the sidecar does not serve")
        assert status["usability"] == wf.USABILITY_REJECT, status
        assert status["last_evaluation"]["usability_action"] == "reject"

        evaluations = sa.create_engine(f"sqlite:///{sidecar.workdir / 'mlgov-payloads.db'}")
        e = schema.evaluation

        def evaluations_since(seq):
            with evaluations.connect() as conn:
                return conn.execute(sa.select(e.c.seq, e.c.rows, e.c.verdict, e.c.usability_action)
                                    .where(e.c.model == registry.model, e.c.seq > seq).order_by(e.c.seq)).all()

        with evaluations.connect() as conn:
            before_review = conn.execute(sa.select(sa.func.max(e.c.seq))).scalar() or 0
        with acting("olivia"):
            GovernanceClient().transition(registry.model, "accept", registry.version,
                                          comment="July traffic reviewed: seasonal, accepted for now")
        eventually(lambda: score(summer.head(5)).status_code == 200, timeout=30, what="scoring resumes after accept")
        # The reviewed rows must not turn it red again: wait until the monitor has evaluated the traffic
        # scored since the review (its window restarts after the reviewed rows, so it holds fewer rows
        # than the winter traffic alone), then no evaluation since the review has rejected.
        eventually(lambda: [ev for ev in evaluations_since(before_review) if ev.rows < len(winter)], timeout=90,
                   interval=1.0, what="the monitor's evaluation of the traffic scored after the review")
        assert not [ev for ev in evaluations_since(before_review) if ev.usability_action == wf.USABILITY_REJECT]
        evaluations.dispose()
        assert score(summer.head(5)).status_code == 200
        assert GovernanceClient().status(registry.model, registry.version)["version"]["usability"] == "accept"
    print(f"usability turned red {red_after:.1f} s after the first drifted request")
