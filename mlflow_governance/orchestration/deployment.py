"""Recording where a version really runs, read from its running sidecar's ``/status``.

The deployment step (ModelDeployer, Approved for Deployment: ``endpoint``, ``deployment_space``,
``deployment_platform``) and the monitoring step (ModelMonitor, Approved for Productionization:
``wrapper_endpoint``, ``wrapper_name``, ``monitoring_url``) are filled from the sidecar's own
``/status``, so the governance record names the endpoint that answers for that version, not a
URL typed by hand. Refused (RESOURCE_CONFLICT) when the sidecar does not answer, or answers for
another model or version; the governance check comes first, before the sidecar is contacted.
Used by ``mlgov deploy`` and the demo.
"""

from __future__ import annotations

from typing import Any

import requests

from mlflow_governance.client.rest import mlflow_error
from mlflow_governance.core import workflow
from mlflow_governance.sidecar import client_credentials


def sidecar_status(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The sidecar's ``/status``; a refusal naming the URL when it does not answer as one."""
    base = url.rstrip("/")
    try:
        resp = requests.get(base + "/status", timeout=timeout, auth=client_credentials())
        body = resp.json()
    except requests.RequestException:
        raise mlflow_error(f"the sidecar at {base} does not answer (is `mlgov serve` running there?)",
                           "RESOURCE_CONFLICT") from None
    except ValueError:
        raise mlflow_error(f"{base}/status is not a scoring sidecar's status (not JSON)",
                           "RESOURCE_CONFLICT") from None
    if resp.status_code != 200 or not isinstance(body, dict) or "model" not in body:
        raise mlflow_error(f"{base}/status answered HTTP {resp.status_code}, not a sidecar's status",
                           "RESOURCE_CONFLICT")
    return body


def fields_from_status(stage: str, url: str, status: dict[str, Any], space: str | None) -> dict[str, str]:
    """The fields of the step ``stage`` waits for, from the sidecar's ``status``."""
    base = url.rstrip("/")
    endpoint = status.get("endpoint") or base + "/invocations"
    if stage == workflow.APPROVED_FOR_DEPLOYMENT:
        mode = "staging" if status.get("staging") else "production"
        return {
            "endpoint": endpoint,
            "deployment_space": space or f"{base} ({mode} sidecar)",
            "deployment_platform": "mlflow-governance scoring sidecar (gunicorn; payload logging, usability gate, "
                                   "monitors)",
        }
    return {
        "wrapper_endpoint": endpoint,
        "wrapper_name": f"{status['model']} v{status['version']} governed sidecar",
        "monitoring_url": base + "/status",
    }


def record_from_sidecar(client: Any, model: str, version: int, url: str,
                        space: str | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """Fill the step ``version`` waits for from the sidecar at ``url``; (the fields, the transition's result)."""
    stage = client.status(model, version)["version"]["stage"]
    if stage not in (workflow.APPROVED_FOR_DEPLOYMENT, workflow.APPROVED_FOR_PRODUCTIONIZATION):
        raise mlflow_error(
            f"version {version} of {model!r} is {stage!r}: mlgov deploy records the deployment in "
            f"{workflow.APPROVED_FOR_DEPLOYMENT!r} and the monitoring wrapper in "
            f"{workflow.APPROVED_FOR_PRODUCTIONIZATION!r}", "RESOURCE_CONFLICT")
    client.require(model, workflow.SUBMIT, version)
    status = sidecar_status(url)
    if status.get("model") != model or status.get("version") != version:
        raise mlflow_error(
            f"the sidecar at {url.rstrip('/')} serves {status.get('model')!r} version {status.get('version')}, "
            f"not {model!r} version {version}", "RESOURCE_CONFLICT")
    fields = fields_from_status(stage, url, status, space)
    result = client.transition(model, workflow.SUBMIT, version, fields,
                               comment=f"recorded from the running sidecar's {url.rstrip('/')}/status")
    return fields, result
