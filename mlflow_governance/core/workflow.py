"""The governed model lifecycle as data: roles, stages, fields and the transition table.

Longer than the project's other modules on purpose: the table and every decision that reads it
(`may`, `may_fill`, `may_initiate`, the registry's alias and delete rules, administration) stay
in one file, so a reader or an auditor sees all the rules of the lifecycle in one place.

Everything that decides whether a move is allowed reads these tables; nothing here does I/O.
`may` is the single side-effect-free check used by the store, the CLI, the
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
# Where a version may be served for user acceptance testing (`mlgov serve --staging`): from its
# validation to its pre-production review, never before validation nor once it is Ready to Use.
STAGING_STAGES: tuple[str, ...] = STAGES[STAGES.index(APPROVED_FOR_VALIDATION) : STAGES.index(READY_TO_USE)]

# --- actions ---------------------------------------------------------------------------------

INITIATE = "initiate"
APPROVE = "approve"
REJECT = "reject"
SUBMIT = "submit"
ACCEPT = "accept"
DECOMMISSION = "decommission"
SET_FIELD = "set_field"
SET_MONITORS = "set_monitors"
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
        FieldSpec(
            "validation_verdict",
            "The monitors' verdict at validation: pass, or override (a breach the validator overrides, "
            "with a comment naming the figures)",
            _one_of("pass", "override"),
        ),
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
# A guard sees the whole attempt (actor, roles, entity, its fields merged with the action's own
# values, the developer, the performer of the last step) and returns why the move is not
# allowed, or None.


def _data_quality_acceptable(a: Attempt) -> str | None:
    flag = a.merged.get("training_data_quality_flag", "").strip().lower()
    if flag != "acceptable":
        return (
            "training_data_quality_flag is "
            f"{flag or 'unset'!r}: the data must be acceptable before development is approved"
        )
    return None


def _moved_to_production(a: Attempt) -> str | None:
    if a.merged.get("moved_to_production", "").strip().lower() != "yes":
        return "moved_to_production must be 'yes' to approve productionization"
    return None


def _names_this_version(a: Attempt) -> str | None:
    """The developer's submission names the version it submits (``models:/NAME/N`` or ``N``)."""
    asset = a.merged.get("model_asset", "").strip()
    expected = f"models:/{a.model}/{a.version}"
    if asset and asset not in (expected, str(a.version)):
        return f"model_asset must name this version ({expected}), not {asset!r}"
    return None


def _override_explained(a: Attempt) -> str | None:
    """A validation that breached its thresholds is submitted only with the validator's comment."""
    if a.merged.get("validation_verdict", "").strip().lower() == "override" and not (a.comment or "").strip():
        return "validation_verdict 'override' needs a comment saying why the breached figures are accepted"
    return None


GUARDS: dict[str, Callable[[Attempt], str | None]] = {
    "data_quality_acceptable": _data_quality_acceptable,
    "override_explained": _override_explained,
    "moved_to_production": _moved_to_production,
    "names_this_version": _names_this_version,
}

