"""The governed model lifecycle as data: roles, stages, fields and the transition table.

Everything that decides whether a move is allowed reads these tables; nothing here does I/O.
`check_transition` is the single side-effect-free check used by the store, the CLI, the
server and the approvals page alike (in the spirit of `transitions`' ``may_<trigger>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# --- roles -----------------------------------------------------------------------------------

MODEL_OWNER = "ModelOwner"
MODEL_APPROVER = "ModelApprover"
MODEL_DATA_ENGINEER = "ModelDataEngineer"
MODEL_DEVELOPER = "ModelDeveloper"
MODEL_VALIDATOR = "ModelValidator"
MODEL_DEPLOYER = "ModelDeployer"
MODEL_MONITOR = "ModelMonitor"
ADMIN = "admin"

GOVERNANCE_ROLES: tuple[str, ...] = (
    MODEL_OWNER,
    MODEL_APPROVER,
    MODEL_DATA_ENGINEER,
    MODEL_DEVELOPER,
    MODEL_VALIDATOR,
    MODEL_DEPLOYER,
    MODEL_MONITOR,
)
ALL_ROLES: tuple[str, ...] = (*GOVERNANCE_ROLES, ADMIN)

# --- stages ----------------------------------------------------------------------------------

CANDIDACY_REVIEW = "Candidacy Review"
CANDIDACY_REJECTED = "Candidacy Rejected"
DATA_ACQUISITION = "Data Acquisition"
DATA_ACQUISITION_COMPLETED = "Data Acquisition Completed"
APPROVED_FOR_DEVELOPMENT = "Approved for Development"
MODEL_DEVELOPMENT_COMPLETED = "Model Development Completed"
APPROVED_FOR_VALIDATION = "Approved for Validation"
MODEL_VALIDATION_COMPLETED = "Model Validation Completed"
APPROVED_FOR_DEPLOYMENT = "Approved for Deployment"
MODEL_DEPLOYMENT_COMPLETED = "Model Deployment Completed"
APPROVED_FOR_PRODUCTIONIZATION = "Approved for Productionization"
PRE_PRODUCTION_REVIEW = "Pre Production Review"
READY_TO_USE = "Ready to Use"
DECOMMISSIONED = "Decommissioned"

STAGES: tuple[str, ...] = (
    CANDIDACY_REVIEW,
    CANDIDACY_REJECTED,
    DATA_ACQUISITION,
    DATA_ACQUISITION_COMPLETED,
    APPROVED_FOR_DEVELOPMENT,
    MODEL_DEVELOPMENT_COMPLETED,
    APPROVED_FOR_VALIDATION,
    MODEL_VALIDATION_COMPLETED,
    APPROVED_FOR_DEPLOYMENT,
    MODEL_DEPLOYMENT_COMPLETED,
    APPROVED_FOR_PRODUCTIONIZATION,
    PRE_PRODUCTION_REVIEW,
    READY_TO_USE,
    DECOMMISSIONED,
)
TERMINAL_STAGES = frozenset({CANDIDACY_REJECTED, DECOMMISSIONED})

# Stages whose state lives on the registered model; from development on it lives on a version.
MODEL_SCOPE = "model"
VERSION_SCOPE = "version"
MODEL_STAGES = frozenset(
    {
        CANDIDACY_REVIEW,
        CANDIDACY_REJECTED,
        DATA_ACQUISITION,
        DATA_ACQUISITION_COMPLETED,
        APPROVED_FOR_DEVELOPMENT,
    }
)
# A version that has not entered the workflow yet inherits this model stage as its own.
VERSION_ENTRY_STAGE = APPROVED_FOR_DEVELOPMENT

# --- actions ---------------------------------------------------------------------------------

INITIATE = "initiate"
APPROVE = "approve"
REJECT = "reject"
SUBMIT = "submit"
ACCEPT = "accept"
DECOMMISSION = "decommission"
SET_FIELD = "set_field"
ACTIONS: tuple[str, ...] = (APPROVE, REJECT, SUBMIT, ACCEPT, DECOMMISSION)

USABILITY_ACCEPT = "accept"
USABILITY_REJECT = "reject"
RISK_TIERS = ("high", "medium", "low")

# --- fields ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """A governance field: what it means and how a value is checked (None when valid)."""

    name: str
    description: str
    check: Callable[[str], str | None] | None = None


def _one_of(*allowed: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value.strip().lower() not in allowed:
            return f"must be one of {', '.join(repr(a) for a in allowed)}"
        return None

    return check


def _metric(value: str) -> str | None:
    m = re.fullmatch(r"\s*([A-Za-z_][\w.\-]*)\s*[=:]\s*(-?\d+(\.\d+)?([eE]-?\d+)?)\s*", value)
    return None if m else "must look like 'metric=value', for example 'roc_auc=0.81'"


def _not_blank(value: str) -> str | None:
    return "must not be empty" if not value.strip() else None


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("use_case", "What the model is for", _not_blank),
        FieldSpec("business_owner", "Accountable business owner", _not_blank),
        FieldSpec("risk_tier", "Model risk tier", _one_of(*RISK_TIERS)),
        FieldSpec("training_data_asset", "Catalogued training data set (URI)", _not_blank),
        FieldSpec(
            "training_data_quality_flag",
            "Verdict of the data profile",
            _one_of("acceptable", "not acceptable"),
        ),
        FieldSpec("model_asset", "The registered model version (models:/NAME/N)", _not_blank),
        FieldSpec("development_system", "Where the model was built", _not_blank),
        FieldSpec("training_data_statistics", "Training data statistics artifact", _not_blank),
        FieldSpec("drift_detection_model", "Drift detection model URI", _not_blank),
        FieldSpec("model_quality", "Headline quality metric", _metric),
        FieldSpec("experiment_file", "Leaderboard of the model search", _not_blank),
        FieldSpec("validation_report", "Independent validation report", _not_blank),
        FieldSpec("validation_dataset", "Data set the validator used", _not_blank),
        FieldSpec("endpoint", "Scoring endpoint URL", _not_blank),
        FieldSpec("deployment_space", "Deployment space or environment", _not_blank),
        FieldSpec("deployment_platform", "Serving platform", _not_blank),
        FieldSpec("moved_to_production", "Owner confirms the move to production", _one_of("yes", "no")),
        FieldSpec("wrapper_endpoint", "Governed wrapper endpoint URL", _not_blank),
        FieldSpec("wrapper_name", "Name of the governed wrapper", _not_blank),
        FieldSpec("monitoring_url", "Where the monitors report", _not_blank),
    )
}
INVENTORY_FIELDS = ("use_case", "business_owner", "risk_tier")


# MLflow's limit on a registered model tag value; fields are stored as tags.
MAX_FIELD_LENGTH = 5000


def check_field_value(name: str, value: str) -> str | None:
    """Return why ``value`` is not acceptable for field ``name``, or None."""
    spec = FIELDS.get(name)
    if spec is None:
        return f"unknown field {name!r}; known fields: {', '.join(sorted(FIELDS))}"
    if len(value) > MAX_FIELD_LENGTH:
        return f"field {name!r} is {len(value)} characters long; the limit is {MAX_FIELD_LENGTH}"
    if spec.check is None:
        return None
    problem = spec.check(value)
    return f"field {name!r} {problem}" if problem else None


# --- guards ----------------------------------------------------------------------------------
# A guard sees the merged fields of the entity (after the action's own --set values) and returns
# why the move is not allowed, or None.

Guard = Callable[[Mapping[str, str]], str | None]


def _data_quality_acceptable(fields: Mapping[str, str]) -> str | None:
    flag = fields.get("training_data_quality_flag", "").strip().lower()
    if flag != "acceptable":
        return (
            "training_data_quality_flag is "
            f"{flag or 'unset'!r}: the data must be acceptable before development is approved"
        )
    return None


def _moved_to_production(fields: Mapping[str, str]) -> str | None:
    if fields.get("moved_to_production", "").strip().lower() != "yes":
        return "moved_to_production must be 'yes' to approve productionization"
    return None


GUARDS: dict[str, Guard] = {
    "data_quality_acceptable": _data_quality_acceptable,
    "moved_to_production": _moved_to_production,
}

# --- the transition table --------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One row of the lifecycle: ``role`` may apply ``action`` in ``source`` to reach ``dest``.

    ``effects`` name what else happens (see `mlflow_governance.engine`): ``promote`` binds the
    production alias and sets usability, ``usability_reject`` / ``usability_accept`` change the
    usability status, ``retire`` drops the production alias.
    """

    source: str
    action: str
    dest: str
    role: str
    scope: str
    fields: tuple[str, ...] = ()
    needs_comment: bool = False
    guards: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    # Separation of duties: the actor may not be the version's developer (``not_by_developer``),
    # nor the performer of the step that brought the entity into ``source`` (``approval``).
    not_by_developer: bool = False
    approval: bool = False


