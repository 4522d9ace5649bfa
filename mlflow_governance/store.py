"""The governed model-registry store: MLflow's SqlAlchemyStore that refuses what governance forbids.

Registered under the entry point group ``mlflow.model_registry_store`` for the schemes
``governed-sqlite`` and ``governed-postgresql`` (also ``governed-mysql``); the prefix is stripped
and the rest handed to MLflow's store. Every client (Python, REST through ``mlflow server``, the
MLflow UI) goes through these methods, so the rules hold whoever calls:

* ``mlgov.`` tags change only through transitions; writing ``mlgov.action`` performs one and
  ``mlgov.field.<name>`` fills a field, as the acting user;
* the production alias binds only to a Ready to Use version whose usability is ``accept``, and
  is not removed by hand; MLflow's deprecated ``Production`` stage is refused on governed models;
* governed models and Ready to Use versions are not deleted (nor governed models renamed).
"""

from __future__ import annotations

from typing import Any

from mlflow.entities.model_registry.model_version_stages import STAGE_PRODUCTION, get_canonical_stage
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

from mlflow_governance import config, engine, schema, workflow
from mlflow_governance.config import TAG_ACTION, TAG_FIELD_PREFIX, TAG_PREFIX, TAG_STAGE, TAG_USABILITY

SCHEME_PREFIX = "governed-"


