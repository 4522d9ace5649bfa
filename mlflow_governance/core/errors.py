"""MLflow exceptions for governance refusals, one error code per kind of refusal."""

from __future__ import annotations

import re

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


# Text that only a database error (or the row it refused) puts into a message: SQL, bound
# parameters, driver names, a password hash. Such text never goes to a client.
DATABASE_TEXT = re.compile(
    r"IntegrityError|OperationalError|ProgrammingError|DataError|DatabaseError|sqlalchemy|sqlite3|psycopg|"
    r"INSERT INTO|UPDATE \w+ SET|DELETE FROM|\[SQL:|\[parameters:|Background on this error|scrypt:|pbkdf2:",
    re.IGNORECASE,
)


def leaks_database_text(message: str | None) -> bool:
    """True when ``message`` carries database error text (SQL, parameters, a password hash)."""
    return bool(DATABASE_TEXT.search(message or ""))
