"""The approvals page at ``/governance/``: the signed-in user's inbox (their own waiting tasks
first, then what waits for others) and each model's record.

Server-rendered HTML (Jinja templates shipped in the package), plain HTML forms and no script.
The forms post to `ACT_PAGE`, which acts as the signed-in user through the same engine as the
REST API and the CLI, then redirects back to the model page with a one-time confirmation
(post/redirect/get); a refused action re-renders the page with the reason and what was typed.
Which forms a user sees is decided by the core's `engine.may` (the user acting, inputs aside)
and MLflow's per-model permission (no EDIT: no forms). Errors on these routes are HTML pages
(400, 403, 404, 500), never JSON or a traceback; the REST API keeps MLflow's JSON errors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache, wraps
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import sqlalchemy as sa
from flask import Flask, Response, flash, g, get_flashed_messages, redirect, request
from markupsafe import Markup, escape
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from werkzeug.exceptions import HTTPException

from mlflow_governance.core import engine, tags, workflow
from mlflow_governance.core.errors import GovernanceError, leaks_database_text
from mlflow_governance.server import outage, permissions
from mlflow_governance.server.api import MAX_INT, current_user, visible_tasks
from mlflow_governance.server.databases import governed_store

_log = logging.getLogger(__name__)
PAGE = "/governance/"
MODEL_PAGE = "/governance/model"
ACT_PAGE = "/governance/model/act"
# Form keys that are not governance fields.
RESERVED = frozenset({"csrf_token", "model", "action", "version", "comment", "intent", "form_id"})
PAST_TENSE = {
    workflow.APPROVE: "Approved",
    workflow.REJECT: "Rejected",
    workflow.SUBMIT: "Submitted",
    workflow.ACCEPT: "Accepted",
    workflow.DECOMMISSION: "Decommissioned",
}
TITLES = {400: "Bad request", 401: "Sign-in required", 403: "Permission denied", 404: "Not found",
          409: "Conflict", 503: "Temporarily unavailable"}


class PageError(Exception):
    """An error shown as an HTML page: HTTP status, one-line message, and where to go next."""

    def __init__(self, status: int, message: str, links: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.links = links or []


# --- rendering -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlflow_governance", "templates"), autoescape=True, trim_blocks=True
    )
    env.filters["uri"] = linked
    return env


def render_template(name: str, http_status: int = 200, **context: Any) -> Response:
    from flask_wtf.csrf import generate_csrf

    context.setdefault("flashes", get_flashed_messages(with_categories=True))
    context.setdefault("csrf_token", generate_csrf)
    context.setdefault("inbox", PAGE)
    html = _templates().get_template(name).render(**context)
    return Response(html, status=http_status, mimetype="text/html")


def outage_page(message: str) -> Response:
    """The 503 page of a request whose database failed (`outage.answer_outage`)."""
    return render_template("error.html", 503, code=503, title=TITLES[503], message=message, user=None, roles=[],
                           links=[("Back to the inbox", PAGE)], flashes=[])


def _error_page(status: int, message: str, links: list[tuple[str, str]] | None = None) -> Response:
    try:
        user = current_user()
        roles = sorted(engine.roles_of(governed_store(), user))
    except Exception:  # the error page must render whatever failed
        user, roles = None, []
    title = TITLES.get(status, "Server error" if status >= 500 else "Error")
    return render_template("error.html", status, code=status, title=title, message=message, user=user, roles=roles,
                           links=[*links, ("Back to the inbox", PAGE)] if links else [("Back to the inbox", PAGE)],
                           flashes=[])


def _safe(exc: MlflowException) -> MlflowException:
    """The exception to show: database failures become a client-safe message (as in the REST API)."""
    if not isinstance(exc, GovernanceError) and (
        isinstance(exc.__cause__, sa.exc.SQLAlchemyError) or leaks_database_text(exc.message)
    ):
        return outage.client_error(exc)
    return exc


def _message(exc: MlflowException) -> str:
    return exc.reason if isinstance(exc, GovernanceError) else exc.message


def html_errors(view: Callable[[], Response]) -> Callable[[], Response]:
    """Page routes answer errors with an HTML page: never MLflow's JSON, never a traceback."""

    @wraps(view)
    def wrapper() -> Response:
        try:
            return view()
        except PageError as exc:
            return _error_page(exc.status, exc.message, exc.links)
        except HTTPException as exc:  # e.g. a request body too large to parse
            return _error_page(exc.code or 400, exc.description or exc.name)
        except sa.exc.SQLAlchemyError as exc:
            safe = outage.client_error(exc)
            return _error_page(safe.get_http_status_code(), safe.message)
        except MlflowException as exc:
            safe = _safe(exc)
            return _error_page(safe.get_http_status_code(), _message(safe))
        except Exception:
            _log.exception("approvals page failed")
            return _error_page(500, "The page failed on the server; the details are in the server log.")

    return wrapper


