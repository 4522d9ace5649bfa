"""The approvals page at ``/governance/``: the signed-in user's inbox and each model's record.

Server-rendered HTML (Jinja templates shipped in the package). The forms post to the same REST
endpoints as the CLI, with the browser's own credentials, so the page holds no logic of its own:
which actions it offers comes from `workflow.actions_from` and the user's roles.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import jinja2
from flask import Flask, Response, request
from mlflow.exceptions import MlflowException
from mlflow.server.handlers import catch_mlflow_exception

from mlflow_governance import engine, tags, workflow
from mlflow_governance.server import permissions
from mlflow_governance.server.api import AJAX_PREFIX, current_user, governed_store, visible_tasks

PAGE = "/governance/"
MODEL_PAGE = "/governance/model"


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("mlflow_governance", "templates"), autoescape=True, trim_blocks=True
    )


def render_template(name: str, **context: Any) -> Response:
    return Response(_templates().get_template(name).render(**context), mimetype="text/html")


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


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


def _forms(entity: dict[str, Any], scope: str, roles: frozenset[str]) -> list[dict[str, Any]]:
    """The actions this user may try on an entity in its stage, with the fields each needs."""
    forms = []
    for row in workflow.actions_from(entity.get("stage") or "", scope):
        if row.role not in roles:
            continue
        forms.append(
            {
                "action": row.action,
                "dest": row.dest,
                "role": row.role,
                "needs_comment": row.needs_comment,
                "fields": [
                    {"name": n, "value": entity.get("fields", {}).get(n, ""), "help": workflow.FIELDS[n].description}
                    for n in row.fields
                ],
            }
        )
    return forms


@catch_mlflow_exception
def inbox() -> Response:
    user = current_user()
    store = governed_store()
    roles = engine.roles_of(store, user)
    return render_template(
        "inbox.html",
        user=user,
        roles=sorted(roles),
        tasks=visible_tasks(store, role=None, user=user),
        models=_governed_models(store),
        model_page=MODEL_PAGE,
    )


@catch_mlflow_exception
def model_page() -> Response:
    user = current_user()
    name = request.args.get("name", "").strip()
    if not name:
        raise MlflowException.invalid_parameter_value("missing parameter 'name'")
    permissions.require(name, permissions.READ, user)
    store = governed_store()
    # No forms for a user MLflow lets read the model but not act on it.
    roles = engine.roles_of(store, user)
    acting_roles = roles if permissions.allows(name, permissions.EDIT) else frozenset()
    status = engine.status(store, name)
    history = engine.history(store, name)
    for row in history:
        row["when"] = _when(row["ts"])
    versions = [
        {**v, "forms": _forms(v, workflow.VERSION_SCOPE, acting_roles)}
        for v in status["versions"]
    ]
    # A version registered but not yet submitted is offered to the developer too.
    entry = None
    if status["stage"] == workflow.VERSION_ENTRY_STAGE:
        entry = {"stage": workflow.VERSION_ENTRY_STAGE, "fields": {}}
        entry["forms"] = _forms(entry, workflow.VERSION_SCOPE, acting_roles)
    return render_template(
        "model.html",
        user=user,
        roles=sorted(roles),
        status=status,
        model_forms=_forms(status, workflow.MODEL_SCOPE, acting_roles),
        versions=versions,
        entry=entry,
        history=history,
        api=AJAX_PREFIX,
        inbox=PAGE,
    )


def register(app: Flask, auth_module) -> None:
    """Serve the pages from MLflow's Flask app, behind basic-auth."""
    app.add_url_rule(PAGE, endpoint="mlgov_inbox", view_func=inbox, methods=["GET"])
    app.add_url_rule(MODEL_PAGE, endpoint="mlgov_model", view_func=model_page, methods=["GET"])
    for path in (PAGE, MODEL_PAGE):
        auth_module.BEFORE_REQUEST_VALIDATORS[(path, "GET")] = lambda: True
