"""The governed registry store on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from tests.conftest import ROLE_USER, USERS, acting, unique
from tests.governance_helpers import PATH, fields_for, initiate, new_version, step, walk_model_to, walk_version_to


def code(exc_info) -> str:
    return exc_info.value.error_code


def test_full_walk_every_role_against_every_step(registry, tmp_path):
    """At each step every role is tried: only the row's role passes, and refusals change nothing."""
    client = GovernanceClient()
    model = unique("delay")
    inventory_id = initiate(client, model)
    assert inventory_id.startswith("MOD_") and len(inventory_id) == 10
    version = None
    performed = []
    for row in PATH:
        if row.scope == wf.VERSION_SCOPE and version is None:
            version = new_version(model, tmp_path)
        before = client.status(model, version)
        fields = fields_for(row.source, model, version)
        for user, role in USERS.items():
            if role == row.role:
                continue
            with acting(user), pytest.raises(MlflowException) as exc:
                client.transition(model, row.action, version, fields, comment="trying")
            assert code(exc) == "PERMISSION_DENIED", exc.value.message
            assert row.role in exc.value.message
        assert client.status(model, version) == before
        with acting(ROLE_USER[row.role]):
            after = client.transition(model, row.action, version, fields)
        entity = after["version"] if row.scope == wf.VERSION_SCOPE else after
        assert entity["stage"] == row.dest
        assert entity["assignee_role"] == wf.ASSIGNEE_ROLE.get(row.dest)
        performed.append((ROLE_USER[row.role], row.action, row.source, row.dest))

    final = client.status(model, version)
    assert final["version"]["stage"] == wf.READY_TO_USE
    assert final["version"]["usability"] == "accept"
    assert final["production_version"] == version
    assert int(MlflowClient().get_model_version_by_alias(model, "production").version) == version
    # The model itself stays at the development entry, so a retrained version can re-enter.
    assert final["stage"] == wf.APPROVED_FOR_DEVELOPMENT
    tags = MlflowClient().get_model_version(model, version).tags
    assert tags["mlgov.stage"] == wf.READY_TO_USE and tags["mlgov.usability"] == "accept"
    assert tags["mlgov.field.validation_report"] == "runs:/v/report.html"

    rows = client.audit(model)
    allowed = [(r["actor"], r["action"], r["from_stage"], r["to_stage"]) for r in rows if r["outcome"] == "allowed"]
    assert allowed[0] == (ROLE_USER[wf.MODEL_OWNER], "initiate", None, wf.CANDIDACY_REVIEW)
    assert allowed[1:] == performed
    refused = [r for r in rows if r["outcome"] == "refused"]
    assert len(refused) == len(PATH) * (len(USERS) - 1)
    assert all(r["reason"] for r in refused)
    assert client.verify_audit()["ok"]


def test_seven_distinct_users_reach_ready_to_use(registry, tmp_path):
    client = GovernanceClient()
    model = unique("walk")
    version = walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
    actors = {r["actor"] for r in client.audit(model) if r["outcome"] == "allowed"}
    assert actors == set(USERS)
    assert client.status(model, version)["version"]["developer"] == ROLE_USER[wf.MODEL_DEVELOPER]


def test_inventory_ids_are_monotonic_and_unique(sqlite_registry):
    client = GovernanceClient()
    ids = [initiate(client, f"m{i}") for i in range(3)]
    assert ids == ["MOD_000001", "MOD_000002", "MOD_000003"]
    with pytest.raises(MlflowException) as exc:
        initiate(client, "m1")
    assert code(exc) == "RESOURCE_CONFLICT" and "already governed as MOD_000002" in exc.value.message


def test_initiate_needs_owner_and_valid_fields_and_leaves_nothing(registry):
    client = GovernanceClient()
    model = unique("nope")
    with acting(ROLE_USER[wf.MODEL_APPROVER]), pytest.raises(MlflowException) as exc:
        client.initiate(model, use_case="x")
    assert code(exc) == "PERMISSION_DENIED"
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        client.initiate(model, use_case="x", risk_tier="extreme")
    assert code(exc) == "INVALID_PARAMETER_VALUE" and "risk_tier" in exc.value.message
    with pytest.raises(MlflowException) as exc:
        MlflowClient().get_registered_model(model)
    assert code(exc) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as exc:
        client.initiate(model, use_case="x")  # nobody acting
    assert code(exc) == "UNAUTHENTICATED" and "MLGOV_USER" in exc.value.message


