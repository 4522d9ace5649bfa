"""`GovernanceClient`: the one API that the CLI, the MLproject steps and scripts record through.

The registry is found the MLflow way (``MLFLOW_REGISTRY_URI``, else ``MLFLOW_TRACKING_URI``).
A ``governed-sqlite``/``governed-postgresql`` URI is used directly through the governed store,
acting as ``MLGOV_USER`` (development mode); an ``http(s)`` URI talks to a governance server
(``mlflow server --app-name governance``) with ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``.
"""

from __future__ import annotations

import sys
from typing import Any

from mlflow_governance.client.rest import mlflow_error
from mlflow_governance.core import environment_variables as ev

_SERVER_SCHEMES = ("http://", "https://")


def resolve_registry_uri(registry_uri: str | None = None) -> str:
    """The registry URI as MLflow resolves it.

    A governance server's URL is taken as it is, without importing MLflow (a command against a
    server then starts in a fraction of the time): given, or in MLFLOW_REGISTRY_URI, else in
    MLFLOW_TRACKING_URI, as long as MLflow is not imported yet (once it is, ``mlflow.set_registry_uri``
    or ``set_tracking_uri`` may have chosen another). Anything else is MLflow's to resolve.
    """
    server = _server_url(registry_uri)
    if server:
        return server
    from mlflow.tracking._model_registry.utils import _resolve_registry_uri

    uri = _resolve_registry_uri(registry_uri)
    if not uri:
        raise mlflow_error(
            "no registry: set MLFLOW_REGISTRY_URI (or MLFLOW_TRACKING_URI) to a governed-sqlite:///, "
            "governed-postgresql:// or http(s):// governance server URI",
            "INVALID_PARAMETER_VALUE",
        )
    return uri


def _server_url(registry_uri: str | None) -> str | None:
    if registry_uri is None:
        if "mlflow" in sys.modules:
            return None
        registry_uri = ev.MLFLOW_REGISTRY_URI.get() or ev.MLFLOW_TRACKING_URI.get()
    return registry_uri if registry_uri and registry_uri.startswith(_SERVER_SCHEMES) else None


def governed_store(registry_uri: str | None = None):
    """The governed store behind a local registry URI; refuses a registry that is not governed."""
    from mlflow.tracking._model_registry.utils import _get_store

    from mlflow_governance.core.store import GovernedSqlAlchemyStore

    uri = resolve_registry_uri(registry_uri)
    # Check the scheme first: opening a plain registry would create its database as a side effect.
    store = _get_store(uri) if uri.startswith("governed-") else None
    if not isinstance(store, GovernedSqlAlchemyStore):
        raise mlflow_error(
            f"registry {uri!r} is not governed: use governed-sqlite:///PATH, governed-postgresql://... "
            "or the URL of a governance server",
            "INVALID_PARAMETER_VALUE",
        )
    return store


