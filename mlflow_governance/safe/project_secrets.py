"""Database passwords of the MLproject entry points: from the environment, never from ``-P``.

What MLflow records. ``mlflow run . -e E -P K=V`` (and ``mlflow.projects.run``, which the
``pipeline`` entry point uses for its stages) creates the run and logs *every* ``-P`` value,
declared or not, as a run parameter (``mlflow/projects/utils.py`` ``_create_run``:
``log_batch(params=...)``) in the ``mlflow run`` process, before the entry point's own process
starts. MLflow parameters are immutable and no hook of MLflow runs in between, so an entry point
cannot stop a ``-P`` value from being recorded; it can only (a) not need secrets in ``-P`` and
(b) clean up after a user who put one there.

(a) The documented way: the URL without its password, the password in the environment of
``mlflow run``, which MLflow passes on to the entry point untouched and never records:

* ``MLGOV_DB_PASSWORD_FLIGHTS``, ``MLGOV_DB_PASSWORD_AIRPORTS``, ``MLGOV_DB_PASSWORD_PAYLOAD``:
  the password of ``flights_url``, ``airports_url`` and ``payload_url``, for any SQLAlchemy
  backend (DB2, MySQL, PostgreSQL...), set into the URL in memory by the entry point
  (`with_password`); one variable per URL, so two databases may have different passwords.
* For PostgreSQL, libpq's own conventions work as well with nothing set here: ``PGPASSWORD``,
  or a password file (``~/.pgpass``, ``PGPASSFILE``) matched by host, port, database and user;
  both the ADBC reader and psycopg2 read them.

A variable per URL rather than libpq's alone because the sources may be DB2 or MySQL, whose
drivers read no such variable, and because one ``PGPASSWORD`` is one password for every
PostgreSQL database of the run. The password is never put into a ``-P`` of the stages the
``pipeline`` entry point launches: they get the same password-less URLs and inherit the
environment.

(b) A ``-P`` URL that carries a secret anyway (a password in the authority, or a secret-looking
query value such as ``?password=`` or ``?sslpassword=``: `mlflow_governance.safe.urls.has_secret`)
is refused at once (`refuse_secrets`: exit 2, one line naming the parameter and the variable to
use, before any database or the registry is touched), and the secret is purged from what
``mlflow run`` recorded (`purge_recorded_secrets`): on a tracking store this process opens
itself (a SQLite or other SQLAlchemy database, or a local ``mlruns`` directory) the parameter
is deleted (SQLite with ``secure_delete``, so the old bytes are overwritten in the file, not
just unlinked; a ``mlruns`` file is overwritten, then removed; on a PostgreSQL or MySQL tracking
database the dead row's bytes stay in its data files until the server's next VACUUM / purge) and
logged again masked; the run is marked FAILED. It is not deleted: ``mlflow run`` sets the end
status of its run itself after this process exits, and MLflow refuses that for a deleted run
(its status check compares a string with integers, so it always tries). Against a tracking
*server* the entry point cannot erase a parameter (MLflow's REST API has no such call): it marks
the run FAILED and the message says that the server's administrator must delete and purge it
(``mlflow gc --run-ids``) and that the password must be changed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from mlflow_governance.core import environment_variables as ev
from mlflow_governance.safe.urls import has_secret, mask_url

EXIT_BAD_INPUT = 2
# The password of each URL parameter of the entry points (declared settings, documented in the README).
PASSWORD_VARIABLES = {"flights": ev.MLGOV_DB_PASSWORD_FLIGHTS, "airports": ev.MLGOV_DB_PASSWORD_AIRPORTS,
                      "payload": ev.MLGOV_DB_PASSWORD_PAYLOAD}


def password_variable(name: str) -> str:
    """The environment variable of the password of URL ``name`` (``flights``, ``airports``, ``payload``)."""
    return PASSWORD_VARIABLES[name].name


def with_password(url: str, name: str, environ: Mapping[str, str] | None = None) -> str:
    """``url`` with the password of `password_variable` (``name``) set into it (in memory only),
    or ``url`` as it is when that variable is not set or empty.

    Raises ValueError (exit 2 under the CLI's group) when the variable is set but ``url`` already
    has a password, names no user, or is not a SQLAlchemy URL."""
    import sqlalchemy as sa

    environ = os.environ if environ is None else environ
    variable = password_variable(name)
    password = environ.get(variable) or ""
    if not password or not str(url or "").strip():
        return url
    try:
        parsed = sa.make_url(str(url).strip())
    except Exception:  # noqa: BLE001 - the message must not repeat a malformed URL
        raise ValueError(f"{variable} is set but the {name} URL {mask_url(url)} is not a SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite":
        raise ValueError(f"{variable} is set but the {name} database {mask_url(url)} is a SQLite file, which has "
                         "no password: unset it")
    if parsed.password:
        raise ValueError(f"the {name} URL {mask_url(url)} has a password and {variable} gives another: keep the "
                         "password only in the variable")
    if not parsed.username:
        raise ValueError(f"{variable} is set but the {name} URL {mask_url(url)} names no user: give "
                         "dialect://USER@host/database")
    return parsed.set(password=password).render_as_string(hide_password=False)


def secret_parameters(params: Mapping[str, str | None]) -> list[str]:
    """The names of ``params`` whose values carry a secret (`mlflow_governance.safe.urls.has_secret`)."""
    return [key for key, value in params.items() if value and has_secret(str(value))]


def refuse_secrets(params: Mapping[str, str | None], *, entry: str) -> None:
    """Exit 2 with one line when a parameter of the ``entry`` point carries a secret, after
    purging it from the run ``mlflow run`` recorded (`purge_recorded_secrets`); else return."""
    found = secret_parameters(params)
    if not found:
        return
    shown = ", ".join(f"{key}={mask_url(str(params[key]))}" for key in found)
    variables = ", ".join(password_variable(key.removesuffix("_url")) for key in found)
    run_id = os.environ.get("MLFLOW_RUN_ID", "").strip()
    done = purge_recorded_secrets(run_id, {k: str(params[k]) for k in found}) if run_id else None
    message = (f"Error: -P {shown} carries a password or a secret, and MLflow records every -P value as a run "
               f"parameter: give the URL without it and the password in the environment ({variables}; for "
               "PostgreSQL also PGPASSWORD or ~/.pgpass)")
    if done:
        message += f"; {done}"
    print(message, file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


def purge_recorded_secrets(run_id: str, secrets: Mapping[str, str]) -> str:
    """Remove the ``secrets`` (param name -> the value recorded) from run ``run_id`` as far as the
    tracking store allows (masked copies logged instead) and mark the run FAILED. Returns what
    was done, for the message. Never raises (the refusal is what matters; a failure here is said in the text)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        store = client._tracking_client.store
        purged = _purge_params(store, run_id, list(secrets))
    except Exception as exc:  # noqa: BLE001 - said in the message
        purged, problem = False, f"{type(exc).__name__}"
    else:
        problem = ""
    if purged:
        for key, value in secrets.items():
            try:
                client.log_param(run_id, key, mask_url(value))
            except Exception:  # noqa: BLE001 - the masked copy is a courtesy
                pass
    try:
        # Not deleted: `mlflow run` sets the run's end status itself once this process exits,
        # which MLflow refuses for a deleted run (a traceback after the one-line refusal).
        client.set_terminated(run_id, "FAILED")
    except Exception:  # noqa: BLE001 - `mlflow run` marks it FAILED anyway
        pass
    if purged:
        return (f"the recorded value was erased from run {run_id} (kept masked, the run FAILED); change the "
                "password if others could read your shell history or screen")
    return (f"this tracking store keeps the value in run {run_id} until its administrator deletes the run and "
            f"purges it (mlflow gc --run-ids {run_id}){f' [{problem}]' if problem else ''}: change the password")


def _purge_params(store, run_id: str, keys: list[str]) -> bool:
    """Delete params ``keys`` of ``run_id`` in a store this process opens itself; False for a
    store it cannot erase from (a tracking server)."""
    from mlflow.store.tracking.file_store import FileStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if isinstance(store, SqlAlchemyStore):
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlParam

        with store.ManagedSessionMaker() as session:
            if session.get_bind().dialect.name == "sqlite":
                # Overwrite the deleted cells in the file itself, not only unlink them.
                session.execute(sa.text("PRAGMA secure_delete = ON"))
            session.query(SqlParam).filter(SqlParam.run_uuid == run_id, SqlParam.key.in_(keys)).delete(
                synchronize_session=False)
        return True
    if isinstance(store, FileStore):
        run_dir = store._get_run_dir(store.get_run(run_id).info.experiment_id, run_id)
        for key in keys:
            path = os.path.join(run_dir, "params", key)
            if os.path.isfile(path):
                size = os.path.getsize(path)
                with open(path, "r+b") as handle:  # overwrite before unlinking
                    handle.write(b"\0" * size)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.remove(path)
        return True
    return False
