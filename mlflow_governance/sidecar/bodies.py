"""Request bodies of the sidecar, parsed and checked before anything is scored or stored.

``POST /invocations`` takes the JSON bodies of MLflow's scoring server: ``dataframe_split``
(``{"columns": [...], "data": [[...], ...]}``), ``dataframe_records`` (a list of row objects),
``instances`` (a list of row objects) and ``inputs`` (an object of column lists, or a list of row
objects). Every row is checked against the model signature (`Column`): each required column
present, no unknown column, each value of its column's type (whole numbers for integer columns,
finite numbers for floating point ones, text for strings; null is a missing value where the
column type has one). `BodyError` says what is wrong, with the HTTP status (400, 413 for size)
and an error code, and never carries a traceback: a malformed body is the caller's mistake.

Why so strict: the payload table keeps each row as scored for the monitors, so a row the model
would silently coerce (``"7"`` for a month, ``true`` for a distance) is refused instead. The
parser also guards the process: the body is read up to the size limit only, Python's ``json``
raises RecursionError on deeply nested input (caught here), and ``NaN``/``Infinity`` literals,
which are not JSON, are refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
INT_RANGES = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
NUMPY_TYPES = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32",
               "string": "object", "boolean": "bool"}
MAX_FEEDBACK_ITEMS = 10_000
#: Characters no text value may hold: C0 controls (NUL included), DEL and the bidirectional
#: overrides and isolates, which make stored text display as something else than it is.
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
MAX_REQUEST_ID = 64
SHOWN_VALUE_CHARS = 40


class BodyError(Exception):
    """A request body refused: HTTP ``status``, an ``error_code`` naming the problem, a message."""

    def __init__(self, error_code: str, message: str, status: int = 400):
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


@dataclass(frozen=True)
class Column:
    """One input column of the model signature: name, MLflow type, whether it must be present."""

    name: str
    type: str
    required: bool = True


def columns_from_mlmodel(document: dict[str, Any]) -> list[Column]:
    """The input columns of an MLmodel document's signature; ValueError if it has none we can check."""
    signature = document.get("signature") or {}
    raw = signature.get("inputs")
    if not raw:
        raise ValueError("the model has no input signature: the sidecar checks every request against one")
    specs = json.loads(raw) if isinstance(raw, str) else raw
    columns = []
    for spec in specs:
        name, kind = spec.get("name"), spec.get("type")
        if not name or kind not in NUMPY_TYPES:
            raise ValueError(f"the model signature has an input the sidecar cannot check: {spec!r} "
                             f"(supported: named columns of type {', '.join(NUMPY_TYPES)})")
        columns.append(Column(str(name), str(kind), bool(spec.get("required", True))))
    if len({c.name for c in columns}) != len(columns):
        raise ValueError("the model signature names a column twice")
    return columns


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (send null for a missing value)")


def check_content_type(content_type: str | None) -> None:
    """Only JSON is taken (``application/json``, optionally with a UTF-8 charset)."""
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != "application/json":
        shown = (content_type or "none")[:SHOWN_VALUE_CHARS]
        raise BodyError("UNSUPPORTED_CONTENT_TYPE",
                        f"the body must be JSON sent as Content-Type: application/json, not {shown!r}")
    charset = params.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", "charset=utf8"):
        raise BodyError("UNSUPPORTED_CONTENT_TYPE", f"the body must be UTF-8 JSON, not {params.strip()!r}")


def load_json(raw: bytes, content_type: str | None, max_bytes: int) -> Any:
    """The JSON document in ``raw`` after the content type, size and syntax checks."""
    check_content_type(content_type)
    if len(raw) > max_bytes:
        raise BodyError("BODY_TOO_LARGE", f"the body is larger than the limit of {max_bytes} bytes", 413)
    if not raw.strip():
        raise BodyError("EMPTY_BODY", "the body is empty: send a JSON object")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise BodyError("NESTING_TOO_DEEP", "the body is nested too deeply to be a scoring request") from None
    except UnicodeDecodeError:
        raise BodyError("MALFORMED_JSON", "the body is not valid UTF-8") from None
    except ValueError as exc:  # json.JSONDecodeError, the literals above, over-long integers
        raise BodyError("MALFORMED_JSON", f"the body is not valid JSON: {exc}") from None


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "..."


def _wrong(column: Column, row: int, value: Any, expected: str) -> BodyError:
    return BodyError("WRONG_TYPE", f"column {column.name!r}, row {row}: expected {expected}, got {_shown(value)}")


