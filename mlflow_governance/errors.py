"""MLflow exceptions for governance refusals, one error code per kind of refusal."""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    ABORTED,
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    RESOURCE_CONFLICT,
    RESOURCE_DOES_NOT_EXIST,
    UNAUTHENTICATED,
)

# Refusal kinds of `workflow.Refusal` -> MLflow error codes (HTTP 403, 400, 409, 404, 409, 401).
ERROR_CODES = {
    "permission": PERMISSION_DENIED,
    "invalid": INVALID_PARAMETER_VALUE,
    "conflict": RESOURCE_CONFLICT,
    "missing": RESOURCE_DOES_NOT_EXIST,
    "busy": ABORTED,
    "unauthenticated": UNAUTHENTICATED,
}


class GovernanceError(MlflowException):
    """A refusal by governance; the message names the rule."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"Governance: {message}", error_code=ERROR_CODES[kind])
        self.kind = kind
        self.reason = message
