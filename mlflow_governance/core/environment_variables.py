"""Every setting of mlflow-governance, declared once, in the style of ``mlflow.environment_variables``.

A declaration names the variable and gives its type (the class: text, `_BooleanEnvironmentVariable`,
`_ChoiceEnvironmentVariable`, `_ListEnvironmentVariable`, or a converter such as ``int``), its
default, whether the configuration file may set it (``in_file``), whether it is a secret, and a
one-line description. ``.get()`` reads the environment each time it is called, never at import
time, and refuses a malformed value with ``MlflowException(INVALID_PARAMETER_VALUE)`` naming the
setting and what it accepts.

The same rules hold for every setting:

- an unset or empty variable means the default (the configuration file leaves empty keys unset);
- surrounding blanks are stripped, except from secrets, which are used exactly as given;
- choices and true/false values are matched case-insensitively and returned in their declared
  spelling (``edit`` gives ``EDIT``).

`ALL` lists the declarations in order; `mlflow_governance.core.settings` generates the configuration
file's keys, ``governance.env.example`` and the README's configuration table from it
(``python -m mlflow_governance.core.settings --write``). This module imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class _EnvironmentVariable:
    """One setting, read from the environment when asked (text unless ``type_`` converts it)."""

    kind = "text"

    def __init__(
        self,
        name: str,
        type_: Callable[[str], Any] = str,
        default: Any = None,
        *,
        description: str,
        in_file: bool = True,
        secret: bool = False,
        default_doc: str | None = None,
        example: str | None = None,
        fallbacks: tuple[str, ...] = (),
    ):
        if type_ is bool and not isinstance(self, _BooleanEnvironmentVariable):
            raise ValueError("Use _BooleanEnvironmentVariable instead for boolean variables")
        if secret and (default is not None or example):
            raise ValueError(f"{name}: a secret has neither a default nor an example value")
        if "\n" in description:
            raise ValueError(f"{name}: the description is one line")
        self.name = name
        self.type = type_
        self.default = default
        self.description = description
        self.in_file = in_file
        self.secret = secret
        #: What the default is when it is not a value (derived at run time, or none), for the docs.
        self.default_doc = default_doc
        #: The value shown in ``governance.env.example`` when it is not the default.
        self.example = example
        #: Other variables read, in order, when this one is unset or empty (e.g. MLflow's own name).
        self.fallbacks = fallbacks
        if type_ not in (str, bool, tuple) and not isinstance(self, _ChoiceEnvironmentVariable):
            self.kind = getattr(type_, "__name__", "value")

    # -- reading -----------------------------------------------------------------------------

    @property
    def defined(self) -> bool:
        return self.name in os.environ

    def is_set(self) -> bool:
        return self.name in os.environ

    def get_raw(self) -> str | None:
        return os.environ.get(self.name)

    def text(self) -> tuple[str, str] | None:
        """The (variable, value) that is set, after the blank rule: this name, then the fallbacks."""
        for name in (self.name, *self.fallbacks):
            raw = os.environ.get(name)
            if raw is None:
                continue
            value = raw if self.secret else raw.strip()
            if value:
                return name, value
        return None

    def get(self) -> Any:
        """The converted value from the environment, else the default; refuses malformed values."""
        found = self.text()
        if found is None:
            return self.default
        name, value = found
        problem = self.problem(value, name)
        if problem:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(problem, error_code=INVALID_PARAMETER_VALUE)
        return self.convert(value)

    def convert(self, value: str) -> Any:
        """``value`` (stripped, not empty) as this setting's type; raises ValueError if malformed."""
        if self.type is str:
            return value
        return self.type(value)

    def allowed(self) -> str:
        """What the setting accepts, for error messages."""
        return "text" if self.kind == "text" else f"a valid {self.kind}"

    def problem(self, value: str, name: str | None = None) -> str | None:
        """Why ``value`` is refused for this setting (named ``name``, a fallback), or None."""
        try:
            self.convert(value)
        except (ValueError, TypeError):
            shown = "" if self.secret else f", not {value!r}"
            return f"{name or self.name} must be {self.allowed()}{shown}"
        return None

    # -- writing -----------------------------------------------------------------------------

    def set(self, value: Any) -> None:
        os.environ[self.name] = self.format(value)

    def unset(self) -> None:
        os.environ.pop(self.name, None)

    def format(self, value: Any) -> str:
        """``value`` as the environment spells it (the inverse of `convert`)."""
        return "" if value is None else str(value)

    def default_text(self) -> str:
        """The default as the environment spells it ('' when there is none)."""
        return self.format(self.default)

    def __str__(self) -> str:
        return f"{self.name} (default: {self.default})"

    def __repr__(self) -> str:
        return repr(self.name)

    def __format__(self, format_spec: str) -> str:
        return self.name.__format__(format_spec)


