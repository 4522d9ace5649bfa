"""The governance configuration file: one ``KEY=VALUE`` file for the server and the CLI.

See ``governance.env.example`` at the repository root for every key. Values already in the
environment win over the file, so a deployment can override single keys. Loading only touches
``os.environ``; nothing is read at import time.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

ENV_CONFIG = "MLGOV_CONFIG"

# Keys the file may set, with what they mean (the example file is generated from this table).
KEYS: dict[str, str] = {
    "MLFLOW_BACKEND_STORE_URI": "Tracking database, e.g. sqlite:///mlflow.db or postgresql://host/db",
    "MLFLOW_REGISTRY_STORE_URI": "Governed registry, e.g. governed-sqlite:///mlflow.db or governed-postgresql://host/db",
    "MLFLOW_ARTIFACTS_DESTINATION": "Where the server stores artifacts (default ./mlartifacts)",
    "MLGOV_ADMIN": "The admin user: manages users and governance roles (default admin)",
    "MLGOV_ADMIN_PASSWORD": "The admin's password: required, there is no default",
    "MLGOV_AUTH_DATABASE_URI": "Where MLflow's basic-auth keeps users (default: the registry's database)",
    "MLGOV_DEFAULT_PERMISSION": "MLflow permission of signed-in users on ordinary objects (default EDIT)",
    "MLGOV_SEPARATION_OF_DUTIES": "true (default) or false",
    "MLGOV_PRODUCTION_ALIAS": "Registry alias of the production version (default production)",
    "MLGOV_AUDIT_KEY": "Optional HMAC key for the audit chain; the same for every writer, never in the database",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "Static secret for CSRF protection (mlgov server makes one per start if unset)",
    "MLGOV_ALLOWED_ORIGINS": "Browser origins besides the server's own that may call it, comma-separated; when set, "
    "every other origin is refused (MLflow alone lets any http://localhost or 127.0.0.1 page call with credentials)",
    "MLFLOW_SERVER_ALLOWED_HOSTS": "Host headers the server answers, comma-separated (MLflow's default: localhost "
    "and private addresses)",
    "MLGOV_USER_LIST": "Who may list every user name and admin flag: all (MLflow's default) or admins",
}


class ConfigError(ValueError):
    """The configuration file is missing or malformed."""


def parse(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines (``#`` comments, optional quotes); unknown keys are an error."""
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not key:
            raise ConfigError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        if key not in KEYS:
            raise ConfigError(f"{path}:{lineno}: unknown key {key!r}; known keys: {', '.join(KEYS)}")
        parts = shlex.split(value.strip()) if value.strip() else [""]
        values[key] = parts[0] if len(parts) == 1 else value.strip()
    return values


def load(path: str | Path | None = None) -> dict[str, str]:
    """Load the file named by ``path`` (or ``MLGOV_CONFIG``) into the environment; returns it."""
    path = path or os.environ.get(ENV_CONFIG)
    if not path:
        return {}
    values = parse(Path(path))
    for key, value in values.items():
        if value:  # an empty value means "use the default"
            os.environ.setdefault(key, value)
    return values


def example() -> str:
    """The documented example file."""
    lines = ["# mlflow-governance configuration (mlgov server --config FILE, or MLGOV_CONFIG=FILE)."]
    for key, meaning in KEYS.items():
        lines += [f"# {meaning}", f"{key}=" + {
            "MLFLOW_BACKEND_STORE_URI": "sqlite:///mlflow.db",
            "MLFLOW_REGISTRY_STORE_URI": "governed-sqlite:///mlflow.db",
            "MLGOV_ADMIN": "admin",
            "MLGOV_DEFAULT_PERMISSION": "EDIT",
            "MLGOV_SEPARATION_OF_DUTIES": "true",
            "MLGOV_PRODUCTION_ALIAS": "production",
        }.get(key, "")]
    return "\n".join(lines) + "\n"