def test_missing_fields_refused_and_nothing_written(registry):
    client = GovernanceClient()
    model = unique("fields")
    walk_model_to(client, model, wf.DATA_ACQUISITION)
    before = client.status(model)
    with acting(ROLE_USER[wf.MODEL_DATA_ENGINEER]), pytest.raises(MlflowException) as exc:
        client.transition(model, "submit", fields={"training_data_asset": "file:///x.parquet"})
    assert code(exc) == "INVALID_PARAMETER_VALUE"
    assert "missing required field(s) training_data_quality_flag" in exc.value.message
    assert client.status(model) == before  # the given field was not written either
    with acting(ROLE_USER[wf.MODEL_DATA_ENGINEER]):
        client.set_field(model, "training_data_quality_flag", "not acceptable")
        client.transition(model, "submit", fields={"training_data_asset": "file:///x.parquet"})
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        client.transition(model, "approve")
    assert code(exc) == "INVALID_PARAMETER_VALUE" and "must be acceptable" in exc.value.message
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        client.transition(model, "reject")
    assert "needs a comment" in exc.value.message
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        back = client.transition(model, "reject", comment="data quality not acceptable: re-acquire")
    assert back["stage"] == wf.DATA_ACQUISITION


def test_field_filling_is_role_gated(registry):
    client = GovernanceClient()
    model = unique("fill")
    walk_model_to(client, model, wf.DATA_ACQUISITION)
    with acting(ROLE_USER[wf.MODEL_DEVELOPER]), pytest.raises(MlflowException) as exc:
        client.set_field(model, "training_data_asset", "x")
    assert code(exc) == "PERMISSION_DENIED" and "ModelDataEngineer" in exc.value.message
    with acting(ROLE_USER[wf.MODEL_DATA_ENGINEER]), pytest.raises(MlflowException) as exc:
        client.set_field(model, "endpoint", "http://x")
    assert code(exc) == "INVALID_PARAMETER_VALUE" and "not filled in stage" in exc.value.message
    with acting(ROLE_USER[wf.MODEL_DATA_ENGINEER]), pytest.raises(MlflowException) as exc:
        client.set_field(model, "no_such_field", "x")
    assert code(exc) == "INVALID_PARAMETER_VALUE" and "unknown field" in exc.value.message


def test_separation_of_duties(registry, tmp_path, monkeypatch):
    client = GovernanceClient()
    model = unique("sod")
    dev = ROLE_USER[wf.MODEL_DEVELOPER]
    version = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
    with acting("admin"):
        client.grant(dev, wf.MODEL_VALIDATOR)
        client.grant(dev, wf.MODEL_OWNER)
    try:
        fields = fields_for(wf.APPROVED_FOR_VALIDATION, model, version)
        with acting(dev), pytest.raises(MlflowException) as exc:
            client.transition(model, "submit", version, fields)
        assert code(exc) == "PERMISSION_DENIED" and "separation of duties" in exc.value.message
        with acting(ROLE_USER[wf.MODEL_VALIDATOR]):
            client.transition(model, "submit", version, fields)
        with acting(dev), pytest.raises(MlflowException) as exc:
            client.transition(model, "approve", version)
        assert "developed this version" in exc.value.message
        # Configurable: off, the developer may approve (still audited as such).
        monkeypatch.setenv("MLGOV_SEPARATION_OF_DUTIES", "false")
        with acting(dev):
            assert client.transition(model, "approve", version)["version"]["stage"] == wf.APPROVED_FOR_DEPLOYMENT
    finally:
        with acting("admin"):
            client.revoke(dev, wf.MODEL_VALIDATOR)
            client.revoke(dev, wf.MODEL_OWNER)