# --- the transition table --------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One row of the lifecycle: ``role`` may apply ``action`` in ``source`` to reach ``dest``.

    ``effects`` name what else happens, each a function of `mlflow_governance.core.effects`:
    ``supersede`` decommissions the previous Ready to Use version, ``promote`` binds the
    production alias and sets usability, ``usability_reject`` / ``usability_accept`` change the
    usability status, ``retire`` drops the production alias, ``retire_versions`` decommissions
    the versions of a decommissioned model. ``assignee`` names the role that waits after the
    move when it is not the destination stage's usual one (`ASSIGNEE_ROLE`).
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
    assignee: str | None = None


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
        guards=("names_this_version",),
    ),
    *_owner_gate(MODEL_DEVELOPMENT_COMPLETED, APPROVED_FOR_VALIDATION, APPROVED_FOR_DEVELOPMENT, V),
    Transition(
        APPROVED_FOR_VALIDATION,
        SUBMIT,
        MODEL_VALIDATION_COMPLETED,
        MODEL_VALIDATOR,
        V,
        fields=("validation_report", "validation_dataset", "validation_verdict"),
        guards=("override_explained",),
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
        PRE_PRODUCTION_REVIEW, READY_TO_USE, APPROVED_FOR_PRODUCTIONIZATION, V, effects=("supersede", "promote")
    ),
    # Usability of a production version: monitors turn it red, and the version waits for the
    # owner's review (re-accept with a comment, or decommission).
    Transition(
        READY_TO_USE,
        REJECT,
        READY_TO_USE,
        MODEL_MONITOR,
        V,
        needs_comment=True,
        effects=("usability_reject",),
        assignee=MODEL_OWNER,
    ),
    Transition(
        READY_TO_USE, ACCEPT, READY_TO_USE, MODEL_OWNER, V, needs_comment=True, effects=("usability_accept",)
    ),
    # Decommissioning: from any live stage, by the owner.
    *(
        Transition(stage, DECOMMISSION, DECOMMISSIONED, MODEL_OWNER, M, needs_comment=True,
                   effects=("retire_versions",))
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


def assignee_after(row: Transition) -> str | None:
    """The role that waits for the entity once ``row`` is applied (None: nobody)."""
    return row.assignee or ASSIGNEE_ROLE.get(row.dest)


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

# Refusal kinds, each an MLflow error code (`mlflow_governance.core.errors.ERROR_CODES`).
PERMISSION = "permission"
INVALID = "invalid"
CONFLICT = "conflict"
UNAUTHENTICATED = "unauthenticated"


@dataclass(frozen=True)
class Refusal:
    """Why a move is not allowed; ``kind`` maps onto an MLflow error code."""

    kind: str  # PERMISSION | INVALID | CONFLICT | UNAUTHENTICATED
    message: str


@dataclass
class Attempt:
    """Everything the check needs to know about one attempted action (no I/O).

    ``stage`` is the entity's stage (a version not yet in the workflow passes the model's
    ``VERSION_ENTRY_STAGE`` and ``entered=False``); ``model_stage`` the registered model's.
    """

    action: str
    scope: str
    stage: str | None
    actor: str | None
    actor_roles: frozenset[str]
    fields: Mapping[str, str] = field(default_factory=dict)
    new_fields: Mapping[str, str] = field(default_factory=dict)
    comment: str | None = None
    developer: str | None = None
    entered_by: str | None = None
    separation_of_duties: bool = True
    model: str | None = None
    version: int | None = None
    governed: bool = True
    model_stage: str | None = None

    @property
    def merged(self) -> dict[str, str]:
        """The entity's fields with the action's own values over them."""
        return {**self.fields, **self.new_fields}


def _separation_of_duties(row: Transition, a: Attempt, doing: str) -> str | None:
    """The separation-of-duties clauses of ``row`` for ``a.actor`` (``doing`` names the act)."""
    if not a.separation_of_duties:
        return None
    if row.not_by_developer and a.developer and a.actor == a.developer:
        return f"separation of duties: {a.actor!r} developed this version and may not {doing}"
    if row.approval and a.entered_by and a.actor == a.entered_by:
        return f"separation of duties: {a.actor!r} performed the step into {a.stage!r} and may not {doing}"
    return None


def _entity_refusal(a: Attempt) -> Refusal | None:
    """Refusals that come before any row: no user, not governed, a dead model, a version not in yet."""
    if not a.actor:
        return Refusal(UNAUTHENTICATED, "no authenticated user")
    if not a.governed or a.stage is None and a.scope == MODEL_SCOPE:
        return Refusal(CONFLICT, f"model {a.model!r} is not governed: initiate it first")
    if a.scope == VERSION_SCOPE and a.model_stage in TERMINAL_STAGES:
        return Refusal(CONFLICT, f"model {a.model!r} is {a.model_stage!r}: its versions take no action")
    if a.scope == VERSION_SCOPE and a.stage is None:
        if a.version is None:  # a version about to be registered (training, import)
            return Refusal(
                CONFLICT,
                f"a new version cannot enter the workflow: model {a.model!r} is in stage {a.model_stage!r}; "
                f"versions enter when it is {VERSION_ENTRY_STAGE!r}",
            )
        return Refusal(
            CONFLICT,
            f"version {a.version} has not entered the workflow: versions enter when the model is "
            f"{VERSION_ENTRY_STAGE!r} (the model is {a.model_stage!r})",
        )
    return None


def may(attempt: Attempt, inputs: bool = True) -> tuple[Transition | None, Refusal | None]:
    """Would ``attempt`` be allowed? (row, None) when it would, (row or None, refusal) when not.

    The one decision of the lifecycle: the engine calls it before every action, and every
    pre-check (training, acquisition, the inbox, the CLI) calls it too, so a pre-check cannot
    disagree with the action. ``inputs=False`` leaves out what the actor still has to supply
    (required fields, comment, guards on field values): "may this user take this step once
    they have given its inputs?".
    """
    a = attempt
    if a.action not in ACTIONS:
        return None, Refusal(INVALID, f"unknown action {a.action!r}; use one of {', '.join(ACTIONS)}")
    refusal = _entity_refusal(a)
    if refusal:
        return None, refusal
    if a.stage in TERMINAL_STAGES:
        return None, Refusal(CONFLICT, f"the {a.scope} is {a.stage!r}, a terminal stage: no action applies")
    row = find_transition(a.stage, a.action, a.scope)
    if row is None:
        possible = sorted({t.action for t in actions_from(a.stage, a.scope)})
        hint = ""
        if a.scope == MODEL_SCOPE and a.stage == VERSION_ENTRY_STAGE:
            hint = "; development steps act on a version: give the version number"
        where = f"model {a.model!r}" if a.scope == MODEL_SCOPE else f"version {a.version} of {a.model!r}"
        return None, Refusal(
            CONFLICT,
            f"{where} is in stage {a.stage!r}: action {a.action!r} is not possible on a {a.scope} there"
            + (f"; possible actions: {', '.join(possible)}" if possible else "")
            + hint,
        )
    if row.role not in a.actor_roles:
        return row, Refusal(
            PERMISSION,
            f"{a.actor!r} may not {a.action} in stage {a.stage!r}: the {row.role} role is required "
            f"(held: {', '.join(sorted(a.actor_roles)) or 'none'})",
        )
    problem = _separation_of_duties(row, a, f"{a.action} it" if row.approval else f"{a.action} it as {row.role}")
    if problem:
        return row, Refusal(PERMISSION, problem)
    for name, value in a.new_fields.items():
        if name not in row.fields:
            allowed = ", ".join(row.fields) or "none"
            return row, Refusal(
                INVALID, f"field {name!r} does not belong to {a.action} in {a.stage!r} (fields: {allowed})"
            )
        problem = check_field_value(name, value)
        if problem:
            return row, Refusal(INVALID, problem)
    if not inputs:
        return row, None
    merged = a.merged
    missing = [n for n in row.fields if not str(merged.get(n, "")).strip()]
    if missing:
        return row, Refusal(
            INVALID, f"cannot {a.action} from {a.stage!r}: missing required field(s) {', '.join(missing)}"
        )
    for name in row.fields:
        problem = check_field_value(name, merged[name])
        if problem:
            return row, Refusal(INVALID, problem)
    if row.needs_comment and not (a.comment or "").strip():
        return row, Refusal(INVALID, f"{a.action} in {a.stage!r} needs a comment saying why")
    for guard in row.guards:
        problem = GUARDS[guard](a)
        if problem:
            return row, Refusal(INVALID, problem)
    return row, None


def may_fill(attempt: Attempt, name: str, value: str) -> tuple[str | None, Refusal | None]:
    """May ``attempt.actor`` fill field ``name`` with ``value`` now? (role, None) or (role, refusal).

    Filling a field is part of the step that needs it: the role of that step fills it, and
    whoever may not take the step (separation of duties) may not author its fields either.
    """
    a = attempt
    refusal = _entity_refusal(a)
    if refusal:
        return None, refusal
    if a.stage in TERMINAL_STAGES:
        return None, Refusal(CONFLICT, f"no field can be filled on a {a.scope} in stage {a.stage!r}")
    problem = check_field_value(name, value)
    if problem:
        return None, Refusal(INVALID, problem)
    rows = [row for row in actions_from(a.stage, a.scope) if name in row.fields]
    if not rows:
        allowed = stage_fields(a.stage, a.scope)
        return None, Refusal(
            INVALID, f"field {name!r} is not filled in stage {a.stage!r} (fields here: {', '.join(allowed) or 'none'})"
        )
    role = rows[0].role
    if role not in a.actor_roles:
        return role, Refusal(
            PERMISSION, f"{a.actor!r} may not fill {name!r} in stage {a.stage!r}: the {role} role is required"
        )
    for row in rows:
        problem = _separation_of_duties(row, a, f"fill {name!r}")
        if problem:
            return role, Refusal(PERMISSION, problem)
    return role, None


def may_initiate(actor: str | None, actor_roles: frozenset[str], values: Mapping[str, str]) -> Refusal | None:
    """May ``actor`` put a model under governance with these inventory field ``values``?"""
    if not actor:
        return Refusal(UNAUTHENTICATED, "no authenticated user")
    if MODEL_OWNER not in actor_roles:
        return Refusal(PERMISSION, f"{actor!r} may not initiate a governed model: the {MODEL_OWNER} role is required")
    for name, value in values.items():
        problem = check_field_value(name, value)
        if problem:
            return Refusal(INVALID, problem)
    return None


# --- the registry's own operations on governed models -----------------------------------------


def may_bind_production_alias(stage: str | None, usability: str | None, version: int) -> Refusal | None:
    """The production alias points only at a Ready to Use version whose usability is accept."""
    if stage != READY_TO_USE or usability != USABILITY_ACCEPT:
        return Refusal(
            PERMISSION,
            f"the production alias may only point at a version that is {READY_TO_USE!r} with usability "
            f"{USABILITY_ACCEPT!r}; version {version} is {stage or 'not in the workflow'!r} (usability {usability or 'none'})",
        )
    return None


def may_rename_or_delete_model(governed: bool, model: str, delete: bool) -> Refusal | None:
    """A governed model keeps its name and is never deleted: the owner decommissions it."""
    if not governed:
        return None
    if delete:
        return Refusal(PERMISSION, f"model {model!r} is governed and cannot be deleted: the {MODEL_OWNER} "
                                   "decommissions it instead")
    return Refusal(PERMISSION, f"model {model!r} is governed and cannot be renamed")


def may_delete_version(stage: str | None, version: int, model: str) -> Refusal | None:
    """A version still in the workflow is decommissioned by the owner, never deleted."""
    if stage and stage not in TERMINAL_STAGES:
        return Refusal(
            PERMISSION,
            f"version {version} of {model!r} is in the workflow ({stage!r}) and cannot be deleted: "
            f"the {MODEL_OWNER} decommissions it first",
        )
    return None


# --- monitor configuration -------------------------------------------------------------------

# Who may replace a version's monitor configuration, in which stages, and whether the version's
# developer is excluded: the validator chooses the rules the validation applies, the monitor
# those that watch the version in production.
MONITOR_CONFIG_RULES: tuple[tuple[str, frozenset[str], bool], ...] = (
    (MODEL_VALIDATOR, frozenset({APPROVED_FOR_VALIDATION}), True),
    (MODEL_MONITOR, frozenset({APPROVED_FOR_PRODUCTIONIZATION, PRE_PRODUCTION_REVIEW, READY_TO_USE}), False),
)


def may_set_monitors(attempt: Attempt) -> tuple[str | None, Refusal | None]:
    """May ``attempt.actor`` replace the monitor configuration of this version now? (role, refusal)."""
    a = attempt
    refusal = _entity_refusal(a)
    if refusal:
        return None, refusal
    if a.scope != VERSION_SCOPE or a.version is None:
        return None, Refusal(INVALID, "a monitor configuration belongs to a version: give the version number")
    rules = [(role, sod) for role, stages, sod in MONITOR_CONFIG_RULES if a.stage in stages]
    if not rules:
        where = "; ".join(f"{role} in {', '.join(sorted(stages))}" for role, stages, _ in MONITOR_CONFIG_RULES)
        return None, Refusal(
            CONFLICT, f"version {a.version} of {a.model!r} is in stage {a.stage!r}: its monitor configuration "
                      f"is set by {where}"
        )
    for role, not_by_developer in rules:
        if role in a.actor_roles:
            if not_by_developer and a.separation_of_duties and a.developer and a.actor == a.developer:
                return role, Refusal(
                    PERMISSION, f"separation of duties: {a.actor!r} developed this version and may not set "
                                "the monitor configuration that validates it"
                )
            return role, None
    needed = " or ".join(role for role, _ in rules)
    return rules[0][0], Refusal(
        PERMISSION, f"{a.actor!r} may not set the monitor configuration in stage {a.stage!r}: the {needed} role "
                    f"is required (held: {', '.join(sorted(a.actor_roles)) or 'none'})"
    )


# --- administration --------------------------------------------------------------------------

GRANT_ROLE = "grant_role"
REVOKE_ROLE = "revoke_role"
LIST_ROLES = "list_roles"
SET_CONTACT = "set_contact"  # a user's notification address (`mlflow_governance.notifications.people`)
MANAGE_NOTIFICATIONS = "manage_notifications"  # list contacts and counts, send a test message
ADMIN_ACTIONS = (GRANT_ROLE, REVOKE_ROLE, LIST_ROLES, SET_CONTACT, MANAGE_NOTIFICATIONS)
AUDITED_ADMIN_ACTIONS = (GRANT_ROLE, REVOKE_ROLE, SET_CONTACT)  # a refusal keeps its audit row


def may_administer(action: str, actor: str | None, actor_roles: frozenset[str]) -> Refusal | None:
    """Role administration is the admin's alone, on every path (local CLI and server alike)."""
    if action not in ADMIN_ACTIONS:
        raise ValueError(f"not an administrative action: {action!r}")
    verb = {GRANT_ROLE: "grant roles", REVOKE_ROLE: "revoke roles", LIST_ROLES: "list the role table",
            SET_CONTACT: "set a user's notification contact", MANAGE_NOTIFICATIONS: "manage notifications"}[action]
    if not actor:
        return Refusal(UNAUTHENTICATED, f"no authenticated user: only the admin may {verb}")
    if ADMIN not in actor_roles:
        return Refusal(PERMISSION, f"only the admin may {verb}")
    return None