# --- values ----------------------------------------------------------------------------------


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


_RUN_URI = re.compile(r"runs:/([0-9A-Za-z_-]+)(?:/(.*))?")
_MODEL_VERSION_URI = re.compile(r"models:/([^/]+)/([1-9][0-9]*)")


def _run_page(run_id: str, path: str) -> str:
    """The MLflow UI's page of a run (its artifact when ``path``): the experiment's run page when the
    user may read the experiment, else MLflow's direct run route (which resolves it, or refuses)."""
    cache = g.setdefault("mlgov_run_pages", {})
    if run_id not in cache:
        experiment_id = None
        try:
            from mlflow.server import auth
            from mlflow.server.handlers import _get_tracking_store

            found = _get_tracking_store().get_run(run_id).info.experiment_id
            if permissions.is_admin() or auth._get_experiment_permission(found, current_user()).can_read:
                experiment_id = found
        except Exception:  # unknown run, or no permission decision: MLflow's UI decides
            experiment_id = None
        cache[run_id] = experiment_id
    experiment_id = cache[run_id]
    if experiment_id is None:
        return f"/#/runs/{quote(run_id, safe='')}"
    page = f"/#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(run_id, safe='')}"
    return page + (f"/artifacts/{quote(path.strip('/'), safe='/')}" if path.strip("/") else "")


def href_of(value: str) -> str | None:
    """Where a recorded value links to, or None (shown as text): ``http(s)://`` URLs as they are,
    ``runs:/RUN_ID/path`` to the run in the MLflow UI, ``models:/NAME/N`` to the version's page."""
    text = value.strip()
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    if text.lower().startswith(("http://", "https://")):
        if any(c.isspace() for c in text):
            return None
        try:
            parts = urlsplit(text)
        except ValueError:
            return None
        return text if parts.scheme.lower() in ("http", "https") and parts.netloc else None
    run = _RUN_URI.fullmatch(text)
    if run:
        return _run_page(run.group(1), run.group(2) or "")
    version = _MODEL_VERSION_URI.fullmatch(text)
    if version:
        return f"/#/models/{quote(version.group(1), safe='')}/versions/{version.group(2)}"
    return None


def linked(value: Any) -> Markup:
    """A recorded value as HTML: a link when the server can resolve it (`href_of`), else escaped text."""
    text = "" if value is None else str(value)
    href = href_of(text)
    if href is None:
        return escape(text)
    if href.startswith("/"):
        return Markup('<a class="uri" href="{}">{}</a>').format(href, text)
    return Markup('<a class="uri external" href="{}" rel="noopener noreferrer" target="_blank">{}</a>').format(
        href, text)


def _history_row(r: dict[str, Any]) -> dict[str, Any]:
    """An audit row for the page: who acted in which role, or what was refused and why.

    A refused row's ``role`` is the role the step required, not one the actor held: it is shown
    as "refused: needs ROLE" in the outcome, never in the actor's role column.
    """
    refused = r["outcome"] == "refused"
    reason = r.get("reason") or ""
    required = r.get("role")
    if refused:
        if required and f"the {required} role is required" in reason:
            outcome = f"refused: needs {required}"
        else:
            outcome = f"refused: {reason}" if reason else "refused"
    else:
        outcome = "done" if r["outcome"] == "allowed" else r["outcome"]
    return {
        **r,
        "when": _when(r["ts"]),
        "when_iso": datetime.fromtimestamp(r["ts"] / 1000, tz=timezone.utc).isoformat(timespec="seconds"),
        "acted_as": None if refused else required,  # the role the actor acted in
        "refused": refused,
        "outcome_text": outcome,
        "detail": reason if refused and outcome != f"refused: {reason}" else "",  # the full reason, once
    }


# --- the inbox -------------------------------------------------------------------------------


def _governed_models(store) -> list[dict[str, Any]]:
    """Governed models the signed-in user may read (MLflow's per-model permission)."""
    found = store.search_registered_models(filter_string="tags.`mlgov.inventory_id` LIKE 'MOD_%'", max_results=1000)
    allowed = permissions.readable(m.name for m in found)
    return [
        {
            "name": m.name,
            "inventory_id": m.tags.get(tags.TAG_INVENTORY_ID),
            "stage": m.tags.get(tags.TAG_STAGE),
            "assignee_role": m.tags.get(tags.TAG_ASSIGNEE),
        }
        for m in found
        if m.name in allowed
    ]