def test_approver_may_not_approve_own_step(registry):
    client = GovernanceClient()
    owner = ROLE_USER[wf.MODEL_OWNER]
    with acting("admin"):
        client.grant(owner, wf.MODEL_APPROVER)
    try:
        model = unique("own")
        initiate(client, model)
        with acting(owner), pytest.raises(MlflowException) as exc:
            client.transition(model, "approve")
        assert code(exc) == "PERMISSION_DENIED" and "performed the step" in exc.value.message
    finally:
        with acting("admin"):
            client.revoke(owner, wf.MODEL_APPROVER)


def test_direct_governance_tag_writes_are_refused(registry, tmp_path):
    client, mlflow_client = GovernanceClient(), MlflowClient()
    model = unique("tags")
    version = walk_version_to(client, model, wf.MODEL_DEVELOPMENT_COMPLETED, tmp_path)
    before = client.status(model, version)
    attempts = [
        lambda: mlflow_client.set_registered_model_tag(model, "mlgov.stage", wf.READY_TO_USE),
        lambda: mlflow_client.delete_registered_model_tag(model, "mlgov.inventory_id"),
        lambda: mlflow_client.set_model_version_tag(model, version, "mlgov.usability", "accept"),
        lambda: mlflow_client.delete_model_version_tag(model, version, "mlgov.stage"),
        lambda: mlflow_client.set_model_version_tag(model, version, "mlgov.developer", "mallory"),
        lambda: mlflow_client.create_registered_model(unique("x"), tags={"mlgov.stage": wf.READY_TO_USE}),
        lambda: mlflow_client.create_model_version(model, str(tmp_path), tags={"mlgov.stage": wf.READY_TO_USE}),
    ]
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        for attempt in attempts:
            with pytest.raises(MlflowException) as exc:
                attempt()
            assert code(exc) == "PERMISSION_DENIED"
            assert "Governance:" in exc.value.message
    assert client.status(model, version) == before
    # Other tags are untouched by governance.
    mlflow_client.set_registered_model_tag(model, "team", "ops")
    assert mlflow_client.get_registered_model(model).tags["team"] == "ops"
    refused = [r for r in client.audit(model) if r["outcome"] == "refused"]
    assert {r["action"] for r in refused} >= {"tag_write", "tag_delete"}


def test_actions_and_fields_through_registry_tags(registry, tmp_path):
    """What the stock MLflow UI does: write mlgov.action / mlgov.field.<name> tags."""
    client, mlflow_client = GovernanceClient(), MlflowClient()
    model = unique("ui")
    initiate(client, model)
    with acting(ROLE_USER[wf.MODEL_APPROVER]):
        mlflow_client.set_registered_model_tag(model, "mlgov.action", "approve")
    tags = mlflow_client.get_registered_model(model).tags
    assert tags["mlgov.stage"] == wf.DATA_ACQUISITION
    assert tags["mlgov.assignee_role"] == wf.MODEL_DATA_ENGINEER
    assert "mlgov.action" not in tags
    with acting(ROLE_USER[wf.MODEL_DATA_ENGINEER]):
        mlflow_client.set_registered_model_tag(model, "mlgov.field.training_data_asset", "file:///d.parquet")
        mlflow_client.set_registered_model_tag(model, "mlgov.field.training_data_quality_flag", "acceptable")
        mlflow_client.set_registered_model_tag(model, "mlgov.action", "submit")
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        with pytest.raises(MlflowException) as exc:
            mlflow_client.set_registered_model_tag(model, "mlgov.action", "reject")
        assert "needs a comment" in exc.value.message
        mlflow_client.set_registered_model_tag(model, "mlgov.action", "reject: the sample is too small")
    assert client.status(model)["stage"] == wf.DATA_ACQUISITION
    row = client.audit(model)[-1]
    assert (row["actor"], row["action"], row["comment"]) == (
        ROLE_USER[wf.MODEL_OWNER],
        "reject",
        "the sample is too small",
    )
    with acting(ROLE_USER[wf.MODEL_MONITOR]), pytest.raises(MlflowException) as exc:
        mlflow_client.set_registered_model_tag(model, "mlgov.action", "submit")
    assert code(exc) == "PERMISSION_DENIED"


