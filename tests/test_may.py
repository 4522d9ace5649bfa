"""`may` and the real action agree, the effects registry covers the table, the inbox uses `may`."""

from __future__ import annotations

import dataclasses

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import effects
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.errors import ERROR_CODES
from tests.conftest import ROLE_USER, USERS, acting, unique
from tests.governance_helpers import PATH, fields_for, initiate, new_version, step, walk_model_to


def test_every_effect_named_in_the_table_exists():
    named = {e for row in wf.TRANSITIONS for e in row.effects}
    assert named and named <= effects.EFFECTS.keys()
    effects.check_table()
    bad = (dataclasses.replace(wf.TRANSITIONS[0], effects=("promtoe",)),)
    with pytest.raises(ValueError, match="promtoe"):
        effects.check_table(bad)


# Every stage an entity can be in, with how to get a fresh one there.
STAGES = [(row.source, row.scope) for row in PATH] + [(wf.READY_TO_USE, wf.VERSION_SCOPE)]


def _fresh(client: GovernanceClient, stage: str, scope: str, tmp_path) -> tuple[str, int | None]:
    model = unique("may")
    if scope == wf.MODEL_SCOPE:
        initiate(client, model)
        while client.status(model)["stage"] != stage:
            step(client, model)
        return model, None
    walk_model_to(client, model, wf.APPROVED_FOR_DEVELOPMENT)
    version = new_version(model, tmp_path)
    while client.status(model, version)["version"]["stage"] != stage:
        step(client, model, version)
    return model, version


def test_may_and_the_action_agree_for_every_role_action_and_stage(sqlite_registry, tmp_path):
    """For each stage, each role's user and each action: may's answer is what the action does."""
    client = GovernanceClient()
    agreed = 0
    for stage, scope in STAGES:
        model, version = _fresh(client, stage, scope, tmp_path)
        fields = fields_for(stage, model, version)
        allowed = []
        for user in USERS:
            for action in wf.ACTIONS:
                given = fields if any(r.action == action and r.fields for r in wf.actions_from(stage, scope)) else {}
                with acting(user):
                    decision = client.may(model, action, version, inputs=True, fields=given, comment="because")
                if decision["allowed"]:
                    allowed.append((user, action, given))
                    continue
                before = client.status(model, version)
                with acting(user), pytest.raises(MlflowException) as exc:
                    client.transition(model, action, version, given, comment="because")
                assert exc.value.error_code == ErrorCode.Name(ERROR_CODES[decision["kind"]]), (stage, user, action)
                assert exc.value.message == "Governance: " + decision["message"]
                assert client.status(model, version) == before
                agreed += 1
        assert allowed, f"nobody may act in {stage}"
        for user, action, given in allowed:
            model, version = _fresh(client, stage, scope, tmp_path)
            given = fields_for(stage, model, version) if given else {}
            with acting(user):
                after = client.transition(model, action, version, given, comment="because")
            entity = after["version"] if version is not None else after
            assert entity["stage"] == wf.find_transition(stage, action, scope).dest
            agreed += 1
    assert agreed >= len(STAGES) * len(USERS) * len(wf.ACTIONS)


def test_may_for_a_new_version_is_what_training_asks(sqlite_registry):
    client = GovernanceClient()
    model = unique("may-new")
    initiate(client, model)
    with acting(ROLE_USER[wf.MODEL_DEVELOPER]):
        early = client.may(model, wf.SUBMIT, new_version=True)
    assert not early["allowed"] and early["kind"] == "conflict"
    assert f"model {model!r} is in stage 'Candidacy Review'" in early["message"]
    while client.status(model)["stage"] != wf.APPROVED_FOR_DEVELOPMENT:
        step(client, model)
    with acting(ROLE_USER[wf.MODEL_DEVELOPER]):
        assert client.may(model, wf.SUBMIT, new_version=True)["allowed"]
    with acting(ROLE_USER[wf.MODEL_VALIDATOR]):
        refused = client.may(model, wf.SUBMIT, new_version=True)
    assert refused["kind"] == "permission" and "ModelDeveloper role is required" in refused["message"]


def test_inbox_lists_only_what_the_user_may_do(sqlite_registry, tmp_path, monkeypatch):
    """A validator who developed a version does not get it in their inbox; another validator does."""
    client = GovernanceClient()
    model = unique("inbox")
    walk_model_to(client, model, wf.APPROVED_FOR_DEVELOPMENT)
    version = new_version(model, tmp_path)
    with acting("admin"):
        client.grant("val-dev", wf.MODEL_DEVELOPER)
        client.grant("val-dev", wf.MODEL_VALIDATOR)
    with acting("val-dev"):
        client.transition(model, wf.SUBMIT, version, fields_for(wf.APPROVED_FOR_DEVELOPMENT, model, version))
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        client.transition(model, wf.APPROVE, version)
    with acting("val-dev"):
        mine = [t for t in client.tasks() if t["model"] == model]
    assert mine == []
    with acting(ROLE_USER[wf.MODEL_VALIDATOR]):
        theirs = [t for t in client.tasks() if t["model"] == model]
    assert [(t["version"], t["actions"]) for t in theirs] == [(version, [wf.SUBMIT])]
    # The role's queue itself still shows it (what waits for ModelValidator).
    with acting("val-dev"):
        queue = [t for t in client.tasks(wf.MODEL_VALIDATOR) if t["model"] == model]
    assert [t["version"] for t in queue] == [version]


def test_monitor_configuration_follows_its_rules_in_every_version_stage(sqlite_registry, tmp_path):
    """Who may set a version's monitors, in each version stage, is `MONITOR_CONFIG_RULES`; the
    developer never sets the rules that validate their own version."""
    client = GovernanceClient()
    config = {"estimated_accuracy": {"max_drop": 0.04}}
    with acting("admin"):
        client.grant("devi", wf.MODEL_VALIDATOR)
    expected_pairs = {(role, stage) for role, stages, _ in wf.MONITOR_CONFIG_RULES for stage in stages}
    seen = set()
    for stage, scope in STAGES:
        if scope != wf.VERSION_SCOPE:
            continue
        model, version = _fresh(client, stage, scope, tmp_path)
        for user, role in USERS.items():
            with acting(user):
                try:
                    client.set_monitors(model, version, config)
                    ok = True
                except MlflowException as exc:
                    assert exc.error_code in ("PERMISSION_DENIED", "RESOURCE_CONFLICT"), exc.message
                    ok = False
            if user == "devi":  # the developer, even holding ModelValidator
                assert not ok, (stage, user)
                continue
            assert ok == ((role, stage) in expected_pairs), (stage, user)
            if ok:
                seen.add((role, stage))
    assert seen == expected_pairs
