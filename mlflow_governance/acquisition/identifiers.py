"""Identifier checks: no SQL is ever built from a name that is not a plain identifier.

Names are validated here and then quoted by SQLAlchemy (``sa.table``/reflected ``sa.Table``
constructs), never formatted into SQL text by hand.
"""

from __future__ import annotations

import re
import string

from mlflow_governance.acquisition.errors import AcquisitionError
from mlflow_governance.airline.flights import month_name

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_IDENTIFIER_LENGTH = 128
# Placeholders of a month table template, e.g. "{MONTH}_FLIGHT_INFORMATION" -> JANUARY_FLIGHT_INFORMATION.
PLACEHOLDERS = {
    "MONTH": lambda m: month_name(m),
    "month": lambda m: month_name(m).lower(),
    "Month": lambda m: month_name(m).capitalize(),
    "mm": lambda m: f"{m:02d}",
    "m": lambda m: str(m),
}


def check_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a plain SQL identifier (letters, digits, underscore), else raise."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or len(name) > MAX_IDENTIFIER_LENGTH:
        raise AcquisitionError(
            f"{what} {name!r} is not a plain identifier: use letters, digits and underscores only, "
            f"starting with a letter or underscore (at most {MAX_IDENTIFIER_LENGTH} characters)"
        )
    return name


def parse_columns(text: str | None, what: str) -> list[str] | None:
    """``"A, B"`` -> ``["A", "B"]`` (validated, duplicates dropped); empty means None (the default set)."""
    if text is None or not str(text).strip():
        return None
    out: list[str] = []
    for part in str(text).split(","):
        name = check_identifier(part.strip(), f"{what} column")
        if name.upper() not in (c.upper() for c in out):
            out.append(name)
    return out


def _fields(template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise AcquisitionError(f"table template {template!r} is malformed: {exc}") from None
    fields = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            raise AcquisitionError(
                f"table template {template!r} has an unknown placeholder {{{field}}}; "
                f"use one of {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        fields.append(field)
    return fields


def is_month_template(template: str) -> bool:
    """True if ``template`` names one table per month (contains a month placeholder)."""
    return bool(_fields(template))


def render_table(template: str, month: int | None, what: str) -> str:
    """The table name for ``month`` (a plain name is returned as is); always a checked identifier."""
    if is_month_template(template):
        if month is None:
            raise AcquisitionError(f"{what} table template {template!r} needs a month")
        name = template.format(**{k: f(month) for k, f in PLACEHOLDERS.items()})
    else:
        name = template
    return check_identifier(name, f"{what} table")