def test_production_alias_and_deletions_are_guarded(registry, tmp_path):
    client, mlflow_client = GovernanceClient(), MlflowClient()
    model = unique("alias")
    version = walk_version_to(client, model, wf.PRE_PRODUCTION_REVIEW, tmp_path)
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        for attempt in (
            lambda: mlflow_client.set_registered_model_alias(model, "production", version),
            lambda: mlflow_client.transition_model_version_stage(model, version, "Production"),
            lambda: mlflow_client.delete_registered_model(model),
        ):
            with pytest.raises(MlflowException) as exc:
                attempt()
            assert code(exc) == "PERMISSION_DENIED", exc.value.message
        # Other aliases and the Staging stage are not governance's business.
        mlflow_client.set_registered_model_alias(model, "candidate", version)
        step(client, model, version)  # owner approves: Ready to Use
        assert int(mlflow_client.get_model_version_by_alias(model, "production").version) == version
        with pytest.raises(MlflowException) as exc:
            mlflow_client.delete_model_version(model, version)
        assert "Ready to Use" in exc.value.message
        with pytest.raises(MlflowException) as exc:
            mlflow_client.delete_registered_model_alias(model, "production")
        assert "decommissioning" in exc.value.message
        other = new_version(model, tmp_path)
        with pytest.raises(MlflowException) as exc:
            mlflow_client.set_registered_model_alias(model, "production", other)
        assert "not in the workflow" in exc.value.message
        mlflow_client.set_registered_model_alias(model, "production", version)  # already bound: allowed
    assert int(mlflow_client.get_model_version_by_alias(model, "production").version) == version


def test_usability_and_supersession(registry, tmp_path):
    client = GovernanceClient()
    model = unique("use")
    v1 = walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
    monitor, owner = ROLE_USER[wf.MODEL_MONITOR], ROLE_USER[wf.MODEL_OWNER]
    with acting(monitor):
        s = client.transition(model, "reject", v1, comment="drift: accuracy estimate 0.61")
    assert s["version"]["usability"] == "reject" and s["version"]["stage"] == wf.READY_TO_USE
    with acting(owner), pytest.raises(MlflowException):
        MlflowClient().set_registered_model_alias(model, "production", v1)  # red: not bindable
    with acting(owner), pytest.raises(MlflowException) as exc:
        client.transition(model, "accept", v1)
    assert "comment" in exc.value.message
    with acting(owner):
        assert client.transition(model, "accept", v1, comment="reviewed: seasonal")["version"]["usability"] == "accept"
    # Usability exists only on a Ready to Use version.
    v2 = walk_version_to(client, model, wf.PRE_PRODUCTION_REVIEW, tmp_path, initiate_model=False)
    with acting(monitor), pytest.raises(MlflowException) as exc:
        client.transition(model, "reject", v2, comment="x")
    assert code(exc) == "PERMISSION_DENIED"
    step(client, model, v2)
    s = client.status(model)
    assert s["production_version"] == v2
    stages = {v["version"]: (v["stage"], v["usability"]) for v in s["versions"]}
    assert stages[v1] == (wf.DECOMMISSIONED, None) and stages[v2] == (wf.READY_TO_USE, "accept")
    assert sum(1 for st, _ in stages.values() if st == wf.READY_TO_USE) == 1


def test_decommission_model_retires_versions(registry, tmp_path):
    client = GovernanceClient()
    model = unique("decom")
    version = walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        s = client.transition(model, "decommission", comment="replaced by the 2014 model")
    assert s["stage"] == wf.DECOMMISSIONED and s["production_version"] is None
    assert s["versions"][0]["stage"] == wf.DECOMMISSIONED and s["versions"][0]["usability"] is None
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        client.transition(model, "approve", version)
    assert code(exc) == "RESOURCE_CONFLICT"
    with pytest.raises(MlflowException) as exc:
        client.status(unique("ghost"))
    assert code(exc) == "RESOURCE_DOES_NOT_EXIST"


