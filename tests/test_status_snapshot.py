"""A status answer is one committed state of the registry, even while a transition commits.

The sidecar's gate decides from one status read; a read that saw the production alias gone but
its version still Ready to Use (a decommissioning committed between two of its statements) once
left a sidecar answering 503 "no production version" instead of 410.
"""

from __future__ import annotations

import threading

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.engine import state
from tests.conftest import ROLE_USER, acting, unique
from tests.governance_helpers import walk_version_to

WRITER_WAIT_SECONDS = 3.0  # PostgreSQL commits beside the read; SQLite waits for the read to end


def test_a_status_read_sees_one_state_while_a_decommissioning_commits(registry, tmp_path):
    client = GovernanceClient()
    model = unique("snapshot")
    version = walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
    reader = threading.current_thread()
    failures: list[BaseException] = []

    def decommission() -> None:
        try:
            GovernanceClient().transition(model, wf.DECOMMISSION, version, comment="replaced")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    writer = threading.Thread(target=decommission)
    real_load = state.load

    def load(store, session, name, v=None):
        """After the read has loaded the version, and before it reads the alias, the transition commits."""
        entity = real_load(store, session, name, v)
        if v is not None and threading.current_thread() is reader and writer.ident is None:
            writer.start()
            writer.join(WRITER_WAIT_SECONDS)
        return entity

    with acting(ROLE_USER[wf.MODEL_OWNER]):
        state.load = load
        try:
            seen = client.status(model, version)
        finally:
            state.load = real_load
        writer.join()
    assert writer.ident is not None and not failures, failures
    stage = seen["version"]["stage"]
    assert (seen["production_version"], stage) in ((version, wf.READY_TO_USE), (None, wf.DECOMMISSIONED)), seen
    after = client.status(model, version)
    assert after["production_version"] is None and after["version"]["stage"] == wf.DECOMMISSIONED, after
