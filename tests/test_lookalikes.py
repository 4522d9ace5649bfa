"""Look-alikes of the production alias and of governance tag keys are refused on governed models."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from tests.conftest import ROLE_USER, acting, unique
from tests.governance_helpers import walk_version_to


@pytest.mark.parametrize("alias", ["Production", "PRODUCTION", "pRoDuCtIoN", "\uff50roduction"])
def test_production_alias_lookalikes_are_refused(alias, registry, tmp_path):
    client = GovernanceClient()
    model = unique("alias")
    version = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
    before = len(client.audit(model))
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        MlflowClient().set_registered_model_alias(model, alias, version)
    assert exc.value.error_code == "PERMISSION_DENIED", exc.value.message
    assert "looks like the production alias" in exc.value.message
    assert MlflowClient().get_registered_model(model).aliases == {}
    rows = client.audit(model)
    assert len(rows) == before + 1 and rows[-1]["outcome"] == "refused" and rows[-1]["action"] == "set_alias"


def test_lookalike_alias_refused_even_on_a_production_version(registry, tmp_path):
    client = GovernanceClient()
    model = unique("alias-rtu")
    version = walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        MlflowClient().set_registered_model_alias(model, "PRODUCTION", version)
    assert exc.value.error_code == "PERMISSION_DENIED" and "looks like the production alias" in exc.value.message
    assert MlflowClient().get_registered_model(model).aliases == {"production": version}
    rows = client.audit(model)
    assert rows[-1]["outcome"] == "refused" and rows[-1]["action"] == "set_alias"


def test_configured_alias_is_guarded_case_insensitively(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("MLGOV_PRODUCTION_ALIAS", "champion")
    client = GovernanceClient()
    model = unique("champ")
    version = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
    for alias in ("champion", "Champion", "CHAMPION"):
        with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException):
            MlflowClient().set_registered_model_alias(model, alias, version)
    assert MlflowClient().get_registered_model(model).aliases == {}


def test_ungoverned_models_keep_mlflows_alias_semantics(registry, tmp_path):
    model = unique("plain")
    MlflowClient().create_registered_model(model)
    version = int(MlflowClient().create_model_version(model, source=str(tmp_path)).version)
    MlflowClient().set_registered_model_alias(model, "Production", version)
    assert MlflowClient().get_registered_model(model).aliases == {"Production": version}


def test_initiate_refuses_a_model_with_a_lookalike_production_alias(registry, tmp_path):
    model = unique("pre-alias")
    MlflowClient().create_registered_model(model)
    version = int(MlflowClient().create_model_version(model, source=str(tmp_path)).version)
    MlflowClient().set_registered_model_alias(model, "PRODUCTION", version)
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException) as exc:
        GovernanceClient().initiate(model, "x", "low")
    assert exc.value.error_code == "RESOURCE_CONFLICT" and "'PRODUCTION' alias" in exc.value.message


@pytest.mark.parametrize("key", ["\uff4dlgov.stage", "MLGOV.stage", "Mlgov.usability", " mlgov.stage",
                                 "mlgov\u200b.stage", "\uff2d\uff2c\uff27\uff2f\uff36.stage"])
def test_governance_key_lookalikes_are_refused(key, registry, tmp_path):
    client = GovernanceClient()
    model = unique("keys")
    version = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
    mlflow = MlflowClient()
    with acting(ROLE_USER[wf.MODEL_DEVELOPER]), pytest.raises(MlflowException) as exc:
        mlflow.set_model_version_tag(model, version, key, wf.READY_TO_USE)
    assert exc.value.error_code == "PERMISSION_DENIED", exc.value.message
    with acting(ROLE_USER[wf.MODEL_OWNER]), pytest.raises(MlflowException):
        mlflow.set_registered_model_tag(model, key, wf.READY_TO_USE)
    with pytest.raises(MlflowException):
        mlflow.create_registered_model(unique("new"), tags={key: "x"})
    assert key not in mlflow.get_model_version(model, version).tags
    assert key not in mlflow.get_registered_model(model).tags
