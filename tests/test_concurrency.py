"""Concurrent writers keep one linear audit chain and never double-apply a transition."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from mlflow.exceptions import MlflowException

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from tests.conftest import ROLE_USER, acting, unique
from tests.governance_helpers import initiate, walk_model_to

SCRIPT = """
import os, sys
from mlflow_governance.client.governance import GovernanceClient
client = GovernanceClient()
ok = 0
for i in range(int(sys.argv[2])):
    client.set_field(sys.argv[1], "training_data_asset", f"file:///{os.getpid()}/{i}.parquet")
    ok += 1
print(ok)
"""


def test_processes_appending_at_once_keep_the_chain(registry):
    """Two OS processes fill fields on the same model at the same time."""
    client = GovernanceClient()
    model = unique("race")
    walk_model_to(client, model, wf.DATA_ACQUISITION)
    before = client.verify_audit()["rows"]
    env = {**os.environ, "MLGOV_USER": ROLE_USER[wf.MODEL_DATA_ENGINEER]}
    n = 15
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, model, str(n)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    verdict = client.verify_audit()
    assert verdict["ok"], verdict
    assert verdict["rows"] == before + 2 * n


def test_only_one_of_two_racing_approvals_wins(registry):
    """The same approval sent twice at once: exactly one moves the model, the other is refused."""
    client = GovernanceClient()
    model = unique("double")
    initiate(client, model)

    def approve(_):
        try:
            return client.transition(model, "approve")
        except MlflowException as exc:
            return exc

    with ThreadPoolExecutor(2) as pool, acting(ROLE_USER[wf.MODEL_APPROVER]):
        results = list(pool.map(approve, range(2)))
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, MlflowException)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert losses[0].error_code in ("RESOURCE_CONFLICT", "ABORTED")
    assert client.status(model)["stage"] == wf.DATA_ACQUISITION
    moves = [r for r in client.audit(model) if r["action"] == "approve" and r["outcome"] == "allowed"]
    assert len(moves) == 1
    assert client.verify_audit()["ok"]