def test_versions_enter_only_when_approved_for_development(registry, tmp_path):
    client = GovernanceClient()
    model = unique("early")
    walk_model_to(client, model, wf.DATA_ACQUISITION_COMPLETED)
    version = new_version(model, tmp_path)
    with acting(ROLE_USER[wf.MODEL_DEVELOPER]), pytest.raises(MlflowException) as exc:
        client.transition(model, "submit", version, fields_for(wf.APPROVED_FOR_DEVELOPMENT, model, version))
    assert code(exc) == "RESOURCE_CONFLICT" and "versions enter" in exc.value.message
    step(client, model)
    wrong = fields_for(wf.APPROVED_FOR_DEVELOPMENT, model, version) | {"model_asset": f"models:/{model}/99"}
    with acting(ROLE_USER[wf.MODEL_DEVELOPER]), pytest.raises(MlflowException) as exc:
        client.transition(model, "submit", version, wrong)
    assert "model_asset must name this version" in exc.value.message
    with acting(ROLE_USER[wf.MODEL_DEVELOPER]), pytest.raises(MlflowException) as exc:
        client.transition(model, "submit", None, fields_for(wf.APPROVED_FOR_DEVELOPMENT, model, version))
    assert "give the version number" in exc.value.message


def test_roles_are_admin_only_and_audited(registry):
    client = GovernanceClient()
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        client.grant("mallory", wf.MODEL_OWNER)
    assert code(exc) == "PERMISSION_DENIED" and "only the admin" in exc.value.message
    with acting("admin"):
        with pytest.raises(MlflowException) as exc:
            client.grant("mallory", "Overlord")
        assert code(exc) == "INVALID_PARAMETER_VALUE"
        assert client.grant("mallory", wf.MODEL_MONITOR) is True
        assert client.grant("mallory", wf.MODEL_MONITOR) is False
        assert ("mallory", wf.MODEL_MONITOR) in {(r["username"], r["role"]) for r in client.roles()}
        assert client.revoke("mallory", wf.MODEL_MONITOR) is True
    rows = [r for r in client.audit() if r["fields"].get("user") == "mallory"]
    assert [(r["actor"], r["action"], r["outcome"]) for r in rows] == [
        (ROLE_USER[wf.MODEL_OWNER], "grant_role", "refused"),
        ("admin", "grant_role", "refused"),
        ("admin", "grant_role", "allowed"),
        ("admin", "grant_role", "unchanged"),
        ("admin", "revoke_role", "allowed"),
    ]


def _audit_engine(registry_uri: str) -> sa.engine.Engine:
    return sa.create_engine(registry_uri.removeprefix("governed-"))


@pytest.mark.parametrize("tamper", ["edit", "delete_middle", "delete_tail", "reorder"])
def test_audit_verify_detects_tampering(tamper, sqlite_registry, tmp_path):
    client = GovernanceClient()
    model = unique("audit")
    walk_model_to(client, model, wf.APPROVED_FOR_DEVELOPMENT)
    assert client.verify_audit()["ok"]
    n = client.verify_audit()["rows"]
    eng = _audit_engine(sqlite_registry)
    with eng.begin() as conn:
        if tamper == "edit":
            conn.execute(sa.text("UPDATE mlgov_audit SET actor = 'mallory' WHERE seq = 9"))
        elif tamper == "delete_middle":
            conn.execute(sa.text("DELETE FROM mlgov_audit WHERE seq = 9"))
        elif tamper == "delete_tail":
            conn.execute(sa.text(f"DELETE FROM mlgov_audit WHERE seq = {n}"))
        else:
            conn.execute(sa.text("UPDATE mlgov_audit SET seq = -1 WHERE seq = 9"))
            conn.execute(sa.text("UPDATE mlgov_audit SET seq = 9 WHERE seq = 10"))
            conn.execute(sa.text("UPDATE mlgov_audit SET seq = 10 WHERE seq = -1"))
    eng.dispose()
    verdict = client.verify_audit()
    assert not verdict["ok"]
    expected = {"edit": (9, "edited"), "delete_middle": (10, "deleted"), "delete_tail": (n, "deleted"),
                "reorder": (9, "out of order")}[tamper]
    assert verdict["bad_seq"] == expected[0], verdict
    assert expected[1] in verdict["problem"]


