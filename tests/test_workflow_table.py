"""The lifecycle table and its side-effect-free check, without any database."""

from __future__ import annotations

import itertools

import pytest

from mlflow_governance.core import workflow as wf


def attempt(row: wf.Transition, role: str, **kw) -> wf.Attempt:
    fields = {name: "yes" if name == "moved_to_production" else "x" for name in row.fields}
    fields.update(
        {
            "training_data_quality_flag": "acceptable",
            "model_quality": "roc_auc=0.8",
            "moved_to_production": "yes",
            "model_asset": "models:/m/1",
            "validation_verdict": "pass",
        }
    )
    base = dict(
        model="m",
        version=1 if row.scope == wf.VERSION_SCOPE else None,
        action=row.action,
        scope=row.scope,
        stage=row.source,
        actor="someone",
        actor_roles=frozenset({role}),
        fields=fields,
        comment="because",
    )
    base.update(kw)
    return wf.Attempt(**base)


def test_every_stage_reaches_ready_to_use_by_approvals_and_submissions():
    """The happy path is connected: Candidacy Review leads to Ready to Use."""
    stage, seen = wf.CANDIDACY_REVIEW, []
    while stage != wf.READY_TO_USE:
        rows = [t for t in wf.TRANSITIONS if t.source == stage and t.action in (wf.APPROVE, wf.SUBMIT)]
        assert len(rows) >= 1, f"dead end at {stage}"
        # At the model/version boundary the version row continues the path.
        row = rows[-1]
        seen.append((row.role, row.action))
        stage = row.dest
    roles = {r for r, _ in seen}
    assert roles == set(wf.GOVERNANCE_ROLES)


@pytest.mark.parametrize(
    ("row", "role"),
    list(itertools.product(wf.TRANSITIONS, wf.ALL_ROLES)),
    ids=lambda v: v if isinstance(v, str) else f"{v.source}:{v.action}:{v.scope}",
)
def test_each_role_against_each_transition(row: wf.Transition, role: str):
    """Exactly the row's role passes the check; every other role is refused for permission."""
    row_found, refusal = wf.may(attempt(row, role))
    assert row_found == row
    if role == row.role:
        assert refusal is None, refusal
    else:
        assert refusal is not None and refusal.kind == "permission"
        assert row.role in refusal.message


def test_unknown_action_and_terminal_stage_are_conflicts():
    row = wf.TRANSITIONS[0]
    _, refusal = wf.may(attempt(row, row.role, action=wf.SUBMIT))
    assert refusal.kind == "conflict" and "possible actions: approve, decommission, reject" in refusal.message
    _, refusal = wf.may(attempt(row, row.role, stage=wf.DECOMMISSIONED))
    assert refusal.kind == "conflict" and "terminal" in refusal.message


def test_missing_and_invalid_fields_are_refused():
    row = wf.find_transition(wf.DATA_ACQUISITION, wf.SUBMIT, wf.MODEL_SCOPE)
    _, refusal = wf.may(attempt(row, row.role, fields={}))
    assert refusal.kind == "invalid"
    assert "training_data_asset" in refusal.message and "training_data_quality_flag" in refusal.message
    _, refusal = wf.may(
        attempt(row, row.role, fields={"training_data_asset": "x"}, new_fields={"training_data_quality_flag": "meh"})
    )
    assert refusal.kind == "invalid" and "must be one of" in refusal.message
    _, refusal = wf.may(attempt(row, row.role, new_fields={"endpoint": "http://x"}))
    assert refusal.kind == "invalid" and "does not belong" in refusal.message


def test_guards_and_comments():
    row = wf.find_transition(wf.DATA_ACQUISITION_COMPLETED, wf.APPROVE, wf.MODEL_SCOPE)
    _, refusal = wf.may(attempt(row, row.role, fields={"training_data_quality_flag": "not acceptable"}))
    assert refusal.kind == "invalid" and "acceptable" in refusal.message
    row = wf.find_transition(wf.MODEL_DEPLOYMENT_COMPLETED, wf.APPROVE, wf.VERSION_SCOPE)
    _, refusal = wf.may(attempt(row, row.role, fields={"moved_to_production": "no"}))
    assert refusal.kind == "invalid" and "moved_to_production" in refusal.message
    row = wf.find_transition(wf.MODEL_VALIDATION_COMPLETED, wf.REJECT, wf.VERSION_SCOPE)
    _, refusal = wf.may(attempt(row, row.role, comment="  "))
    assert refusal.kind == "invalid" and "comment" in refusal.message


def test_separation_of_duties_is_configurable():
    validate = wf.find_transition(wf.APPROVED_FOR_VALIDATION, wf.SUBMIT, wf.VERSION_SCOPE)
    _, refusal = wf.may(attempt(validate, validate.role, actor="dev", developer="dev"))
    assert refusal.kind == "permission" and "separation of duties" in refusal.message
    _, refusal = wf.may(
        attempt(validate, validate.role, actor="dev", developer="dev", separation_of_duties=False)
    )
    assert refusal is None
    approve = wf.find_transition(wf.CANDIDACY_REVIEW, wf.APPROVE, wf.MODEL_SCOPE)
    _, refusal = wf.may(attempt(approve, approve.role, actor="o", entered_by="o"))
    assert refusal.kind == "permission" and "performed the step" in refusal.message
    # A submitter is not an approver: the data engineer may follow their own owner's approval.
    submit = wf.find_transition(wf.DATA_ACQUISITION, wf.SUBMIT, wf.MODEL_SCOPE)
    assert wf.may(attempt(submit, submit.role, actor="o", entered_by="o"))[1] is None


def test_every_owner_approval_has_a_send_back_with_comment():
    for row in wf.TRANSITIONS:
        if row.role == wf.MODEL_OWNER and row.action == wf.APPROVE:
            back = wf.find_transition(row.source, wf.REJECT, row.scope)
            assert back is not None and back.needs_comment, row
            assert wf.STAGES.index(back.dest) < wf.STAGES.index(row.source)


def test_assignee_roles_and_stage_fields():
    assert wf.ASSIGNEE_ROLE[wf.CANDIDACY_REVIEW] == wf.MODEL_APPROVER
    assert wf.ASSIGNEE_ROLE[wf.APPROVED_FOR_VALIDATION] == wf.MODEL_VALIDATOR
    assert wf.DECOMMISSIONED not in wf.ASSIGNEE_ROLE
    assert wf.stage_fields(wf.APPROVED_FOR_DEPLOYMENT, wf.VERSION_SCOPE) == (
        "endpoint",
        "deployment_space",
        "deployment_platform",
    )