def _owner_gate(source: str, dest: str, back_to: str, scope: str, **extra) -> tuple[Transition, ...]:
    """An owner approval and its send-back with a mandatory comment."""
    return (
        Transition(source, APPROVE, dest, MODEL_OWNER, scope, not_by_developer=True, approval=True, **extra),
        Transition(
            source, REJECT, back_to, MODEL_OWNER, scope, needs_comment=True, not_by_developer=True, approval=True
        ),
    )


M, V = MODEL_SCOPE, VERSION_SCOPE
TRANSITIONS: tuple[Transition, ...] = (
    Transition(CANDIDACY_REVIEW, APPROVE, DATA_ACQUISITION, MODEL_APPROVER, M, approval=True),
    Transition(CANDIDACY_REVIEW, REJECT, CANDIDACY_REJECTED, MODEL_APPROVER, M, needs_comment=True, approval=True),
    Transition(
        DATA_ACQUISITION,
        SUBMIT,
        DATA_ACQUISITION_COMPLETED,
        MODEL_DATA_ENGINEER,
        M,
        fields=("training_data_asset", "training_data_quality_flag"),
    ),
    *_owner_gate(
        DATA_ACQUISITION_COMPLETED,
        APPROVED_FOR_DEVELOPMENT,
        DATA_ACQUISITION,
        M,
        guards=("data_quality_acceptable",),
    ),
    Transition(
        APPROVED_FOR_DEVELOPMENT,
        SUBMIT,
        MODEL_DEVELOPMENT_COMPLETED,
        MODEL_DEVELOPER,
        V,
        fields=(
            "model_asset",
            "development_system",
            "training_data_statistics",
            "drift_detection_model",
            "model_quality",
            "experiment_file",
        ),
    ),
    *_owner_gate(MODEL_DEVELOPMENT_COMPLETED, APPROVED_FOR_VALIDATION, APPROVED_FOR_DEVELOPMENT, V),
    Transition(
        APPROVED_FOR_VALIDATION,
        SUBMIT,
        MODEL_VALIDATION_COMPLETED,
        MODEL_VALIDATOR,
        V,
        fields=("validation_report", "validation_dataset"),
        not_by_developer=True,
    ),
    *_owner_gate(MODEL_VALIDATION_COMPLETED, APPROVED_FOR_DEPLOYMENT, APPROVED_FOR_VALIDATION, V),
    Transition(
        APPROVED_FOR_DEPLOYMENT,
        SUBMIT,
        MODEL_DEPLOYMENT_COMPLETED,
        MODEL_DEPLOYER,
        V,
        fields=("endpoint", "deployment_space", "deployment_platform"),
    ),
    *_owner_gate(
        MODEL_DEPLOYMENT_COMPLETED,
        APPROVED_FOR_PRODUCTIONIZATION,
        APPROVED_FOR_DEPLOYMENT,
        V,
        fields=("moved_to_production",),
        guards=("moved_to_production",),
    ),
    Transition(
        APPROVED_FOR_PRODUCTIONIZATION,
        SUBMIT,
        PRE_PRODUCTION_REVIEW,
        MODEL_MONITOR,
        V,
        fields=("wrapper_endpoint", "wrapper_name", "monitoring_url"),
    ),
    *_owner_gate(
        PRE_PRODUCTION_REVIEW, READY_TO_USE, APPROVED_FOR_PRODUCTIONIZATION, V, effects=("promote",)
    ),
    # Usability of a production version: monitors turn it red, the owner re-accepts after review.
    Transition(
        READY_TO_USE, REJECT, READY_TO_USE, MODEL_MONITOR, V, needs_comment=True, effects=("usability_reject",)
    ),
    Transition(
        READY_TO_USE, ACCEPT, READY_TO_USE, MODEL_OWNER, V, needs_comment=True, effects=("usability_accept",)
    ),
    # Decommissioning: from any live stage, by the owner.
    *(
        Transition(stage, DECOMMISSION, DECOMMISSIONED, MODEL_OWNER, M, needs_comment=True)
        for stage in STAGES
        if stage in MODEL_STAGES and stage not in TERMINAL_STAGES
    ),
    *(
        Transition(stage, DECOMMISSION, DECOMMISSIONED, MODEL_OWNER, V, needs_comment=True, effects=("retire",))
        for stage in STAGES
        if (stage not in MODEL_STAGES or stage == VERSION_ENTRY_STAGE) and stage not in TERMINAL_STAGES
    ),
)

