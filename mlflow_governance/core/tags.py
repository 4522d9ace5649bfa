"""The registry tag keys that carry governance state, kept apart as MLflow keeps its own tag names.

Every key starts with `TAG_PREFIX`. Only governance transitions write them; `is_governance_key`
also catches look-alikes (case, full-width letters, invisible characters) that the MLflow UI
would show the same, so they cannot pass for governance state.
"""

from __future__ import annotations

from mlflow_governance.core.config import fold

TAG_PREFIX = "mlgov."
TAG_STAGE = "mlgov.stage"
TAG_ASSIGNEE = "mlgov.assignee_role"
TAG_USABILITY = "mlgov.usability"
TAG_INVENTORY_ID = "mlgov.inventory_id"
TAG_ACTION = "mlgov.action"
TAG_FIELD_PREFIX = "mlgov.field."
TAG_DEVELOPER = "mlgov.developer"
TAG_UPDATED_BY = "mlgov.updated_by"
# The model at a glance (on the registered model): its production version and that version's
# usability, and the versions still in the workflow with the role each waits for.
TAG_PRODUCTION = "mlgov.production"
TAG_IN_FLIGHT = "mlgov.in_flight"
# The monitor configuration in force for a version (canonical JSON) and its digest.
TAG_MONITORS = "mlgov.monitors"
TAG_MONITORS_DIGEST = "mlgov.monitors.digest"


def is_governance_key(key: str) -> bool:
    """``mlgov.`` keys, and look-alikes (case, width, surrounding space, invisible characters)
    that the UI would show the same: compared after `config.fold` (NFKC and case folding)."""
    return fold(key).startswith(TAG_PREFIX)
