"""Governance REST endpoints under ``/api/2.0/mlflow-governance/`` (routes as a table).

Every endpoint acts as the authenticated user (MLflow's basic-auth sets it before the handler
runs) through the same engine as the CLI; errors use MLflow's JSON shape and HTTP status
(400 bad input, 401 unauthenticated, 403 refused, 404 unknown model, 409 wrong stage).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, g, jsonify, request
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
    UNAUTHENTICATED,
)
from mlflow.server.handlers import catch_mlflow_exception

from mlflow_governance.core import engine, workflow
from mlflow_governance.core.errors import GovernanceError, leaks_database_text
from mlflow_governance.server import outage, permissions
from mlflow_governance.server.databases import governed_store
from mlflow_governance.server.permissions import EDIT, READ

_log = logging.getLogger(__name__)
PREFIX = "/api/2.0/mlflow-governance"
AJAX_PREFIX = "/ajax-api/2.0/mlflow-governance"


def _body() -> dict[str, Any]:
    if request.method == "GET":
        return request.args.to_dict()
    data = request.get_json(silent=True)
    if data is None:
        if request.data:
            raise MlflowException("request body is not valid JSON", error_code=INVALID_PARAMETER_VALUE)
        return {}
    if not isinstance(data, dict):
        raise MlflowException("request body must be a JSON object", error_code=INVALID_PARAMETER_VALUE)
    return data


def _text(data: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise MlflowException(f"missing parameter {key!r}", error_code=INVALID_PARAMETER_VALUE)
        return None
    if not isinstance(value, (str, int, float)):
        raise MlflowException(f"parameter {key!r} must be a string", error_code=INVALID_PARAMETER_VALUE)
    return str(value)


MAX_INT = 2**31 - 1


def _positive_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not 1 <= number <= MAX_INT or isinstance(value, bool):
        raise MlflowException(f"{key} must be a whole number from 1 to {MAX_INT}, not {value!r}",
                              error_code=INVALID_PARAMETER_VALUE)
    return number


def _version(data: dict[str, Any]) -> int | None:
    return _positive_int(data, "version")


def _fields(data: dict[str, Any]) -> dict[str, str]:
    fields = data.get("fields") or {}
    if not isinstance(fields, dict) or not all(isinstance(v, (str, int, float)) for v in fields.values()):
        raise MlflowException("fields must be an object of strings", error_code=INVALID_PARAMETER_VALUE)
    return {str(k): str(v) for k, v in fields.items()}


def current_user() -> str:
    user = getattr(g, "mlflow_authenticated_user", None)
    if not user:
        raise MlflowException("authentication required", error_code=UNAUTHENTICATED)
    return user


# --- handlers --------------------------------------------------------------------------------


def whoami(data):
    user = current_user()
    return {"user": user, "roles": sorted(engine.roles_of(governed_store(), user))}


def access(data):
    """What the signed-in user may do at a scoring sidecar of ``model`` (the sidecar asks on each new caller).

    READ on the model is the route's rule (checked before this runs); feedback needs the ModelMonitor
    role, a correction of feedback the ModelOwner role (admins: everything). See
    `mlflow_governance.sidecar.access`."""
    store, model, user = governed_store(), _text(data, "model"), current_user()
    store.get_registered_model(model)  # 404 for a model that does not exist
    admin = permissions.is_admin()
    held = engine.roles_of(store, user)
    return {"user": user, "model": model, "admin": admin, "read": True,
            "feedback": admin or workflow.MODEL_MONITOR in held, "correct": admin or workflow.MODEL_OWNER in held}


def _exists(store, model: str) -> bool:
    try:
        store.get_registered_model(model)
        return True
    except MlflowException:
        return False


def initiate(data):
    store, model = governed_store(), _text(data, "model")
    created = not _exists(store, model)  # an existing one needed EDIT (the route's rule)
    inventory_id = engine.initiate(
        store,
        model,
        _text(data, "use_case"),
        _text(data, "risk_tier", required=False) or "medium",
        _text(data, "business_owner", required=False),
    )
    if created:
        # As MLflow's basic-auth does for a model created through its own API: the creator manages it.
        from mlflow.server.auth import store as auth_store

        auth_store.create_registered_model_permission(model, current_user(), "MANAGE")
    return {"inventory_id": inventory_id}


MAX_EVIDENCE = 20000  # characters of JSON: a monitor's breached figures, its run and its digest


def _evidence(data: dict[str, Any]) -> dict[str, Any] | None:
    evidence = data.get("evidence")
    if evidence is None:
        return None
    if not isinstance(evidence, dict):
        raise MlflowException("evidence must be an object (what a monitor measured)", error_code=INVALID_PARAMETER_VALUE)
    if len(json.dumps(evidence, default=str)) > MAX_EVIDENCE:
        raise MlflowException(f"evidence is longer than {MAX_EVIDENCE} characters of JSON",
                              error_code=INVALID_PARAMETER_VALUE)
    return evidence


def transition(data):
    return engine.act(
        governed_store(),
        _text(data, "model"),
        _text(data, "action"),
        _version(data),
        _fields(data),
        _text(data, "comment", required=False),
        _evidence(data),
    )


def set_field(data):
    return engine.set_field(
        governed_store(), _text(data, "model"), _text(data, "name"), _text(data, "value"), _version(data)
    )


def set_monitors(data):
    version = _version(data)
    if version is None:
        raise MlflowException("version is required: a monitor configuration belongs to a version",
                              error_code=INVALID_PARAMETER_VALUE)
    config = data.get("config")
    if not isinstance(config, dict):
        raise MlflowException("config must be an object (the monitor configuration)", error_code=INVALID_PARAMETER_VALUE)
    return engine.set_monitors(governed_store(), _text(data, "model"), version, config)


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if value in (None, False, True):
        return bool(value)
    raise MlflowException(f"{key} must be true or false, not {value!r}", error_code=INVALID_PARAMETER_VALUE)


def may(data):
    """Would the action be allowed? Asking is reading (the route's rule is READ); MLflow's EDIT on
    the model is one of the conditions of the answer, as it is of the action itself."""
    model = _text(data, "model")
    if not permissions.allows(model, EDIT):  # the action would be refused before governance decides
        return {"allowed": False, "kind": "permission", "role": None, "stage": None,
                "message": f"{current_user()!r} may not act on model {model!r}: MLflow's permission for this "
                           "model does not grant EDIT"}
    return engine.may(
        governed_store(), _text(data, "model"), _text(data, "action"), _version(data),
        _flag(data, "new_version"), _flag(data, "inputs"), _fields(data), _text(data, "comment", required=False),
    )


def status(data):
    return engine.status(governed_store(), _text(data, "model"), _version(data))


def tasks(data):
    role = _text(data, "role", required=False)
    if role and role not in workflow.GOVERNANCE_ROLES:
        raise MlflowException(f"unknown role {role!r}", error_code=INVALID_PARAMETER_VALUE)
    return {"tasks": visible_tasks(governed_store(), role=role, user=current_user())}


def visible_tasks(store, role: str | None, user: str) -> list[dict[str, Any]]:
    """The inbox, without the models MLflow does not let ``user`` read."""
    items = engine.tasks(store, role=role, user=user)
    allowed = permissions.readable(i["model"] for i in items)
    return [i for i in items if i["model"] in allowed]


def audit_rows(data):
    limit = _positive_int(data, "limit")
    model = _text(data, "model", required=False)
    if model is not None or permissions.is_admin():
        return {"rows": engine.history(governed_store(), model, limit)}
    # Across models: only rows of models the user may read (role administration is the admin's).
    rows = engine.history(governed_store(), None, None)
    allowed = permissions.readable(r["model"] for r in rows if r["model"])
    rows = [r for r in rows if r["model"] in allowed]
    return {"rows": rows[-limit:] if limit else rows}


def audit_verify(data):
    seq, digest = _positive_int(data, "expect_seq"), _text(data, "expect_hash", required=False)
    if (seq is None) != (digest is None):
        raise MlflowException("give both expect_seq and expect_hash, or neither", error_code=INVALID_PARAMETER_VALUE)
    store = governed_store()
    expect = (seq, digest) if seq is not None else None
    verdict = engine.verify(store, expect)
    if not permissions.is_admin():
        # One verdict for everybody; the disagreements are named only for models the user may read.
        found = verdict["discrepancies"]
        readable = permissions.readable(d["model"] for d in found)
        verdict["discrepancies"] = [d for d in found if d["model"] in readable]
        verdict["hidden_discrepancies"] = len(found) - len(verdict["discrepancies"])
    return verdict


def audit_head(data):
    seq, digest = engine.audit_head(governed_store())
    return {"seq": seq, "hash": digest}


def factsheet(data):
    from mlflow_governance.evidence.factsheet import render_html, render_markdown

    store = governed_store()
    model = _text(data, "model")
    fmt = _text(data, "format", required=False) or "md"
    if fmt not in ("md", "html"):
        raise MlflowException("format must be md or html", error_code=INVALID_PARAMETER_VALUE)
    from mlflow_governance.core import environment_variables as ev
    from mlflow_governance.evidence.factsheet import live_evidence

    payload_url = ev.MLGOV_PAYLOAD_URL.get()
    live = live_evidence(payload_url, model, trace_url=request.host_url.rstrip("/") + PREFIX + "/trace") \
        if payload_url else None
    text = (render_html if fmt == "html" else render_markdown)(
        engine.status(store, model), engine.history(store, model), live
    )
    return Response(text, mimetype="text/html" if fmt == "html" else "text/markdown")


class _ServerSources:
    """`trace.Sources` over this server's own stores."""

    def __init__(self, store):
        self.store = store

    def status(self, model, version):
        return engine.status(self.store, model, version)

    def audit(self, model):
        return engine.history(self.store, model, None)

    def verify(self):
        return audit_verify({})

    def run(self, run_id):
        from mlflow.server.handlers import _get_tracking_store

        try:
            return _get_tracking_store().get_run(run_id)
        except MlflowException:
            return None

    def model_version(self, model, version):
        try:
            return self.store.get_model_version(model, str(version))
        except MlflowException:
            return None


def trace(data):
    """The evidence behind one served prediction (`mlflow_governance.evidence.trace`); READ on its model."""
    from mlflow_governance.core import environment_variables as ev
    from mlflow_governance.evidence import trace as tracing

    request_id = _text(data, "request_id")
    payload_url = ev.MLGOV_PAYLOAD_URL.get()
    if not payload_url:
        raise MlflowException(f"this server reads no payload database: set {ev.MLGOV_PAYLOAD_URL} to the sidecars' "
                              "--payload-url", error_code=RESOURCE_DOES_NOT_EXIST)
    codes = {"invalid": INVALID_PARAMETER_VALUE, "unknown": RESOURCE_DOES_NOT_EXIST,
             "unavailable": TEMPORARILY_UNAVAILABLE, "refused": PERMISSION_DENIED}
    user = current_user()
    try:
        return tracing.trace(request_id, payload_url, _ServerSources(governed_store()),
                             authorize=lambda model: permissions.require(model, READ, user))
    except tracing.TraceError as exc:
        raise MlflowException(exc.message, error_code=codes[exc.kind]) from None


def event_list(data):
    """Governance events after ``after`` (a seq), oldest first: every model's for an admin, else the
    models the user may read (READ on ``model`` when it is named)."""
    from mlflow_governance.core import events

    after = _positive_int(data, "after") or 0
    limit = _positive_int(data, "limit") or 100
    model = _text(data, "model", required=False)
    store = governed_store()
    base = request.host_url.rstrip("/")
    if model is not None or permissions.is_admin():
        found = events.read(store.engine, after, limit, [model] if model is not None else None)
    else:
        found, cursor = [], after
        while len(found) < limit:  # filtered page by page, so a page of unreadable models ends nothing
            page = events.read(store.engine, cursor, 500)
            if not page:
                break
            allowed = permissions.readable(e.model for e in page)
            found.extend(e for e in page if e.model in allowed)
            cursor = page[-1].seq
        found = found[:limit]
    return {"events": [e.governance_event(base) for e in found]}


def event_status(data):
    """How much of the outbox is undelivered (everyone); which webhooks fail and why (admins)."""
    from mlflow_governance.notifications import people

    return people.delivery_status(governed_store(), details=permissions.is_admin())


def _require_user_exists(username: str) -> None:
    from mlflow.server.auth import store as auth_store

    if not auth_store.has_user(username):
        raise MlflowException(
            f"no user {username!r}: create it first (mlgov users add)", error_code=RESOURCE_DOES_NOT_EXIST
        )


def grant(data):
    username, role = _text(data, "username"), _text(data, "role")
    store = governed_store()
    _require_user_exists(username)
    return {"changed": engine.grant_role(store, username, role)}


def revoke(data):
    return {"changed": engine.revoke_role(governed_store(), _text(data, "username"), _text(data, "role"))}


def list_roles(data):
    return {"roles": engine.list_roles(governed_store(), current_user())}


def set_contact(data):
    """Admin only, audited: a user's mail address or notification URL (`mlflow_governance.notifications.contacts`)."""
    from mlflow_governance.notifications import contacts

    username, store = _text(data, "username"), governed_store()
    _require_user_exists(username)
    return contacts.set_contact(store, username, _text(data, "email", required=False),
                                _text(data, "url", required=False), _flag(data, "clear"))


def notification_list(data):
    """Admin only: every user, their contact (a URL masked), roles and notification counts."""
    from mlflow.server.auth import store as auth_store

    from mlflow_governance.notifications import people

    store, user = governed_store(), current_user()
    known = [u.username for u in auth_store.list_users()] if permissions.is_admin() else []
    return {"users": people.listing(store, user, known)}


def notification_test(data):
    """Admin only: send a user a test message now; ``ok`` and the one-line failure."""
    from mlflow_governance.notifications import people

    username = _text(data, "username")
    return people.send_test(governed_store(), current_user(), username)


# --- the route table ---------------------------------------------------------------------------


def _named_model(data: dict[str, Any]) -> str | None:
    return _text(data, "model", required=False)  # the handler says when a required one is missing


@dataclass(frozen=True)
class Rule:
    """Who may call a route, checked by `_view` before its handler (MLflow's basic-auth has already
    signed the caller in). ``model_permission`` is MLflow's permission needed on the model the
    request names (READ or EDIT), or None when the rule does not name one."""

    name: str
    check: Callable[[dict[str, Any]], None]
    model_permission: str | None = None


def _on_named_model(need: str) -> Callable[[dict[str, Any]], None]:
    def check(data: dict[str, Any]) -> None:
        model = _named_model(data)
        if model is not None:
            permissions.require(model, need, current_user())
    return check


def _signed_in(data: dict[str, Any]) -> None:
    current_user()


def _edit_if_it_exists(data: dict[str, Any]) -> None:
    """Putting someone's existing model under governance is acting on it; a new one needs no grant."""
    model = _named_model(data)
    if model is not None and _exists(governed_store(), model):
        permissions.require(model, EDIT, current_user())


def _admin(action: str, audit_fields: Callable[[dict[str, Any]], dict[str, str]] | None = None) -> Rule:
    """The governance Admin role (`workflow.may_administer`), decided by the core, which keeps the
    audit row of a refused grant, revocation or contact change."""
    def check(data: dict[str, Any]) -> None:
        engine.require_admin(governed_store(), action, audit_fields(data) if audit_fields else None)
    return Rule(f"ADMIN:{action}", check)


def _role_fields(data: dict[str, Any]) -> dict[str, str]:
    return {"user": str(data.get("username") or "").strip(), "role": str(data.get("role") or "")}


def _contact_fields(data: dict[str, Any]) -> dict[str, str]:
    from mlflow_governance.notifications import contacts

    text = {key: data.get(key) if isinstance(data.get(key), str) else None for key in ("username", "email", "url")}
    return contacts.audit_fields(text["username"], text["email"], text["url"], data.get("clear") is True)


SIGNED_IN = Rule("SIGNED_IN", _signed_in)  # any signed-in user; the answer is about the caller
READ_MODEL = Rule("READ", _on_named_model(READ), READ)
EDIT_MODEL = Rule("EDIT", _on_named_model(EDIT), EDIT)
EDIT_EXISTING = Rule("EDIT_EXISTING", _edit_if_it_exists, EDIT)
# READ on the model when one is named; without one, the answer keeps only the models the caller
# may read (`permissions.readable`, applied by the handler to the rows it found).
READABLE_MODELS = Rule("READABLE_MODELS", _on_named_model(READ), READ)
# Names no model: signed in, and the answer keeps only the models the caller may read.
ONLY_READABLE = Rule("ONLY_READABLE", _signed_in)
# READ on the model of the traced prediction, which only the row found names: the handler checks
# it with `permissions.require` before it shows anything of the row.
READ_TRACED_MODEL = Rule("READ_TRACED_MODEL", _signed_in)

# (path, method, handler, rule): the whole API; `_view` checks the rule before the handler.
ROUTES: tuple[tuple[str, str, Callable[[dict], Any], Rule], ...] = (
    ("/whoami", "GET", whoami, SIGNED_IN),
    ("/models/initiate", "POST", initiate, EDIT_EXISTING),
    ("/models/transition", "POST", transition, EDIT_MODEL),
    ("/models/set-field", "POST", set_field, EDIT_MODEL),
    ("/models/monitors", "POST", set_monitors, EDIT_MODEL),
    ("/models/status", "GET", status, READ_MODEL),
    ("/models/may", "POST", may, READ_MODEL),  # writes nothing; POST for the fields it is asked about
    ("/models/access", "GET", access, READ_MODEL),  # a scoring sidecar asking what its caller may do
    ("/tasks", "GET", tasks, ONLY_READABLE),
    ("/audit", "GET", audit_rows, READABLE_MODELS),
    ("/audit/verify", "GET", audit_verify, ONLY_READABLE),
    ("/audit/head", "GET", audit_head, SIGNED_IN),  # a sequence number and a hash: no model's data
    ("/factsheet", "GET", factsheet, READ_MODEL),
    ("/trace", "GET", trace, READ_TRACED_MODEL),
    ("/events", "GET", event_list, READABLE_MODELS),
    ("/events/status", "GET", event_status, SIGNED_IN),  # counts for everyone; failures named to admins
    ("/roles/grant", "POST", grant, _admin(workflow.GRANT_ROLE, _role_fields)),
    ("/roles/revoke", "POST", revoke, _admin(workflow.REVOKE_ROLE, _role_fields)),
    ("/roles/list", "GET", list_roles, _admin(workflow.LIST_ROLES)),
    ("/users/contact", "POST", set_contact, _admin(workflow.SET_CONTACT, _contact_fields)),
    ("/notifications", "GET", notification_list, _admin(workflow.MANAGE_NOTIFICATIONS)),
    ("/notifications/test", "POST", notification_test, _admin(workflow.MANAGE_NOTIFICATIONS)),
)


def _view(handler: Callable[[dict], Any], rule: Rule) -> Callable[[], Response]:
    @catch_mlflow_exception
    def view() -> Response:
        data = _body()
        try:
            rule.check(data)
            result = handler(data)
        except sa.exc.SQLAlchemyError as exc:
            raise outage.client_error(exc) from None
        except GovernanceError:
            raise  # our own refusals name the rule, never the database
        except MlflowException as exc:
            if isinstance(exc.__cause__, sa.exc.SQLAlchemyError) or leaks_database_text(exc.message):
                raise outage.client_error(exc) from None
            raise
        return result if isinstance(result, Response) else jsonify(result)

    view.__name__ = f"mlgov_{handler.__name__}"
    return view


def _authenticated_only() -> bool:
    """Basic-auth validator for our routes: being signed in is enough, governance decides the rest."""
    return True


def _json_auth_errors(response: Response) -> Response:
    """Basic-auth answers 401/403 in plain text; on our API give MLflow's JSON error shape."""
    if request.path.startswith((PREFIX, AJAX_PREFIX)) and response.status_code in (401, 403) and not response.is_json:
        code = "UNAUTHENTICATED" if response.status_code == 401 else "PERMISSION_DENIED"
        message = "authentication required: sign in with a valid user and password" if response.status_code == 401 \
            else "permission denied"
        body = json.dumps({"error_code": code, "message": message})
        new = Response(body, status=response.status_code, mimetype="application/json")
        if "WWW-Authenticate" in response.headers:
            new.headers["WWW-Authenticate"] = response.headers["WWW-Authenticate"]
        return new
    return response


def register(app: Flask, auth_module) -> None:
    """Add the routes to MLflow's Flask app and declare them to basic-auth."""
    for path, method, handler, rule in ROUTES:
        for prefix in (PREFIX, AJAX_PREFIX):
            app.add_url_rule(
                prefix + path, endpoint=f"mlgov{prefix}{path}", view_func=_view(handler, rule), methods=[method]
            )
            auth_module.BEFORE_REQUEST_VALIDATORS[(prefix + path, method)] = _authenticated_only
    app.after_request(_json_auth_errors)