# Who is expected to act next in each stage (shown as the ``mlgov.assignee_role`` tag).
ASSIGNEE_ROLE: dict[str, str] = {}
for _t in TRANSITIONS:
    if _t.action in (APPROVE, SUBMIT):
        ASSIGNEE_ROLE.setdefault(_t.source, _t.role)
ASSIGNEE_ROLE[READY_TO_USE] = MODEL_MONITOR


def find_transition(source: str, action: str, scope: str) -> Transition | None:
    """The row for ``action`` out of ``source`` at ``scope``, or None."""
    for t in TRANSITIONS:
        if t.source == source and t.action == action and t.scope == scope:
            return t
    return None


def actions_from(source: str, scope: str) -> list[Transition]:
    """Every row out of ``source`` at ``scope``, in table order."""
    return [t for t in TRANSITIONS if t.source == source and t.scope == scope]


def stage_fields(source: str, scope: str) -> tuple[str, ...]:
    """Fields that may be filled while an entity is in ``source`` (those its moves require)."""
    names: list[str] = []
    for t in actions_from(source, scope):
        names.extend(n for n in t.fields if n not in names)
    return tuple(names)


# --- the check -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a move is not allowed; ``kind`` maps onto an MLflow error code."""

    kind: str  # "permission" | "invalid" | "conflict"
    message: str