def strip_scheme(uri: str) -> str:
    """``governed-sqlite:///x.db`` -> ``sqlite:///x.db``."""
    if not uri or not uri.startswith(SCHEME_PREFIX):
        raise MlflowException(
            f"not a governed registry URI: {uri!r} (expected governed-sqlite:///... or governed-postgresql://...)",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return uri[len(SCHEME_PREFIX) :]


def parse_action(value: str) -> tuple[str, str | None]:
    """``"reject: too risky"`` -> ``("reject", "too risky")``; ``"approve"`` -> ``("approve", None)``."""
    action, _, comment = (value or "").partition(":")
    return action.strip().lower(), (comment.strip() or None)


class GovernedSqlAlchemyStore(SqlAlchemyStore):
    """SqlAlchemyStore with governance enforced on every write path."""

    def __init__(self, store_uri: str | None = None, tracking_uri: str | None = None, **kwargs: Any):
        self.governed_uri = store_uri
        super().__init__(strip_scheme(store_uri or ""), **kwargs)
        schema.create_all(self.engine)

    # --- helpers ---------------------------------------------------------------------------

    def _is_governed(self, name: str) -> bool:
        with self.ManagedSessionMaker() as session:
            return engine.load(self, session, name).governed

    def _version_state(self, name: str, version) -> tuple[bool, str | None, str | None]:
        with self.ManagedSessionMaker() as session:
            e = engine.load(self, session, name, int(version))
            return e.governed, e.tags.get(TAG_STAGE), e.tags.get(TAG_USABILITY)

    def _refuse(self, message: str, action: str, kind: str = "permission", **context: Any) -> None:
        engine.refuse_and_record(self, kind, message, action=action, **context)

    def _refuse_governance_tags(self, tags, name: str, version=None) -> None:
        keys = [t.key for t in tags or [] if t.key.startswith(TAG_PREFIX)]
        if keys:
            self._refuse(
                f"governance tags ({', '.join(keys)}) cannot be set when creating a model or version; "
                "they change only through governance transitions",
                "tag_write",
                model=name,
                version=int(version) if version is not None else None,
            )

    def _tag_write(self, name: str, key: str, value: str | None, version=None) -> None:
        """Handle a write (or delete, ``value`` None) of an ``mlgov.`` tag."""
        version = int(version) if version is not None else None
        if value is not None and key == TAG_ACTION:
            action, comment = parse_action(value)
            engine.act(self, name, action, version=version, comment=comment)
            return
        if value is not None and key.startswith(TAG_FIELD_PREFIX):
            engine.set_field(self, name, key[len(TAG_FIELD_PREFIX) :], value, version=version)
            return
        verb = "delete" if value is None else "write"
        self._refuse(
            f"tag {key!r} is governance state and cannot be {verb}d directly: it changes only through a "
            f"transition (set {TAG_ACTION}) or a field ({TAG_FIELD_PREFIX}<name>) by an allowed role",
            "tag_" + verb,
            model=name,
            version=version,
            fields={key: value or ""},
        )

    # --- registered models -----------------------------------------------------------------

    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        self._refuse_governance_tags(tags, name)
        return super().create_registered_model(name, tags, description, deployment_job_id)

    def rename_registered_model(self, name, new_name):
        if self._is_governed(name):
            self._refuse(f"model {name!r} is governed and cannot be renamed", "rename", model=name)
        return super().rename_registered_model(name, new_name)

    def delete_registered_model(self, name):
        if self._is_governed(name):
            self._refuse(
                f"model {name!r} is governed and cannot be deleted: the ModelOwner decommissions it instead",
                "delete_model",
                model=name,
            )
        return super().delete_registered_model(name)

    def set_registered_model_tag(self, name, tag):
        if tag.key.startswith(TAG_PREFIX):
            return self._tag_write(name, tag.key, tag.value)
        return super().set_registered_model_tag(name, tag)

    def delete_registered_model_tag(self, name, key):
        if key.startswith(TAG_PREFIX):
            return self._tag_write(name, key, None)
        return super().delete_registered_model_tag(name, key)

    # --- model versions --------------------------------------------------------------------

    def create_model_version(self, name, source, run_id=None, tags=None, *args, **kwargs):
        self._refuse_governance_tags(tags, name)
        return super().create_model_version(name, source, run_id, tags, *args, **kwargs)

    def set_model_version_tag(self, name, version, tag):
        if tag.key.startswith(TAG_PREFIX):
            return self._tag_write(name, tag.key, tag.value, version)
        return super().set_model_version_tag(name, version, tag)

    def delete_model_version_tag(self, name, version, key):
        if key.startswith(TAG_PREFIX):
            return self._tag_write(name, key, None, version)
        return super().delete_model_version_tag(name, version, key)

    def delete_model_version(self, name, version):
        governed, stage, _ = self._version_state(name, version)
        if governed and stage == workflow.READY_TO_USE:
            self._refuse(
                f"version {version} of {name!r} is Ready to Use and cannot be deleted: decommission it first",
                "delete_version",
                model=name,
                version=int(version),
                stage=stage,
            )
        return super().delete_model_version(name, version)

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions=False):
        if get_canonical_stage(stage) == STAGE_PRODUCTION and self._is_governed(name):
            self._refuse(
                f"{name!r} is governed: MLflow's deprecated 'Production' stage is not used; a version "
                f"reaches production through the workflow ({workflow.READY_TO_USE!r} and the "
                f"{config.production_alias()!r} alias)",
                "transition_stage",
                model=name,
                version=int(version),
            )
        return super().transition_model_version_stage(name, version, stage, archive_existing_versions)

    # --- aliases ---------------------------------------------------------------------------

    def set_registered_model_alias(self, name, alias, version):
        if alias == config.production_alias():
            governed, stage, usability = self._version_state(name, version)
            if governed and (stage != workflow.READY_TO_USE or usability != workflow.USABILITY_ACCEPT):
                self._refuse(
                    f"the {alias!r} alias may only point at a version that is {workflow.READY_TO_USE!r} "
                    f"with usability 'accept'; version {version} is {stage or 'not in the workflow'!r}"
                    f" (usability {usability or 'none'})",
                    "set_alias",
                    model=name,
                    version=int(version),
                    stage=stage,
                )
        return super().set_registered_model_alias(name, alias, version)

    def delete_registered_model_alias(self, name, alias):
        if alias == config.production_alias() and self._is_governed(name):
            self._refuse(
                f"the {alias!r} alias of governed model {name!r} is removed only by decommissioning",
                "delete_alias",
                model=name,
            )
        return super().delete_registered_model_alias(name, alias)


def governed_store_builder(store_uri: str | None = None, tracking_uri: str | None = None) -> GovernedSqlAlchemyStore:
    """Entry-point target: MLflow calls it with ``store_uri`` (and ``tracking_uri`` when it can)."""
    return GovernedSqlAlchemyStore(store_uri=store_uri, tracking_uri=tracking_uri)