class GovernanceClient:
    """Governance operations on the configured registry (local store or remote server)."""

    def __init__(self, registry_uri: str | None = None):
        self.registry_uri = resolve_registry_uri(registry_uri)
        self._backend: Any = None

    @property
    def remote(self) -> bool:
        return self.registry_uri.startswith(_SERVER_SCHEMES)

    @property
    def backend(self) -> Any:
        if self._backend is None:
            if self.remote:
                from mlflow_governance.client.rest import RestGovernance, credentials_problem

                backend = RestGovernance(self.registry_uri)
                username = backend.auth[0] if backend.auth else None
                problem = credentials_problem(username, backend.auth[1] if backend.auth else None)
                if problem and (ev.MLGOV_USER.get() or username):
                    # A local-mode identity, or half the credentials: say what to set before any call.
                    raise mlflow_error(f"{problem} (registry {self.registry_uri})", "UNAUTHENTICATED")
                self._backend = backend
            else:
                self._backend = LocalGovernance(governed_store(self.registry_uri))
        return self._backend

    def initiate(self, model: str, use_case: str, risk_tier: str = "medium", business_owner: str | None = None) -> str:
        """Start governance of ``model``; returns its inventory id (MOD_000001...)."""
        return self.backend.initiate(model, use_case, risk_tier, business_owner)

    def transition(
        self,
        model: str,
        action: str,
        version: int | None = None,
        fields: dict[str, str] | None = None,
        comment: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Perform ``action`` (approve/reject/submit/accept/decommission) with optional fields.

        ``evidence`` (a monitor's breached figures, its run, its configuration digest) goes with
        the change's governance event, for the people it notifies.
        """
        return self.backend.transition(model, action, version, fields or {}, comment, evidence)

    def set_field(self, model: str, name: str, value: str, version: int | None = None) -> dict[str, Any]:
        """Fill one field of the current stage."""
        return self.backend.set_field(model, name, value, version)

    def may(
        self,
        model: str,
        action: str,
        version: int | None = None,
        new_version: bool = False,
        inputs: bool = False,
        fields: dict[str, str] | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Would the acting user be allowed ``action``? Writes nothing; the same check as `transition`.

        ``new_version`` asks about a version not registered yet (training, import); ``inputs``
        False leaves out the fields and comment the step still has to supply. Returns
        ``{"allowed": bool, "kind", "message", "role", "stage"}``.
        """
        return self.backend.may(model, action, version, new_version, inputs, fields or {}, comment)

    def require(
        self, model: str, action: str, version: int | None = None, new_version: bool = False
    ) -> dict[str, Any]:
        """`may`, raising the refusal (with its error code) when the action would not be allowed."""
        decision = self.may(model, action, version, new_version)
        if not decision["allowed"]:
            from mlflow_governance.core.errors import GovernanceError

            raise GovernanceError(decision["kind"], decision["message"])
        return decision

    def set_monitors(self, model: str, version: int, config: dict[str, Any]) -> dict[str, Any]:
        """Record the monitor configuration in force for a version (ModelValidator or ModelMonitor);
        it is checked, stored in canonical form with its digest, and audited."""
        return self.backend.set_monitors(model, version, config)

    def status(self, model: str, version: int | None = None) -> dict[str, Any]:
        """Stage, assignee role, fields, usability and versions of ``model``."""
        return self.backend.status(model, version)

    def tasks(self, role: str | None = None) -> list[dict[str, Any]]:
        """What waits for ``role`` (default: any role of the acting user)."""
        return self.backend.tasks(role)

    def audit(self, model: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit rows, oldest first."""
        return self.backend.audit(model, limit)

    def verify_audit(self, expect: tuple[int, str] | None = None) -> dict[str, Any]:
        """The chain and the registry checked against the trail; ``expect`` is an anchored (seq, hash).

        ``{"ok": bool, "rows": n, "bad_seq": ..., "problem": ..., "discrepancies": [...]}``: ``ok`` is
        false when the chain is broken or a model's tags or alias disagree with what the trail implies.
        """
        return self.backend.verify_audit(expect)

    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the newest audit row, to keep outside the database."""
        return self.backend.audit_head()

    def grant(self, user: str, role: str) -> bool:
        """Admin only: give ``role`` to ``user``."""
        return self.backend.grant(user, role)

    def revoke(self, user: str, role: str) -> bool:
        """Admin only: take ``role`` from ``user``."""
        return self.backend.revoke(user, role)

    def roles(self) -> list[dict[str, Any]]:
        """The role table."""
        return self.backend.roles()

    def events(self, after: int = 0, limit: int | None = None, model: str | None = None) -> list[dict[str, Any]]:
        """Governance events after ``after`` (an event id), oldest first (`mlflow_governance.core.events`)."""
        return self.backend.events(after, limit, model)

    def events_status(self) -> dict[str, Any]:
        """How many events are not delivered to MLflow's webhooks yet (and, for an admin or locally, why)."""
        return self.backend.events_status()

    def set_contact(self, user: str, email: str | None = None, url: str | None = None,
                    clear: bool = False) -> dict[str, Any]:
        """Admin only, audited: ``user``'s notification contact, a mail address or an Apprise URL
        (`mlflow_governance.notifications.contacts`), or none with ``clear``."""
        return self.backend.set_contact(user, email, url, clear)

    def notifications(self) -> list[dict[str, Any]]:
        """Admin only: each user, their contact (masked), roles and notification counts."""
        return self.backend.notifications()

    def test_notification(self, user: str) -> dict[str, Any]:
        """Admin only: send ``user`` a test message now; ``{"ok", "error", "contact"}``."""
        return self.backend.test_notification(user)


class LocalGovernance:
    """Backend over a governed store in this process."""

    def __init__(self, store):
        from mlflow_governance.core import engine

        self.store = store
        self.engine = engine

    def initiate(self, model, use_case, risk_tier, business_owner):
        return self.engine.initiate(self.store, model, use_case, risk_tier, business_owner)

    def transition(self, model, action, version, fields, comment, evidence=None):
        return self.engine.act(self.store, model, action, version, fields, comment, evidence)

    def set_field(self, model, name, value, version):
        return self.engine.set_field(self.store, model, name, value, version)

    def may(self, model, action, version, new_version, inputs, fields, comment):
        return self.engine.may(self.store, model, action, version, new_version, inputs, fields, comment)

    def set_monitors(self, model, version, config):
        return self.engine.set_monitors(self.store, model, version, config)

    def status(self, model, version):
        return self.engine.status(self.store, model, version)

    def tasks(self, role):
        from mlflow_governance.core.identity import require_user

        return self.engine.tasks(self.store, role=role, user=None if role else require_user())

    def audit(self, model, limit):
        return self.engine.history(self.store, model, limit)

    def verify_audit(self, expect=None):
        return self.engine.verify(self.store, expect)

    def audit_head(self):
        return self.engine.audit_head(self.store)

    def grant(self, user, role):
        return self.engine.grant_role(self.store, user, role)

    def revoke(self, user, role):
        return self.engine.revoke_role(self.store, user, role)

    def roles(self):
        from mlflow_governance.core.identity import current_user

        return self.engine.list_roles(self.store, current_user())

    def events(self, after, limit, model):
        from mlflow_governance.core import events

        found = events.read(self.store.engine, after, limit or 100, [model] if model else None)
        return [e.governance_event() for e in found]

    def events_status(self):
        from mlflow_governance.notifications import people

        return people.delivery_status(self.store)

    def set_contact(self, user, email, url, clear):
        from mlflow_governance.notifications import contacts

        return contacts.set_contact(self.store, user, email, url, clear)

    def notifications(self):
        from mlflow_governance.core.identity import current_user
        from mlflow_governance.notifications import people

        return people.listing(self.store, current_user())

    def test_notification(self, user):
        from mlflow_governance.core.identity import current_user
        from mlflow_governance.notifications import people

        return people.send_test(self.store, current_user(), user)
