"""Configuration read from the environment; each setting is declared once, with its default, in
`mlflow_governance.core.environment_variables` (documented in ``governance.env.example``).

Every value is read when asked for, never at import time, so tests and servers can set the
environment before the first call; a malformed value is refused with INVALID_PARAMETER_VALUE.
"""

from __future__ import annotations

import unicodedata

from mlflow_governance.core.environment_variables import (
    MLGOV_ADMIN,
    MLGOV_AUDIT_KEY,
    MLGOV_PRODUCTION_ALIAS,
    MLGOV_SEPARATION_OF_DUTIES,
    MLGOV_USER,
)


def admin_user() -> str:
    """The user allowed to manage roles (``MLGOV_ADMIN``)."""
    return MLGOV_ADMIN.get()


def separation_of_duties() -> bool:
    """Whether separation of duties is on (``MLGOV_SEPARATION_OF_DUTIES``; true/false spellings only)."""
    return MLGOV_SEPARATION_OF_DUTIES.get()


def production_alias() -> str:
    """The registry alias that marks the production version (``MLGOV_PRODUCTION_ALIAS``)."""
    return MLGOV_PRODUCTION_ALIAS.get()


def audit_key() -> str | None:
    """Optional HMAC key for the audit chain (``MLGOV_AUDIT_KEY``), kept outside the database."""
    return MLGOV_AUDIT_KEY.get()


def local_user() -> str | None:
    """The acting user of a local process (development mode): ``MLGOV_USER``."""
    return MLGOV_USER.get()


def fold(text: str) -> str:
    """``text`` as a person reads it: NFKC-normalised, invisible format characters removed,
    case-folded and stripped, so ``ｍlgov.stage``, ``MLGOV.stage`` and ``mlgov\u200b.stage``
    all fold to ``mlgov.stage``. Governance keys and the production alias are compared folded.
    """
    normal = unicodedata.normalize("NFKC", text or "")
    visible = "".join(ch for ch in normal if unicodedata.category(ch) != "Cf")
    return visible.casefold().strip()


def is_production_alias(alias: str) -> bool:
    """True for the configured production alias and every look-alike of it (case, width, ...)."""
    return fold(alias) == fold(production_alias())