def seconds(value: str) -> int:
    """A whole number of seconds, 0 or more (a setting's type)."""
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def count(value: str) -> int:
    """A whole number, 1 or more (a setting's type)."""
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


SMTP_SCHEMES = ("smtp", "smtp+tls", "smtps", "smtp+ssl")


def smtp_url(value: str) -> str:
    """A mail server URL: ``smtp://`` (no TLS), ``smtp+tls://`` (STARTTLS) or ``smtps://`` /
    ``smtp+ssl://`` (TLS from the start), ``[USER:PASSWORD@]HOST[:PORT]`` (a setting's type)."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme.lower() not in SMTP_SCHEMES or not parts.hostname or parts.path.strip("/"):
        raise ValueError(value)
    _ = parts.port  # ValueError when the port is not a number from 0 to 65535
    return value


def mail_address(value: str) -> str:
    """One plain mail address, name@domain (a setting's type)."""
    local, sep, domain = value.rpartition("@")
    if not sep or not local or "." not in domain.strip(".") or any(c.isspace() or c in "<>,;\"'" for c in value):
        raise ValueError(value)
    return value


seconds.__name__ = "number of seconds (0 or more)"
count.__name__ = "whole number (1 or more)"
smtp_url.__name__ = "smtp://, smtp+tls:// or smtps:// [USER:PASSWORD@]HOST[:PORT]"
mail_address.__name__ = "mail address"


class _BooleanEnvironmentVariable(_EnvironmentVariable):
    """A true/false setting: ``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off``."""

    kind = "boolean"
    TRUE = ("true", "1", "yes", "on")
    FALSE = ("false", "0", "no", "off")

    def __init__(self, name: str, default: bool | None, **kwargs: Any):
        # `default not in [True, False, None]` doesn't work because `1 in [True]`.
        if not (default is True or default is False or default is None):
            raise ValueError(f"{name} default value must be one of [True, False, None]")
        super().__init__(name, bool, default, **kwargs)

    def convert(self, value: str) -> bool:
        lowered = value.lower()
        if lowered in self.TRUE:
            return True
        if lowered in self.FALSE:
            return False
        raise ValueError(value)

    def allowed(self) -> str:
        return f"true or false ({'/'.join(self.TRUE)} or {'/'.join(self.FALSE)})"

    def format(self, value: Any) -> str:
        return "" if value is None else ("true" if value else "false")


class _ChoiceEnvironmentVariable(_EnvironmentVariable):
    """One of a fixed set of words, matched case-insensitively, returned as declared."""

    kind = "choice"

    def __init__(self, name: str, choices: tuple[str, ...], default: str | None, **kwargs: Any):
        if default is not None and default not in choices:
            raise ValueError(f"{name}: default {default!r} is not one of {choices}")
        self.choices = tuple(choices)
        super().__init__(name, str, default, **kwargs)

    def convert(self, value: str) -> str:
        for choice in self.choices:
            if value.casefold() == choice.casefold():
                return choice
        raise ValueError(value)

    def allowed(self) -> str:
        return f"one of {', '.join(self.choices)}"


class _ListEnvironmentVariable(_EnvironmentVariable):
    """A comma-separated list, read as a tuple of its non-empty, stripped items."""

    kind = "list"

    def __init__(self, name: str, default: tuple[str, ...] | None = None, **kwargs: Any):
        super().__init__(name, tuple, default, **kwargs)

    def convert(self, value: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def allowed(self) -> str:
        return "a comma-separated list"

    def format(self, value: Any) -> str:
        return "" if value is None else ",".join(value)


# -- The settings, in the order the configuration file and the README list them. --------------

MLFLOW_BACKEND_STORE_URI = _EnvironmentVariable(
    "MLFLOW_BACKEND_STORE_URI", str, None,
    description="Tracking database, e.g. sqlite:///mlflow.db or postgresql://host/db",
    default_doc="the registry's database", example="sqlite:///mlflow.db",
)
MLFLOW_REGISTRY_STORE_URI = _EnvironmentVariable(
    "MLFLOW_REGISTRY_STORE_URI", str, None,
    description="Governed registry: governed-sqlite:///PATH or governed-postgresql://host/db",
    default_doc="none: mlgov server requires it", example="governed-sqlite:///mlflow.db",
)
MLFLOW_ARTIFACTS_DESTINATION = _EnvironmentVariable(
    "MLFLOW_ARTIFACTS_DESTINATION", str, None,
    description="Where the server stores artifacts",
    default_doc="MLflow's ./mlartifacts",
)
MLGOV_ADMIN = _EnvironmentVariable(
    "MLGOV_ADMIN", str, "admin",
    description="The admin user: manages users and governance roles",
)
MLGOV_ADMIN_PASSWORD = _EnvironmentVariable(
    "MLGOV_ADMIN_PASSWORD", str, None, secret=True, fallbacks=("MLFLOW_AUTH_ADMIN_PASSWORD",),
    description="The admin's password (at least as long as MLflow's basic-auth requires)",
    default_doc="none: the server refuses to start without it",
)
MLGOV_AUTH_DATABASE_URI = _EnvironmentVariable(
    "MLGOV_AUTH_DATABASE_URI", str, None,
    description="Where MLflow's basic-auth keeps users",
    default_doc="the registry's database",
)
MLGOV_DEFAULT_PERMISSION = _ChoiceEnvironmentVariable(
    "MLGOV_DEFAULT_PERMISSION", ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS"), "EDIT",
    description="MLflow permission of signed-in users on ordinary objects (governance decides the mlgov. state)",
)
MLGOV_SEPARATION_OF_DUTIES = _BooleanEnvironmentVariable(
    "MLGOV_SEPARATION_OF_DUTIES", True,
    description="Separation of duties: a developer may not review their own version, nor anyone approve a step "
    "they made",
)
MLGOV_PRODUCTION_ALIAS = _EnvironmentVariable(
    "MLGOV_PRODUCTION_ALIAS", str, "production",
    description="Registry alias of the production version (its look-alikes are refused on governed models)",
)
MLGOV_AUDIT_KEY = _EnvironmentVariable(
    "MLGOV_AUDIT_KEY", str, None, secret=True,
    description="Optional HMAC key for the audit chain; the same for every writer, never in the database",
    default_doc="none: a plain SHA-256 chain",
)
MLFLOW_FLASK_SERVER_SECRET_KEY = _EnvironmentVariable(
    "MLFLOW_FLASK_SERVER_SECRET_KEY", str, None, secret=True,
    description="Static secret for CSRF protection",
    default_doc="mlgov server makes one per start",
)
MLGOV_ALLOWED_ORIGINS = _ListEnvironmentVariable(
    "MLGOV_ALLOWED_ORIGINS",
    description="Browser origins besides the server's own that may call it; when set, every other origin is "
    "refused (MLflow alone lets any http://localhost or 127.0.0.1 page call with credentials)",
    default_doc="unset: MLflow's CORS rule only",
)
MLGOV_AUTH_CACHE_SECONDS = _EnvironmentVariable(
    "MLGOV_AUTH_CACHE_SECONDS", seconds, 60,
    description="How long a worker trusts a password it has checked and what it read of MLflow's permissions (a "
    "change made through the server is seen by every worker on the next request; this bounds one made behind its "
    "back); 0 checks every request",
)
MLGOV_SESSION_SECONDS = _EnvironmentVariable(
    "MLGOV_SESSION_SECONDS", count, 28800,
    description="Lifetime of a browser sign-in (the signed session cookie of the approvals page and the MLflow UI)",
)
MLGOV_SIGNIN_MAX_FAILURES = _EnvironmentVariable(
    "MLGOV_SIGNIN_MAX_FAILURES", count, 5,
    description="Failed sign-ins for one user name or one address, within MLGOV_SIGNIN_LOCKOUT_SECONDS, that lock "
    "it out",
)
MLGOV_SIGNIN_LOCKOUT_SECONDS = _EnvironmentVariable(
    "MLGOV_SIGNIN_LOCKOUT_SECONDS", seconds, 60,
    description="How long a lock-out lasts after the last failed sign-in (and the window failures are counted in)",
)
MLFLOW_SERVER_ALLOWED_HOSTS = _ListEnvironmentVariable(
    "MLFLOW_SERVER_ALLOWED_HOSTS",
    description="Host headers the server answers",
    default_doc="MLflow's: localhost and private addresses",
)
MLGOV_USER_LIST = _ChoiceEnvironmentVariable(
    "MLGOV_USER_LIST", ("all", "admins"), "all",
    description="Who may list every user name and admin flag: all (MLflow's behaviour) or admins",
)
MLGOV_PAYLOAD_URL = _EnvironmentVariable(
    "MLGOV_PAYLOAD_URL", str, None, secret=True,
    description="The sidecars' payload database (SQLAlchemy URL): what the server's trace route reads and where "
    "mlgov serve writes when --payload-url is not given",
    default_doc="none: GET .../trace answers 404 naming this setting; mlgov serve writes sqlite:///./mlgov-payloads.db",
)
MLGOV_PUBLIC_URL = _EnvironmentVariable(
    "MLGOV_PUBLIC_URL", str, None,
    description="The governance server's address as people reach it (https://mlflow.example.com): the base of the "
    "approvals-page link in governance events",
    default_doc="unset: the server's own address on its REST routes, a path elsewhere",
)
MLGOV_EVENTS_DELIVERY = _BooleanEnvironmentVariable(
    "MLGOV_EVENTS_DELIVERY", True,
    description="Whether the governance server delivers governance events to MLflow's webhooks (off: they are still "
    "recorded, and mlgov events deliver sends them)",
)
MLGOV_EVENTS_POLL_SECONDS = _EnvironmentVariable(
    "MLGOV_EVENTS_POLL_SECONDS", count, 2,
    description="How often the deliverer looks for events written by other processes (the local CLI, other "
    "workers) and for retries that are due",
)
MLGOV_EVENTS_RETRY_SECONDS = _EnvironmentVariable(
    "MLGOV_EVENTS_RETRY_SECONDS", count, 2,
    description="Wait before the first retry of a failed delivery; it doubles with each failure",
)
MLGOV_EVENTS_RETRY_MAX_SECONDS = _EnvironmentVariable(
    "MLGOV_EVENTS_RETRY_MAX_SECONDS", count, 300,
    description="Longest wait between retries of a delivery (retries go on until it is delivered or its webhook is "
    "deleted or disabled)",
)
MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY = _EnvironmentVariable(
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", str, None, secret=True,
    description="MLflow's key for the webhook secrets in the database (a Fernet key); the same for every worker, "
    "restart and mlgov events deliver",
    default_doc="MLflow makes one per process: a secret is then unreadable to every other process",
)
MLFLOW_WEBHOOK_ALLOWED_SCHEMES = _ListEnvironmentVariable(
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES",
    description="URL schemes MLflow accepts for webhooks and their deliveries (http,https lets plain http through)",
    default_doc="MLflow's: https",
)
MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS = _ChoiceEnvironmentVariable(
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", ("true", "false"), "false",
    description="Whether webhooks may target loopback, private and link-local addresses (true turns MLflow's SSRF "
    "protection off: cloud metadata and internal services become reachable)",
)
MLGOV_SMTP_URL = _EnvironmentVariable(
    "MLGOV_SMTP_URL", smtp_url, None, secret=True,
    description="The one mail server that sends the notifications to users with a mail contact (a password in it is "
    "percent-encoded)",
    default_doc="none: users with a mail contact are not notified (mlgov notifications list says so)",
)
MLGOV_SMTP_FROM = _EnvironmentVariable(
    "MLGOV_SMTP_FROM", mail_address, None,
    description="The sender address of notification mail",
    default_doc="mlflow-governance@ the server's host name",
)
MLGOV_USER = _EnvironmentVariable(
    "MLGOV_USER", str, None, in_file=False,
    description="The acting user of a local process (development mode); a server never reads it",
    default_doc="none",
)
# MLflow's own client variables, as mlgov reads them to find a governance server before (and
# without) importing MLflow; anything but an http(s) URL is resolved by MLflow itself.
MLFLOW_TRACKING_URI = _EnvironmentVariable(
    "MLFLOW_TRACKING_URI", str, None, in_file=False,
    description="MLflow's tracking URI; for mlgov, the registry too unless MLFLOW_REGISTRY_URI is set "
    "(a governance server's URL, or governed-sqlite:///... in development mode)",
    default_doc="MLflow's default", example="http://127.0.0.1:5000",
)
MLFLOW_REGISTRY_URI = _EnvironmentVariable(
    "MLFLOW_REGISTRY_URI", str, None, in_file=False,
    description="MLflow's registry URI: governed-sqlite:///PATH, governed-postgresql://... or a governance server's URL",
    default_doc="MLFLOW_TRACKING_URI",
)
MLFLOW_TRACKING_USERNAME = _EnvironmentVariable(
    "MLFLOW_TRACKING_USERNAME", str, None, in_file=False,
    description="The user a client signs in to a governance server as (MLflow's basic auth)",
    default_doc="none",
)
MLFLOW_TRACKING_PASSWORD = _EnvironmentVariable(
    "MLFLOW_TRACKING_PASSWORD", str, None, in_file=False, secret=True,
    description="The password of MLFLOW_TRACKING_USERNAME",
    default_doc="none",
)
MLGOV_DB_PASSWORD_FLIGHTS = _EnvironmentVariable(
    "MLGOV_DB_PASSWORD_FLIGHTS", str, None, in_file=False, secret=True,
    description="The password of the flights database for mlflow run -e acquire/pipeline, whose -P flights_url "
    "names no password (MLflow records every -P value; PostgreSQL also reads PGPASSWORD or ~/.pgpass)",
    default_doc="none: the URL as given",
)
MLGOV_DB_PASSWORD_AIRPORTS = _EnvironmentVariable(
    "MLGOV_DB_PASSWORD_AIRPORTS", str, None, in_file=False, secret=True,
    description="The password of the airports database for mlflow run -e acquire/pipeline, whose -P airports_url "
    "names no password",
    default_doc="none: the URL as given",
)
MLGOV_DB_PASSWORD_PAYLOAD = _EnvironmentVariable(
    "MLGOV_DB_PASSWORD_PAYLOAD", str, None, in_file=False, secret=True,
    description="The password of the payload database for mlflow run -e monitor/pipeline, whose -P payload_url "
    "names no password",
    default_doc="none: the URL as given",
)
MLGOV_CONFIG = _EnvironmentVariable(
    "MLGOV_CONFIG", str, None, in_file=False,
    description="The configuration file read by mlgov server and the governance app (--config overrides it)",
    default_doc="none",
)
MLGOV_SERVE_OPTIONS = _EnvironmentVariable(
    "MLGOV_SERVE_OPTIONS", str, None, in_file=False,
    description="Set by mlgov serve for its gunicorn workers: the scoring options as JSON (not to be set by hand)",
    default_doc="none: only mlgov serve sets it",
)

#: Every declaration above, in order (collected, so a new setting cannot be left out).
ALL: tuple[_EnvironmentVariable, ...] = tuple(v for v in globals().values() if isinstance(v, _EnvironmentVariable))
BY_NAME: dict[str, _EnvironmentVariable] = {v.name: v for v in ALL}


def problems() -> list[str]:
    """What is wrong with the settings in the environment now (empty when every value is valid)."""
    found = []
    for var in ALL:
        value = var.text()
        if value is not None and (problem := var.problem(value[1], value[0])):
            found.append(problem)
    return found


def check_all() -> None:
    """Refuse malformed settings all at once, before a server starts."""
    found = problems()
    if found:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        raise MlflowException("; ".join(found), error_code=INVALID_PARAMETER_VALUE)
