"""The glue of the MLproject entry points (``projects/*.py``): ``-P`` parameters to an mlgov command.

``mlflow run . -e NAME -P key=value`` runs ``python projects/NAME.py --key=value ...`` as the
MLproject file says; every parameter arrives as a string, "" when it was not given. A script
declares its parameters (`Param`) once, in an `EntryPoint`, which

* parses them (argparse: ``--help``, a missing or unknown parameter is argparse's usage error, exit 2),
* refuses a database URL that carries a secret (`database_urls`: exit 2, one line, the secret
  erased from the run ``mlflow run`` recorded) before anything else, and sets the password from
  the environment into the URLs that take one (a bad combination: one line, exit 2),
* refuses a true/false parameter that is neither (argparse's usage error, or the script's own one-line `bad_input`),
* and runs the mlgov command with the parameters given (`EntryPoint.main`), or the script's own
  command (`EntryPoint.run`), under `entry_group`: the mlgov CLI's error handling, a message and
  an exit code, no traceback.

Here rather than in ``projects/``: the scripts are also loaded by file path (``mlflow run`` runs
them from the checkout; tests load them with ``importlib``), where ``projects/`` is not on
``sys.path``, while this package is once a script has put its checkout first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn

import click

from mlflow_governance.cli.common import GovernanceGroup
from mlflow_governance.safe.project_secrets import refuse_secrets, with_password

TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


def bad_input(message: str) -> NoReturn:
    """``Error: message`` on stderr, exit 2 (bad input, as the mlgov CLI)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def truth(value: str) -> bool:
    """Whether a true/false parameter (checked by `EntryPoint.parse`) is true."""
    return value.strip().lower() in TRUE


def entry_group() -> click.Group:
    """A group to run an entry point's command in, with the mlgov CLI's error handling."""

    @click.group(cls=GovernanceGroup)
    def entry() -> None:
        """Error handling of the mlgov CLI: a message and a non-zero exit, no traceback."""

    return entry


def database_urls(urls: Mapping[str, str], *, entry: str, passwords: Collection[str] = ()) -> dict[str, str]:
    """``urls`` (parameter name -> URL) after `refuse_secrets` (exit 2 when one carries a secret),
    those named in ``passwords`` with the password of their database (``flights_url``:
    ``MLGOV_DB_PASSWORD_FLIGHTS``) set in; ValueError when a variable and its URL do not fit."""
    refuse_secrets(urls, entry=entry)
    return {key: with_password(url, key.removesuffix("_url")) if key in passwords else url
            for key, url in urls.items()}


@dataclass(frozen=True)
class Param:
    """One MLproject parameter, given to the script as ``--name-with-dashes``.

    ``pass_as`` says how `EntryPoint.command` hands it to the mlgov command's option of the same
    name: ``value`` always (``--name VALUE``), ``optional`` only when not blank, ``flag`` a
    true/false parameter (refused when neither) that becomes ``--name`` when true.
    """

    name: str
    default: str | None = None  # None: required
    pass_as: Literal["value", "optional", "flag"] = "value"
    strip: bool = False  # hand the value on stripped
    url: bool = False  # a database URL: refused when it carries a secret
    password: bool = False  # (a URL) its database's password is set in from the environment
    help: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class EntryPoint:
    """An entry point ``name`` of the MLproject file: its parameters and the mlgov command they call
    (the one ``register`` adds, of the same name).

    ``bad_flag`` reports a true/false parameter that is neither: argparse's usage error when None,
    else that function with the message (`bad_input`: one line).
    """

    name: str
    description: str | None
    params: Sequence[Param]
    register: Callable[[click.Group], None] | None = None  # adds the mlgov command ``name`` to a group
    raw_description: bool = False
    bad_flag: Callable[[str], object] | None = None

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            description=self.description,
            **({"formatter_class": argparse.RawDescriptionHelpFormatter} if self.raw_description else {}),
        )
        for param in self.params:
            parser.add_argument(param.option, required=param.default is None, default=param.default, help=param.help)
        return parser

    def parse(self, argv: list[str] | None = None) -> argparse.Namespace:
        """The parameters, checked in this order: as argparse reads them, the URLs' secrets (and
        passwords), the true/false ones."""
        parser = self.parser()
        args = parser.parse_args(argv)
        urls = {p.name: getattr(args, p.name) for p in self.params if p.url}
        if urls:
            try:
                urls = database_urls(urls, entry=self.name, passwords={p.name for p in self.params if p.password})
            except ValueError as exc:
                bad_input(str(exc))
            for key, url in urls.items():
                setattr(args, key, url)
        for param in self.params:
            value = getattr(args, param.name)
            if param.pass_as == "flag" and value.strip().lower() not in TRUE | FALSE:
                (self.bad_flag or parser.error)(f"{param.name} must be true or false, not {value!r}")
        return args

    def command(self, args: argparse.Namespace) -> list[str]:
        """The arguments of the mlgov command ``name``: the options always given first, then those
        given only when set, each in the order of `params` (click checks the options in the order
        given, so this order decides which bad value a message names first)."""
        always, when_set = [], []
        for param in self.params:
            value = getattr(args, param.name)
            value = value.strip() if param.strip else value
            if param.pass_as == "value":
                always += [param.option, value]
            elif param.pass_as == "optional" and value.strip():
                when_set += [param.option, value]
            elif param.pass_as == "flag" and truth(value):
                when_set.append(param.option)
        return [self.name, *always, *when_set]

    def run(self, argv: list[str], register: Callable[[click.Group], None] | None = None) -> None:
        """Run ``argv`` (a command's name and its options) in `entry_group`, with the commands
        ``register`` (default: the entry point's) adds to it; exits with the command's code."""
        group = entry_group()
        (register or self.register)(group)
        group.main(argv, prog_name=f"mlflow run -e {self.name}", standalone_mode=True)

    def main(self, argv: list[str] | None = None) -> None:
        """``python projects/NAME.py --param=value ...``: the mlgov command ``name`` with the parameters given."""
        self.run(self.command(self.parse(argv)))
