"""Shared CLI plumbing: turn MLflow and governance errors into a message and an exit code."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from mlflow.exceptions import MlflowException

# Exit codes by MLflow error code: 2 bad input (click's own), 3 refused, 4 not found, 1 other.
EXIT_CODES = {
    "PERMISSION_DENIED": 3,
    "UNAUTHENTICATED": 3,
    "RESOURCE_CONFLICT": 3,
    "INVALID_PARAMETER_VALUE": 2,
    "BAD_REQUEST": 2,
    "RESOURCE_DOES_NOT_EXIST": 4,
}


class GovernanceGroup(click.Group):
    """A click group that reports MlflowException/ValueError without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlflowException as exc:
            click.echo(f"Error: {exc.message}", err=True)
            sys.exit(EXIT_CODES.get(exc.error_code, 1))
        except (ValueError, FileNotFoundError, PermissionError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


def parse_assignments(values: tuple[str, ...]) -> dict[str, str]:
    """``("a=1", "b=x=y")`` -> ``{"a": "1", "b": "x=y"}``; a value without ``=`` is bad input."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected FIELD=VALUE, got {item!r}", param_hint="--set")
        out[key.strip()] = value
    return out


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
