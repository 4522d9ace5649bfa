"""Reconciliation: `mlgov audit verify` replays the trail and catches registry state changed behind it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from mlflow import MlflowClient

from mlflow_governance.cli.main import cli
from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from tests.conftest import ROLE_USER, _grant_all, acting, new_pg_database, unique
from tests.governance_helpers import step, walk_model_to, walk_version_to


@pytest.fixture(params=["sqlite", "postgresql"])
def private_registry(request, monkeypatch, tmp_path):
    """A governed registry no other test shares: these tests tamper with it behind the store."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_registry")
    database = new_pg_database("mlgov_recon", request.getfixturevalue("pg_template"))
    url = database.__enter__()
    request.addfinalizer(lambda: database.__exit__(None, None, None))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "governed-" + url)
    _grant_all("governed-" + url)
    return "governed-" + url


def _sql(registry_uri: str, *statements: tuple[str, dict]) -> None:
    """Write the registry's tables directly, behind the store, as a database insider could."""
    eng = sa.create_engine(registry_uri.removeprefix("governed-"))
    with eng.begin() as conn:
        for text, params in statements:
            conn.execute(sa.text(text), params)
    eng.dispose()


def _verify_cli():
    return CliRunner().invoke(cli, ["audit", "verify"])


def findings(client: GovernanceClient, model: str) -> list[str]:
    """What verify reports about ``model`` (the PostgreSQL registry is shared by the session's tests)."""
    return [d["text"] for d in client.verify_audit()["discrepancies"] if d["model"] == model]


def test_every_lifecycle_path_reconciles(registry, tmp_path):
    """Walks, usability changes, supersession, sending back and decommissioning all replay exactly."""
    client = GovernanceClient()
    model = unique("recon")
    v1 = walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
    with acting(ROLE_USER[wf.MODEL_MONITOR]):
        client.transition(model, "reject", v1, comment="drift: share 0.6")
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        client.transition(model, "accept", v1, comment="reviewed")
    v2 = walk_version_to(client, model, wf.MODEL_DEVELOPMENT_COMPLETED, tmp_path, initiate_model=False)
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        client.transition(model, "reject", v2, comment="needs another feature")
    while client.status(model, v2)["version"]["stage"] != wf.READY_TO_USE:
        step(client, model, v2)  # supersedes v1
    assert client.status(model)["production_version"] == v2
    with acting(ROLE_USER[wf.MODEL_VALIDATOR]):
        version3 = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path, initiate_model=False)
        client.set_field(model, "validation_report", "runs:/v3/report.html", version3)
    other = unique("recon-decom")
    walk_version_to(client, other, wf.APPROVED_FOR_DEPLOYMENT, tmp_path)
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        client.transition(other, "decommission", comment="project stopped")
    assert findings(client, model) == [] and findings(client, other) == []
    if registry.startswith("governed-sqlite"):  # a private database: the whole verdict is ours
        assert client.verify_audit()["ok"]
        r = _verify_cli()
        assert r.exit_code == 0 and "the registry matches the trail" in r.output, r.output