@dataclass
class Attempt:
    """Everything the check needs to know about one attempted action (no I/O)."""

    action: str
    scope: str
    stage: str | None
    actor: str
    actor_roles: frozenset[str]
    fields: Mapping[str, str] = field(default_factory=dict)
    new_fields: Mapping[str, str] = field(default_factory=dict)
    comment: str | None = None
    developer: str | None = None
    entered_by: str | None = None
    separation_of_duties: bool = True


def check_transition(attempt: Attempt) -> tuple[Transition | None, Refusal | None]:
    """Decide an attempted action. Returns (row, None) when allowed, (row or None, refusal) else."""
    a = attempt
    if a.stage is None:
        return None, Refusal("conflict", "the model is not governed: initiate it first")
    if a.stage in TERMINAL_STAGES:
        return None, Refusal("conflict", f"the {a.scope} is {a.stage!r}, a terminal stage: no action applies")
    row = find_transition(a.stage, a.action, a.scope)
    if row is None:
        possible = sorted({t.action for t in actions_from(a.stage, a.scope)})
        return None, Refusal(
            "conflict",
            f"action {a.action!r} is not possible on a {a.scope} in stage {a.stage!r}"
            + (f"; possible actions: {', '.join(possible)}" if possible else ""),
        )
    if row.role not in a.actor_roles:
        return row, Refusal(
            "permission",
            f"{a.actor!r} may not {a.action} in stage {a.stage!r}: the {row.role} role is required "
            f"(held: {', '.join(sorted(a.actor_roles)) or 'none'})",
        )
    if a.separation_of_duties:
        if row.not_by_developer and a.developer and a.actor == a.developer:
            return row, Refusal(
                "permission",
                f"separation of duties: {a.actor!r} developed this version and may not "
                f"{a.action} it as {row.role}",
            )
        if row.approval and a.entered_by and a.actor == a.entered_by:
            return row, Refusal(
                "permission",
                f"separation of duties: {a.actor!r} performed the step into {a.stage!r} and may "
                f"not {a.action} it",
            )
    for name, value in a.new_fields.items():
        if name not in row.fields:
            allowed = ", ".join(row.fields) or "none"
            return row, Refusal(
                "invalid", f"field {name!r} does not belong to {a.action} in {a.stage!r} (fields: {allowed})"
            )
        problem = check_field_value(name, value)
        if problem:
            return row, Refusal("invalid", problem)
    merged = {**a.fields, **a.new_fields}
    missing = [n for n in row.fields if not str(merged.get(n, "")).strip()]
    if missing:
        return row, Refusal(
            "invalid", f"cannot {a.action} from {a.stage!r}: missing required field(s) {', '.join(missing)}"
        )
    for name in row.fields:
        problem = check_field_value(name, merged[name])
        if problem:
            return row, Refusal("invalid", problem)
    if row.needs_comment and not (a.comment or "").strip():
        return row, Refusal("invalid", f"{a.action} in {a.stage!r} needs a comment saying why")
    for guard in row.guards:
        problem = GUARDS[guard](merged)
        if problem:
            return row, Refusal("invalid", problem)
    return row, None


def check_field_fill(
    stage: str,
    scope: str,
    name: str,
    actor: str,
    developer: str | None,
    entered_by: str | None,
    separation_of_duties: bool = True,
) -> str | None:
    """Why ``actor`` may not fill ``name`` in ``stage`` under separation of duties, or None.

    Filling a field is part of the step that needs it: whoever may not take that step (the
    version's developer for validation and approvals, the performer of the previous step for an
    approval) may not author its fields either.
    """
    if not separation_of_duties:
        return None
    for row in actions_from(stage, scope):
        if name not in row.fields:
            continue
        if row.not_by_developer and developer and actor == developer:
            return f"separation of duties: {actor!r} developed this version and may not fill {name!r}"
        if row.approval and entered_by and actor == entered_by:
            return f"separation of duties: {actor!r} performed the step into {stage!r} and may not fill {name!r}"
    return None


def can_transition(attempt: Attempt) -> bool:
    """True when `check_transition` allows the attempt."""
    return check_transition(attempt)[1] is None
