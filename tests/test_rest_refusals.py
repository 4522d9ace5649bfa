"""The registry's refusals hold through a real `mlflow server` process (REST, no auth app)."""

from __future__ import annotations

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from tests.conftest import unique
from tests.governance_helpers import walk_version_to
from tests.servers import mlflow_server


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request, tmp_path):
    """A governed model in PRE_PRODUCTION_REVIEW, and a plain mlflow server on its registry."""
    registry_uri = request.getfixturevalue("sqlite_registry" if request.param == "sqlite" else "pg_registry")
    backend = registry_uri.removeprefix("governed-")
    model = unique("rest")
    version = walk_version_to(GovernanceClient(), model, wf.PRE_PRODUCTION_REVIEW, tmp_path)
    with mlflow_server(tmp_path, backend, registry_uri) as url:
        yield url, model, version


def call(url: str, path: str, body: dict) -> requests.Response:
    method = "DELETE" if path.endswith(("delete-tag", "delete")) else "POST"
    return requests.request(method, f"{url}/api/2.0/mlflow/{path}", json=body, timeout=30)


def test_refusals_over_rest(served):
    url, model, version = served
    before = GovernanceClient().status(model, version)
    cases = [
        ("registered-models/set-tag", {"name": model, "key": "mlgov.stage", "value": wf.READY_TO_USE}, 403),
        ("registered-models/delete-tag", {"name": model, "key": "mlgov.inventory_id"}, 403),
        ("model-versions/set-tag", {"name": model, "version": str(version), "key": "mlgov.usability",
                                    "value": "accept"}, 403),
        ("registered-models/alias", {"name": model, "alias": "production", "version": str(version)}, 403),
        ("model-versions/transition-stage", {"name": model, "version": str(version), "stage": "Production",
                                             "archive_existing_versions": False}, 403),
        # An action needs a known user: this server has no authentication, so nobody is acting.
        ("registered-models/set-tag", {"name": model, "key": "mlgov.action", "value": "approve"}, 401),
        ("model-versions/set-tag", {"name": model, "version": str(version), "key": "mlgov.action",
                                    "value": "approve"}, 401),
    ]
    for path, body, status in cases:
        r = call(url, path, body)
        assert r.status_code == status, (path, r.text)
        err = r.json()
        assert err["error_code"] in ("PERMISSION_DENIED", "UNAUTHENTICATED")
        assert err["message"].startswith("Governance:")
    for path, body in (
        ("model-versions/set-tag", {"name": model, "version": "abc", "key": "mlgov.action", "value": "approve"}),
        ("registered-models/alias", {"name": model, "alias": "production", "version": "abc"}),
        ("model-versions/transition-stage", {"name": model, "version": "abc", "stage": "Production",
                                             "archive_existing_versions": False}),
    ):
        r = call(url, path, body)
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", (path, r.text)
    r = call(url, "registered-models/delete", {"name": model})
    assert r.status_code == 403 and "decommission" in r.json()["message"]
    assert GovernanceClient().status(model, version) == before
    refused = [r for r in GovernanceClient().audit(model) if r["outcome"] == "refused"]
    assert len(refused) >= len(cases) + 1
    assert {r["actor"] for r in refused[-(len(cases) + 1):]} == {"(anonymous)"}


def test_python_client_over_rest_sees_mlflow_errors(served):
    url, model, version = served
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    with pytest.raises(MlflowException) as exc:
        client.set_registered_model_alias(model, "production", version)
    assert exc.value.error_code == "PERMISSION_DENIED"
    assert "Ready to Use" in exc.value.message
    # Ordinary registry use is untouched.
    client.set_registered_model_tag(model, "team", "ops")
    assert client.get_registered_model(model).tags["mlgov.stage"] == wf.APPROVED_FOR_DEVELOPMENT
    assert client.get_model_version(model, version).tags["mlgov.stage"] == wf.PRE_PRODUCTION_REVIEW