def _waiting_for_others(store, user: str, mine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every other task waiting for a role, on the models the user may read (not theirs to do)."""
    own = {(t["model"], t["version"]) for t in mine}
    found = [t for role in workflow.GOVERNANCE_ROLES for t in visible_tasks(store, role=role, user=user)
             if (t["model"], t["version"]) not in own]
    return sorted(found, key=lambda t: (t["model"], t["version"] or 0))


@html_errors
def inbox() -> Response:
    user = current_user()
    store = governed_store()
    # What the user may really do (MLflow's permission to act on the model included) first, under
    # its own heading; then what waits for others.
    mine = [t for t in visible_tasks(store, role=None, user=user) if permissions.allows(t["model"], permissions.EDIT)]
    return render_template(
        "inbox.html",
        user=user,
        roles=sorted(engine.roles_of(store, user)),
        tasks=mine,
        others=_waiting_for_others(store, user, mine),
        models=_governed_models(store),
        model_page=MODEL_PAGE,
    )


# --- the model page --------------------------------------------------------------------------


def _form(row: workflow.Transition, form_id: str, version: int | None, fields: dict[str, str],
          retry: dict[str, Any] | None) -> dict[str, Any]:
    kept = retry if retry and retry.get("form_id") == form_id else None
    typed = kept["fields"] if kept else {}
    return {
        "id": form_id,
        "action": row.action,
        "dest": row.dest,
        "role": row.role,
        "version": version,
        "needs_comment": row.needs_comment,
        "comment": kept["comment"] if kept else "",
        "typed_version": kept.get("version_text", "") if kept else "",
        "error": kept.get("error") if kept else None,
        "fields": [
            {"name": n, "value": typed.get(n, fields.get(n, "")), "saved": fields.get(n, ""),
             "help": workflow.FIELDS[n].description}
            for n in row.fields
        ],
    }


def _forms(store, model: str, entity: dict[str, Any], version: int | None,
           retry: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The actions the signed-in user may take on an entity now (`engine.may`, inputs aside)."""
    scope = workflow.VERSION_SCOPE if version is not None else workflow.MODEL_SCOPE
    forms = []
    for row in workflow.actions_from(entity.get("stage") or "", scope):
        if engine.may(store, model, row.action, version, inputs=False)["allowed"]:
            prefix = f"v{version}" if version is not None else "m"
            forms.append(_form(row, f"{prefix}-{row.action}", version, entity.get("fields") or {}, retry))
    return forms


def _status(store, name: str) -> dict[str, Any]:
    try:
        status = engine.status(store, name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise PageError(404, f"There is no model named {name!r} in the registry.") from None
        raise
    if not status["governed"]:
        raise PageError(404, f"Model {name!r} is in the registry but not under governance (initiate it first).",
                        [("Open it in the MLflow UI", f"/#/models/{quote(name, safe='')}")])
    return status


def _model_name(value: str | None) -> str:
    name = (value or "").strip()
    if not name:
        raise PageError(400, "Which model? The page needs ?name=MODEL (follow a link from the inbox).")
    return name


def _model_response(name: str, retry: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    user = current_user()
    permissions.require(name, permissions.READ, user)
    store = governed_store()
    status = _status(store, name)
    roles = engine.roles_of(store, user)
    # No forms for a user MLflow lets read the model but not act on it.
    may_act = permissions.allows(name, permissions.EDIT)
    versions = [
        {**v, "forms": _forms(store, name, v, v["version"], retry) if may_act else []}
        for v in status["versions"]
    ]
    entry = None
    if may_act and engine.may(store, name, workflow.SUBMIT, None, new_version=True, inputs=False)["allowed"]:
        # A version registered but not yet submitted: the developer names it and submits it.
        row = workflow.find_transition(workflow.VERSION_ENTRY_STAGE, workflow.SUBMIT, workflow.VERSION_SCOPE)
        entry = _form(row, "new-submit", None, {}, retry)
    return render_template(
        "model.html",
        status_code,
        user=user,
        roles=sorted(roles),
        status=status,
        may_act=may_act,
        model_forms=_forms(store, name, status, None, retry) if may_act else [],
        versions=versions,
        entry=entry,
        history=[_history_row(r) for r in engine.history(store, name)],
        refusal=retry.get("error") if retry else None,
        act_page=ACT_PAGE,
    )


@html_errors
def model_page() -> Response:
    return _model_response(_model_name(request.args.get("name")))


def _form_version(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_INT:
        raise MlflowException(f"version must be a whole number from 1 to {MAX_INT}, not {text!r}",
                              error_code=INVALID_PARAMETER_VALUE)
    return int(text)


def _confirmation(action: str, model: str, version: int | None, result: dict[str, Any]) -> str:
    entity = result.get("version") if version is not None else result
    entity = entity or {}
    what = f"version {version} of {model}" if version is not None else f"model {model}"
    text = f"{PAST_TENSE.get(action, action.capitalize())}: {what} is now {entity.get('stage')!r}"
    if action in (workflow.ACCEPT, workflow.REJECT) and entity.get("usability"):
        text += f" (usability {entity['usability']})"
    waiting = entity.get("assignee_role")
    return text + (f", waiting for {waiting}." if waiting else ".")


@html_errors
def act_page() -> Response:
    """A form's post: act (or save its fields) as the signed-in user, then redirect to the model page
    with a confirmation; refused, the page again with the reason and everything that was typed."""
    form = request.form
    name = _model_name(form.get("model"))
    action = (form.get("action") or "").strip().lower()
    if action not in workflow.ACTIONS:
        raise PageError(400, f"Unknown action {action!r}; the forms offer {', '.join(workflow.ACTIONS)}.")
    intent = form.get("intent") or "act"
    if intent not in ("act", "save"):
        raise PageError(400, f"Unknown intent {intent!r}: a form either acts or saves its fields.")
    user = current_user()
    permissions.require(name, permissions.READ, user)
    version_text = form.get("version") or ""
    typed = {k: v for k, v in form.items() if k not in RESERVED and k in workflow.FIELDS}
    fields = {k: v for k, v in typed.items() if v.strip()}
    comment = form.get("comment") or ""
    retry = {"form_id": form.get("form_id") or "", "fields": typed, "comment": comment,
             "version_text": version_text}
    from flask_wtf.csrf import CSRFError, ValidationError, validate_csrf

    try:
        validate_csrf(form.get("csrf_token"))
    except (ValidationError, CSRFError):
        retry["error"] = ("the form was not accepted (it was open too long, or it did not come from this page): "
                          "check the values and submit again")
        return _model_response(name, retry, 400)
    permissions.require(name, permissions.EDIT, user)
    store = governed_store()
    _status(store, name)  # 404 page for an unknown or ungoverned model
    try:
        version = _form_version(version_text)
        if intent == "save":
            message = _save_fields(store, name, version, fields)
        else:
            result = engine.act(store, name, action, version, fields, comment.strip() or None)
            message = _confirmation(action, name, version, result)
    except MlflowException as exc:
        safe = _safe(exc)
        if safe.get_http_status_code() >= 500:
            raise safe from None
        retry["error"] = _message(safe)
        return _model_response(name, retry, safe.get_http_status_code())
    flash(message, "ok")
    return redirect(f"{MODEL_PAGE}?name={quote(name, safe='')}", code=303)


def _save_fields(store, model: str, version: int | None, fields: dict[str, str]) -> str:
    current = engine.status(store, model, version)
    entity = current.get("version") if version is not None else current
    saved = (entity or {}).get("fields") or {}
    changed = {k: v for k, v in fields.items() if saved.get(k) != v}
    if not changed:
        return "Nothing to save: the fields already hold these values."
    for field_name, value in changed.items():
        engine.set_field(store, model, field_name, value, version)
    what = f"version {version} of {model}" if version is not None else f"model {model}"
    return f"Saved on {what}: {', '.join(changed)}."


def act_page_get() -> Response:
    """The address of a re-rendered refusal, opened again: back to the model page (nothing is posted)."""
    name = (request.args.get("name") or "").strip()
    return redirect(f"{MODEL_PAGE}?name={quote(name, safe='')}" if name else PAGE, code=303)


def register(app: Flask, auth_module) -> None:
    """Serve the pages from MLflow's Flask app, behind basic-auth (being signed in is enough:
    each page checks MLflow's per-model permission, and governance decides the actions)."""
    app.add_url_rule(PAGE, endpoint="mlgov_inbox", view_func=inbox, methods=["GET"])
    app.add_url_rule(MODEL_PAGE, endpoint="mlgov_model", view_func=model_page, methods=["GET"])
    app.add_url_rule(ACT_PAGE, endpoint="mlgov_act", view_func=act_page, methods=["POST"])
    app.add_url_rule(ACT_PAGE, endpoint="mlgov_act_get", view_func=act_page_get, methods=["GET"])
    for path, method in ((PAGE, "GET"), (MODEL_PAGE, "GET"), (ACT_PAGE, "POST"), (ACT_PAGE, "GET")):
        auth_module.BEFORE_REQUEST_VALIDATORS[(path, method)] = lambda: True

