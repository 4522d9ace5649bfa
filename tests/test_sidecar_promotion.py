"""A new version promoted while the sidecar runs: the production alias moves and the same process
serves the new version (no restart), the old one is never answered for again.

Version 2 is a second registration of the production model's own files (so it really loads and
scores); it walks the whole lifecycle with version 1's evidence while the sidecar keeps serving
version 1. When version 2 reaches Ready to Use the governance core supersedes version 1
(decommissioned) and binds the production alias to 2; within the usability cache every worker of
the running sidecar scores with version 2, and its payload rows say so.
"""

from __future__ import annotations

import sqlalchemy as sa
from mlflow import MlflowClient

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.sidecar import schema
from tests.conftest import ROLE_USER, acting
from tests.governance_helpers import PATH, fields_for
from tests.plugins.training_fixtures import _env
from tests.test_sidecar_support import (
    CACHE_SECONDS,
    copy_registry,
    eventually,
    feature_rows,
    records,
    run_sidecar,
    serve_args,
    sidecar_env,
)


def _walk_to_production(client: GovernanceClient, model: str, version: int, evidence: dict[str, str]) -> None:
    """Every happy-path step of ``version``, each as its role, with the evidence of ``evidence``
    (the production version's own field values) where a stage asks for a field it has."""
    while (stage := client.status(model, version)["version"]["stage"]) != wf.READY_TO_USE:
        row = next(r for r in PATH if r.source == stage and r.scope == wf.VERSION_SCOPE)
        fields = {k: evidence.get(k, v) for k, v in fields_for(stage, model, version).items()}
        if "model_asset" in fields:
            fields["model_asset"] = f"models:/{model}/{version}"
        with acting(ROLE_USER[row.role]):
            client.transition(model, row.action, version, fields, comment=f"version {version}: {row.action}")


def test_promoting_a_new_version_moves_a_running_sidecar_to_it(production_model, tmp_path, winter_flights):
    registry = copy_registry(production_model, tmp_path, "registry.db")
    env = sidecar_env(registry.registry_uri, registry.tracking_uri, MLGOV_USER="mona")
    body = {"dataframe_records": records(feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(3)))}
    with run_sidecar(tmp_path / "run", env, "--model", registry.model, *serve_args()) as sidecar:
        first = sidecar.score(body)
        assert first.status_code == 200 and first.json()["version"] == registry.version, first.text
        with _env(**registry.env(), MLGOV_ADMIN="admin"):
            client = GovernanceClient(registry.registry_uri)
            v1 = MlflowClient().get_model_version(registry.model, str(registry.version))
            with acting(ROLE_USER[wf.MODEL_DEVELOPER]):
                v2 = int(MlflowClient().create_model_version(registry.model, source=v1.source,
                                                             run_id=v1.run_id).version)
            evidence = client.status(registry.model, registry.version)["version"]["fields"]
            # While version 2 is on its way, the sidecar keeps serving version 1.
            assert sidecar.score(body).json()["version"] == registry.version
            _walk_to_production(client, registry.model, v2, evidence)
            status = client.status(registry.model)
            assert status["production_version"] == v2
            assert client.status(registry.model, registry.version)["version"]["stage"] == wf.DECOMMISSIONED
        # Each worker reads governance on its own clock and loads version 2 before switching to it:
        # until every worker has, an answer may still come from version 1, never a refusal.
        answers: list[tuple[int, int | None]] = []

        def all_on_v2() -> dict | None:
            seen = [sidecar.score(body) for _ in range(8)]
            answers.extend((r.status_code, r.json().get("version")) for r in seen)
            return seen[0].json() if all((r.status_code, r.json().get("version")) == (200, v2) for r in seen) else None

        moved = eventually(all_on_v2, timeout=CACHE_SECONDS * 2 + 30, what="every worker scoring with version 2")
        assert set(answers) <= {(200, registry.version), (200, v2)}, answers
        assert moved["predictions"] == first.json()["predictions"]  # the same files, the same scores
        served = sidecar.get("/status").json()
        assert served["version"] == v2 and served["stage"] == wf.READY_TO_USE and served["serving"] is True
        assert sidecar.proc.poll() is None  # the process that served version 1 serves version 2
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'run' / 'mlgov-payloads.db'}")
    p = schema.payload
    try:
        with engine.connect() as conn:
            by_id = dict(conn.execute(sa.select(p.c.request_id, p.c.version).where(
                p.c.request_id.in_(first.json()["request_ids"] + moved["request_ids"]))).all())
    finally:
        engine.dispose()
    assert {by_id[i] for i in first.json()["request_ids"]} == {registry.version}
    assert {by_id[i] for i in moved["request_ids"]} == {v2}
