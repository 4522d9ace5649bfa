"""Configuration read from the environment, documented in ``governance.env.example``.

Every value is read when asked for, never at import time, so tests and servers can set the
environment before the first call.
"""

from __future__ import annotations

import os
import unicodedata

ENV_USER = "MLGOV_USER"
ENV_ADMIN = "MLGOV_ADMIN"
ENV_SEPARATION_OF_DUTIES = "MLGOV_SEPARATION_OF_DUTIES"
ENV_PRODUCTION_ALIAS = "MLGOV_PRODUCTION_ALIAS"
ENV_AUDIT_KEY = "MLGOV_AUDIT_KEY"

TAG_PREFIX = "mlgov."
TAG_STAGE = "mlgov.stage"
TAG_ASSIGNEE = "mlgov.assignee_role"
TAG_USABILITY = "mlgov.usability"
TAG_INVENTORY_ID = "mlgov.inventory_id"
TAG_ACTION = "mlgov.action"
TAG_FIELD_PREFIX = "mlgov.field."
TAG_DEVELOPER = "mlgov.developer"
TAG_UPDATED_BY = "mlgov.updated_by"


def admin_user() -> str:
    """The user allowed to manage roles (``MLGOV_ADMIN``, default ``admin``)."""
    return os.environ.get(ENV_ADMIN, "").strip() or "admin"


def separation_of_duties() -> bool:
    """Separation of duties is on unless ``MLGOV_SEPARATION_OF_DUTIES`` is false/0/off/no."""
    return os.environ.get(ENV_SEPARATION_OF_DUTIES, "true").strip().lower() not in {
        "0",
        "false",
        "off",
        "no",
    }


def production_alias() -> str:
    """The registry alias that marks the production version (default ``production``)."""
    return os.environ.get(ENV_PRODUCTION_ALIAS, "").strip() or "production"


def audit_key() -> str | None:
    """Optional HMAC key for the audit chain (``MLGOV_AUDIT_KEY``), kept outside the database."""
    return os.environ.get(ENV_AUDIT_KEY, "") or None


def local_user() -> str | None:
    """The acting user of a local process (development mode): ``MLGOV_USER``."""
    return os.environ.get(ENV_USER, "").strip() or None


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