def test_sql_behind_the_store_is_detected(private_registry, tmp_path):
    """The finding as it was made: tags set to Ready to Use with usability accept and the alias bound in SQL."""
    client = GovernanceClient()
    model = unique("sqlprod")
    version = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
    assert findings(client, model) == []
    _sql(
        private_registry,
        ("UPDATE model_version_tags SET value = :v WHERE name = :m AND version = :n AND key = 'mlgov.stage'",
         {"v": wf.READY_TO_USE, "m": model, "n": version}),
        ("DELETE FROM model_version_tags WHERE name = :m AND version = :n AND key = 'mlgov.assignee_role'",
         {"m": model, "n": version}),
        ("INSERT INTO model_version_tags (workspace, name, version, key, value) "
         "VALUES ('default', :m, :n, 'mlgov.usability', 'accept')", {"m": model, "n": version}),
        ("INSERT INTO registered_model_aliases (workspace, name, alias, version) "
         "VALUES ('default', :m, 'production', :n)", {"m": model, "n": version}),
    )
    # What the review saw: status believes it, and the chain alone is intact.
    status = client.status(model, version)
    assert status["version"]["stage"] == wf.READY_TO_USE and status["production_version"] == version
    verdict = client.verify_audit()
    assert not verdict["ok"]
    assert verdict["problem"] is None  # the chain itself is intact: only the replay sees it
    texts = findings(client, model)
    assert f"{model} v{version}: tag mlgov.stage is 'Ready to Use'; the audit trail says 'Approved for Validation'" in texts
    assert f"{model} v{version}: tag mlgov.usability is 'accept' but no audit row set it" in texts
    assert any("mlgov.assignee_role is absent" in t for t in texts)
    assert any(t.startswith(f"{model} v{version}: the 'production' alias points at version {version}") for t in texts)
    r = _verify_cli()
    assert r.exit_code == 1
    assert "REGISTRY DISAGREES WITH THE AUDIT TRAIL" in r.output and f"{model} v{version}" in r.output
    assert "Traceback" not in r.output


def test_removed_alias_lookalike_alias_and_lookalike_tag_are_detected(private_registry, tmp_path):
    client = GovernanceClient()
    model = unique("sqlalias")
    version = walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
    assert findings(client, model) == []
    _sql(
        private_registry,
        ("DELETE FROM registered_model_aliases WHERE name = :m AND alias = 'production'", {"m": model}),
        ("INSERT INTO registered_model_aliases (workspace, name, alias, version) "
         "VALUES ('default', :m, 'Production', :n)", {"m": model, "n": version}),
        ("INSERT INTO registered_model_tags (workspace, name, key, value) "
         "VALUES ('default', :m, :k, 'Ready to Use')", {"m": model, "k": "\uff4dlgov.stage"}),
    )
    texts = findings(client, model)
    assert f"{model} v{version}: alias 'Production' imitates the production alias" in texts
    assert f"{model} v{version}: the 'production' alias points at no version; the audit trail says version {version}" in texts
    assert any(t.startswith(f"{model}: tag '\uff4dlgov.stage' looks like a governance tag") for t in texts)


def test_model_level_stage_edit_and_deprecated_production_stage(sqlite_registry, tmp_path):
    client = GovernanceClient()
    model = unique("sqlstage")
    walk_model_to(client, model, wf.DATA_ACQUISITION)
    version = int(MlflowClient().create_model_version(model, source=str(tmp_path)).version)
    _sql(
        sqlite_registry,
        ("UPDATE registered_model_tags SET value = :v WHERE name = :m AND key = 'mlgov.stage'",
         {"v": wf.APPROVED_FOR_DEVELOPMENT, "m": model}),
        ("UPDATE model_versions SET current_stage = 'Production' WHERE name = :m AND version = :n",
         {"m": model, "n": version}),
    )
    texts = findings(client, model)
    assert f"{model}: tag mlgov.stage is 'Approved for Development'; the audit trail says 'Data Acquisition'" in texts
    assert f"{model} v{version}: is in MLflow's deprecated 'Production' stage, which governance never sets" in texts


@pytest.mark.parametrize("edit", ["field", "developer"])
def test_field_and_developer_edits_are_detected(edit, sqlite_registry, tmp_path):
    client = GovernanceClient()
    model = unique("sqlfield")
    version = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
    key, value = {
        "field": ("mlgov.field.model_quality", "roc_auc=0.99"),
        "developer": ("mlgov.developer", "someone-else"),
    }[edit]
    _sql(sqlite_registry, ("UPDATE model_version_tags SET value = :v WHERE name = :m AND version = :n AND key = :k",
                           {"v": value, "m": model, "n": version, "k": key}))
    texts = findings(client, model)
    assert len(texts) == 1 and texts[0].startswith(f"{model} v{version}: tag {key} is {value!r}; the audit trail says")