def _check_text(column: Column, values: Sequence[Any], max_chars: int | None) -> None:
    """Text values within ``max_chars`` (413) and free of `FORBIDDEN_CHARACTERS` (400)."""
    texts = [v for v in values if v is not None]
    if not texts:
        return
    if max_chars is not None and max(map(len, texts)) > max_chars:
        row = next(i for i, v in enumerate(values) if v is not None and len(v) > max_chars)
        raise BodyError("VALUE_TOO_LONG", f"column {column.name!r}, row {row}: a text value may have at most "
                        f"{max_chars} characters, this one has {len(values[row])}", 413)
    if FORBIDDEN_CHARACTERS.search("".join(texts)):
        row = next(i for i, v in enumerate(values) if v is not None and FORBIDDEN_CHARACTERS.search(v))
        found = FORBIDDEN_CHARACTERS.search(values[row]).group()
        raise BodyError("FORBIDDEN_CHARACTER", f"column {column.name!r}, row {row}: text values may not contain "
                        f"control or bidirectional-override characters (found U+{ord(found):04X})")


def check_values(column: Column, values: Sequence[Any], max_chars: int | None = None) -> np.ndarray:
    """``values`` of ``column`` as the typed array the model takes; BodyError on the first bad one
    (text longer than ``max_chars`` characters: 413)."""
    kind = column.type
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        missing = False
        for i, v in enumerate(values):
            t = type(v)
            if t is int:
                if not low <= v <= high:
                    raise _wrong(column, i, v, f"a whole number between {low} and {high}")
            elif t is float and v.is_integer() and low <= v <= high:
                continue
            elif v is None and not column.required:
                missing = True
            else:
                raise _wrong(column, i, v, "a whole number" + ("" if column.required else " or null"))
        if missing:
            return np.array([math.nan if v is None else float(v) for v in values], dtype="float64")
        return np.array(values, dtype=NUMPY_TYPES[kind])
    if kind in ("double", "float"):
        for i, v in enumerate(values):
            t = type(v)
            if t is float:
                if not math.isfinite(v):
                    raise _wrong(column, i, v, "a finite number")
            elif t is int:
                if abs(v) > 1.7e308:
                    raise _wrong(column, i, v, "a finite number")
            elif v is not None:
                raise _wrong(column, i, v, "a number or null")
        return np.array(values, dtype=NUMPY_TYPES[kind])  # None -> NaN
    if kind == "string":
        for i, v in enumerate(values):
            if type(v) is not str and v is not None:
                raise _wrong(column, i, v, "a string or null")
        _check_text(column, values, max_chars)
        out = np.array(values, dtype=object)
        if any(v is None for v in values):
            out[out == None] = np.nan  # noqa: E711 - elementwise comparison on an object array
        return out
    for i, v in enumerate(values):  # boolean
        if type(v) is not bool:
            raise _wrong(column, i, v, "true or false")
    return np.array(values, dtype="bool")


@dataclass
class Rows:
    """Checked rows: one typed array per signature column, in signature order."""

    columns: dict[str, np.ndarray]
    count: int

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns, copy=False)