def test_audit_tampering_detected_on_postgresql(pg_registry):
    client = GovernanceClient()
    model = unique("pgaudit")
    walk_model_to(client, model, wf.DATA_ACQUISITION)
    rows = client.audit(model)
    target = rows[-1]["seq"]
    assert client.verify_audit()["ok"]
    eng = _audit_engine(pg_registry)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text("UPDATE mlgov_audit SET comment = 'nothing to see' WHERE seq = :s"), {"s": target})
        verdict = client.verify_audit()
        assert not verdict["ok"] and verdict["bad_seq"] == target and "edited" in verdict["problem"]
    finally:
        with eng.begin() as conn:  # restore, so later tests on the shared database see a sound chain
            conn.execute(sa.text("UPDATE mlgov_audit SET comment = NULL WHERE seq = :s"), {"s": target})
        eng.dispose()
    assert client.verify_audit()["ok"]


def test_workflow_versions_are_not_deleted_and_deleted_ones_do_not_break_the_model(registry, tmp_path):
    client, mlflow_client = GovernanceClient(), MlflowClient()
    model = unique("del")
    v1 = walk_version_to(client, model, wf.MODEL_DEVELOPMENT_COMPLETED, tmp_path)
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        mlflow_client.delete_model_version(model, v1)
    assert code(exc) == "PERMISSION_DENIED" and "decommissions it first" in exc.value.message
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        client.transition(model, "decommission", v1, comment="superseded before validation")
        mlflow_client.delete_model_version(model, v1)  # terminal: may go, and the deletion is audited
    assert client.status(model)["versions"] == []
    assert client.audit(model)[-1]["action"] == "delete_version"
    v2 = new_version(model, tmp_path)
    step(client, model, v2)
    assert client.status(model, v2)["version"]["stage"] == wf.MODEL_DEVELOPMENT_COMPLETED
    assert [t["version"] for t in client.tasks(wf.MODEL_OWNER) if t["model"] == model] == [v2]


def test_racing_initiates_govern_once(registry):
    from concurrent.futures import ThreadPoolExecutor

    client = GovernanceClient()
    model = unique("twice")

    def go(_):
        try:
            return client.initiate(model, "race")
        except MlflowException as exc:
            return exc

    with acting(ROLE_USER[wf.MODEL_OWNER]), ThreadPoolExecutor(2) as pool:
        results = list(pool.map(go, range(2)))
    ids = [r for r in results if isinstance(r, str)]
    errors = [r for r in results if isinstance(r, MlflowException)]
    assert len(ids) == 1 and len(errors) == 1, results
    assert "already governed" in errors[0].message
    assert client.status(model)["inventory_id"] == ids[0]


def test_separation_of_duties_covers_field_filling(registry, tmp_path):
    client = GovernanceClient()
    model = unique("sodfill")
    dev = ROLE_USER[wf.MODEL_DEVELOPER]
    version = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
    with acting("admin"):
        client.grant(dev, wf.MODEL_VALIDATOR)
    try:
        with acting(dev), pytest.raises(MlflowException) as exc:
            client.set_field(model, "validation_report", "looks great to me", version)
        assert code(exc) == "PERMISSION_DENIED" and "may not fill 'validation_report'" in exc.value.message
        assert "validation_report" not in client.status(model, version)["version"]["fields"]
    finally:
        with acting("admin"):
            client.revoke(dev, wf.MODEL_VALIDATOR)


def test_initiate_refuses_a_model_already_in_production(registry, tmp_path):
    client, mlflow_client = GovernanceClient(), MlflowClient()
    model = unique("prod")
    mlflow_client.create_registered_model(model)
    version = new_version(model, tmp_path)
    mlflow_client.set_registered_model_alias(model, "production", version)
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        client.initiate(model, use_case="x")
    assert code(exc) == "RESOURCE_CONFLICT" and "already has the 'production' alias" in exc.value.message
    assert "mlgov.stage" not in mlflow_client.get_registered_model(model).tags


def test_bad_values_keys_and_copies_are_refused_cleanly(registry, tmp_path):
    client, mlflow_client = GovernanceClient(), MlflowClient()
    model = unique("bad")
    version = walk_version_to(client, model, wf.MODEL_DEVELOPMENT_COMPLETED, tmp_path)
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        for key in ("MLGOV.stage", " mlgov.stage", "Mlgov.usability"):
            with pytest.raises(MlflowException) as exc:
                mlflow_client.set_registered_model_tag(model, key, wf.READY_TO_USE)
            assert code(exc) == "PERMISSION_DENIED" and "reserved" in exc.value.message
        with pytest.raises(MlflowException) as exc:
            mlflow_client.set_model_version_tag(model, "abc", "mlgov.action", "approve")
        assert code(exc) == "INVALID_PARAMETER_VALUE"
        with pytest.raises(MlflowException) as exc:
            mlflow_client.set_registered_model_alias(model, "production", "abc")
        assert code(exc) == "INVALID_PARAMETER_VALUE"
        target = unique("copy")
        with pytest.raises(MlflowException) as exc:
            mlflow_client.copy_model_version(f"models:/{model}/{version}", target)
        assert code(exc) == "PERMISSION_DENIED"
        with pytest.raises(MlflowException) as exc:
            mlflow_client.get_registered_model(target)
        assert code(exc) == "RESOURCE_DOES_NOT_EXIST"
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        client.transition(model, "approve", version)
    with acting(ROLE_USER[wf.MODEL_VALIDATOR]), pytest.raises(MlflowException) as exc:
        client.set_field(model, "validation_report", "x" * 5001, version)
    assert code(exc) == "INVALID_PARAMETER_VALUE" and "limit is 5000" in exc.value.message


def test_rewritten_chain_is_caught_by_an_anchor_or_a_key(sqlite_registry, monkeypatch):
    """Someone with database access recomputes every hash: an external anchor or an HMAC key catches it."""
    from mlflow_governance.core import audit as audit_mod

    client = GovernanceClient()
    model = unique("anchor")
    walk_model_to(client, model, wf.DATA_ACQUISITION)
    anchor = client.audit_head()

    def rewrite() -> None:
        eng = _audit_engine(sqlite_registry)
        with eng.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM mlgov_audit ORDER BY seq"))]
            prev = audit_mod.GENESIS
            for r in rows:
                if r["actor"] == ROLE_USER[wf.MODEL_APPROVER]:
                    r["actor"] = "mallory"
                r["prev_hash"] = prev
                r["hash"] = audit_mod.row_hash(r, prev)  # computed without any key
                conn.execute(sa.text("UPDATE mlgov_audit SET actor=:actor, prev_hash=:prev_hash, hash=:hash "
                                     "WHERE seq=:seq"), r)
                prev = r["hash"]
            conn.execute(sa.text("UPDATE mlgov_audit_head SET hash=:h"), {"h": prev})
        eng.dispose()

    rewrite()
    verdict = client.verify_audit()
    assert verdict["problem"] is None  # a keyless chain can be recomputed by a database writer...
    # ...though the rewritten actor no longer explains the registry's mlgov.updated_by tag,
    assert not verdict["ok"] and any(
        "mlgov.updated_by is 'adam'" in d["text"] and "'mallory'" in d["text"] for d in verdict["discrepancies"]
    ), verdict
    verdict = client.verify_audit(anchor)  # ...and the chain does not pass a head recorded elsewhere
    assert not verdict["ok"] and verdict["bad_seq"] == anchor[0] and "rewritten" in verdict["problem"]
    # With a key, the recomputed (keyless) hashes do not verify at all.
    monkeypatch.setenv("MLGOV_AUDIT_KEY", "k-" + "x" * 30)
    assert not client.verify_audit()["ok"]
    r = run_cli("audit", "verify", "--expect-head", f"{anchor[0]}:{anchor[1]}")
    assert r.exit_code == 1


def run_cli(*args: str):
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_audit_key_signs_new_rows(fresh_sqlite, monkeypatch):
    monkeypatch.setenv("MLGOV_AUDIT_KEY", "a-secret-key-kept-elsewhere")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh_sqlite}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"governed-sqlite:///{fresh_sqlite}")
    client = GovernanceClient()
    with acting("admin"):
        client.grant("olivia", wf.MODEL_OWNER)
    initiate(client, "keyed")
    assert client.verify_audit()["ok"]
    head = run_cli("audit", "head").output.strip()
    assert run_cli("audit", "verify", "--expect-head", head).exit_code == 0
    assert run_cli("audit", "verify", "--expect-head", "nonsense").exit_code == 2
    monkeypatch.setenv("MLGOV_AUDIT_KEY", "another-key")
    verdict = client.verify_audit()
    assert not verdict["ok"] and verdict["bad_seq"] == 1