def _records(records: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(records, list):
        raise BodyError("BAD_FORMAT", f"{key!r} must be a list of row objects")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise BodyError("BAD_FORMAT", f"{key!r} must be a list of row objects; row {i} is {_shown(r)}")
    return records


def _split(body: Any) -> tuple[list[str], list[list[Any]]]:
    if not isinstance(body, dict):
        raise BodyError("BAD_FORMAT", "'dataframe_split' must be an object with 'columns' and 'data'")
    extra = set(body) - {"columns", "data", "index"}
    if extra:
        raise BodyError("BAD_FORMAT", f"'dataframe_split' takes columns, data and index, not {sorted(extra)}")
    columns, data = body.get("columns"), body.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BodyError("BAD_FORMAT", "'dataframe_split.columns' must be a list of column names")
    if len(set(columns)) != len(columns):
        raise BodyError("BAD_FORMAT", "'dataframe_split.columns' names a column twice")
    if not isinstance(data, list):
        raise BodyError("BAD_FORMAT", "'dataframe_split.data' must be a list of rows (lists of values)")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BodyError("BAD_FORMAT", f"'dataframe_split.data' row {i} must be a list of {len(columns)} values "
                                          "(one per column)")
    return columns, data


def parse_invocation(document: Any, columns: Sequence[Column], max_rows: int | None = None,
                     max_value_chars: int | None = None) -> Rows:
    """The checked rows of an ``/invocations`` document (already parsed by `load_json`); more than
    ``max_rows`` rows or a text value over ``max_value_chars`` characters is refused with 413."""
    if not isinstance(document, dict):
        raise BodyError("BAD_FORMAT", f"the body must be a JSON object with one of the keys {', '.join(FORMATS)}")
    keys = [k for k in document if k in FORMATS]
    extra = sorted(set(document) - set(FORMATS))
    if len(keys) != 1 or extra:
        if "params" in extra:
            raise BodyError("BAD_FORMAT", "this model takes no params")
        shown = ", ".join(repr(k[:SHOWN_VALUE_CHARS]) for k in sorted(document)[:5]) or "no key"
        raise BodyError("BAD_FORMAT", f"the body must have exactly one of the keys {', '.join(FORMATS)}; it has {shown}")
    key = keys[0]
    payload = document[key]
    known = {c.name for c in columns}
    by_name: dict[str, list[Any]]
    if key == "dataframe_split":
        order, data = _split(payload)
        _check_names(set(order), known, columns, key)
        by_name = {name: [row[j] for row in data] for j, name in enumerate(order)}
        count = len(data)
    elif key == "inputs" and isinstance(payload, dict):
        _check_names(set(payload), known, columns, key)
        lengths = set()
        for name, values in payload.items():
            if not isinstance(values, list):
                raise BodyError("BAD_FORMAT", f"'inputs' column {name!r} must be a list of values")
            lengths.add(len(values))
        if len(lengths) > 1:
            raise BodyError("BAD_FORMAT", "'inputs' columns must all have the same number of values")
        by_name = dict(payload)
        count = lengths.pop() if lengths else 0
    else:
        records = _records(payload, key)
        names: set[str] = set()
        for r in records:
            names.update(r)
        _check_names(names, known, (), key)
        count = len(records)
        by_name = {}
        for c in columns:
            if c.required:
                for i, r in enumerate(records):
                    if c.name not in r:
                        raise BodyError("MISSING_COLUMN", f"row {i} lacks the required column {c.name!r}")
            by_name[c.name] = [r.get(c.name) for r in records]
    if count == 0:
        raise BodyError("NO_ROWS", "the body has no rows to score")
    if max_rows is not None and count > max_rows:
        raise BodyError("TOO_MANY_ROWS", f"at most {max_rows} rows per request; this one has {count}: split it", 413)
    typed = {}
    for c in columns:
        values = by_name.get(c.name)
        typed[c.name] = check_values(c, values if values is not None else [None] * count, max_value_chars)
    return Rows(typed, count)


def _check_names(names: set[str], known: set[str], columns: Sequence[Column], key: str) -> None:
    unknown = sorted(names - known)
    if unknown:
        shown = ", ".join(repr(n[:SHOWN_VALUE_CHARS]) for n in unknown[:5])
        raise BodyError("UNKNOWN_COLUMN", f"unknown column(s) {shown} in {key!r}; the model takes "
                                          f"{', '.join(sorted(known))}")
    missing = [c.name for c in columns if c.required and c.name not in names]
    if missing:
        raise BodyError("MISSING_COLUMN", f"missing required column(s) {', '.join(missing)} in {key!r}")


def parse_feedback(document: Any, max_items: int = MAX_FEEDBACK_ITEMS) -> list[tuple[str, int]]:
    """``[(request_id, label), ...]`` of a ``/feedback`` document: labels 0 or 1, ids as issued, at most
    ``max_items`` (413 above)."""
    if not isinstance(document, dict) or set(document) != {"feedback"}:
        raise BodyError("BAD_FORMAT", 'the body must be {"feedback": [{"request_id": "...", "label": 0 or 1}, ...]}')
    items = document["feedback"]
    if not isinstance(items, list) or not items:
        raise BodyError("BAD_FORMAT", "'feedback' must be a non-empty list of {request_id, label} objects")
    if len(items) > max_items:
        raise BodyError("TOO_MANY_ROWS", f"at most {max_items} feedback items per request; this one has "
                        f"{len(items)}: split it", 413)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"request_id", "label"}:
            raise BodyError("BAD_FORMAT", f"feedback item {i} must be an object with exactly request_id and label")
        rid, label = item["request_id"], item["label"]
        if type(rid) is not str or not 0 < len(rid) <= MAX_REQUEST_ID:
            raise BodyError("WRONG_TYPE", f"feedback item {i}: request_id must be a request id string")
        if type(label) is not int or label not in (0, 1):
            raise BodyError("WRONG_TYPE", f"feedback item {i}: label must be 0 or 1, not {_shown(label)}")
        out.append((rid, label))
    return out


MAX_REASON_CHARS = 2000


def parse_correction(document: Any) -> tuple[str, int, str]:
    """``(request_id, label, reason)`` of a ``/feedback/correct`` document: a label 0 or 1 and a reason."""
    if not isinstance(document, dict) or set(document) != {"request_id", "label", "reason"}:
        raise BodyError("BAD_FORMAT", 'the body must be {"request_id": "...", "label": 0 or 1, "reason": "why the '
                                      'label given before was wrong"}')
    rid, label, reason = document["request_id"], document["label"], document["reason"]
    if type(rid) is not str or not 0 < len(rid) <= MAX_REQUEST_ID:
        raise BodyError("WRONG_TYPE", "request_id must be a request id string")
    if type(label) is not int or label not in (0, 1):
        raise BodyError("WRONG_TYPE", f"label must be 0 or 1, not {_shown(label)}")
    if type(reason) is not str or not reason.strip():
        raise BodyError("MISSING_REASON", "a correction needs a reason (why the label given before was wrong)")
    if len(reason) > MAX_REASON_CHARS or FORBIDDEN_CHARACTERS.search(reason.replace("\n", " ")):
        raise BodyError("BAD_REASON", f"the reason must be at most {MAX_REASON_CHARS} characters of text without "
                                      "control characters")
    return rid, label, reason.strip()
