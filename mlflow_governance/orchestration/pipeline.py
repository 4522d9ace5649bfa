"""The governed pipeline behind ``mlflow run . -e pipeline``: the stage jobs of one model, in order.

In the manner of MLflow's ``examples/multistep_workflow`` each step is its own MLflow run of an
entry point of this project (``mlflow.projects.run``: ``acquire``, ``train``, ``validate``,
``monitor``), but which steps run is decided by the model's governance status, never by the
pipeline: it reads where the model is, runs the one job whose turn it is as the user given for it
(``MLGOV_USER`` set for that sub-run only), checks with `GovernanceClient.require` (the check the
step's own action makes) before the sub-run starts, and stops where the next move belongs to a
person (an approval, a deployment). It never approves on anyone's behalf: it names the role it
waits for and either polls for the stage to move (``wait_seconds``) or ends, so that running it
again resumes where the model is.

Against a governance server each person signs in with their own credentials, so one pipeline
cannot act as several people: it runs there only when every step due is the signed-in user's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, UNAUTHENTICATED

from mlflow_governance.core import workflow
from mlflow_governance.core.environment_variables import MLGOV_USER

# How often a waiting pipeline reads the model's status again (a cheap read of a few tags).
POLL_SECONDS = 2.0
EXIT_STEP_DID_NOT_MOVE = 1
PREFIX = "pipeline: "


@dataclass(frozen=True)
class Step:
    """A stage job: the MLproject entry point, the role it acts in, the parameter naming its user."""

    entry: str
    role: str
    user_param: str


ACQUIRE = Step("acquire", workflow.MODEL_DATA_ENGINEER, "data_engineer")
TRAIN = Step("train", workflow.MODEL_DEVELOPER, "developer")
VALIDATE = Step("validate", workflow.MODEL_VALIDATOR, "validator")
MONITOR = Step("monitor", workflow.MODEL_MONITOR, "monitor")
STEPS: tuple[Step, ...] = (ACQUIRE, TRAIN, VALIDATE, MONITOR)


@dataclass(frozen=True)
class PipelineParams:
    """The pipeline's parameters (``users``: the user of each step, by ``Step.user_param``)."""

    model: str
    flights_url: str = ""
    airports_url: str = ""
    months: str = ",".join(str(m) for m in range(1, 13))
    validation_data: str = ""
    validation_config: str = ""
    payload_url: str = ""
    quick: bool = False
    users: Mapping[str, str] = field(default_factory=dict)
    wait_seconds: float = 0.0


@dataclass(frozen=True)
class Due:
    """``step`` is to run now (on ``version`` for a validation or a monitor evaluation)."""

    step: Step
    version: int | None = None


@dataclass(frozen=True)
class Wait:
    """The next move belongs to a person in ``role``."""

    role: str
    stage: str
    version: int | None
    actions: str


@dataclass(frozen=True)
class Finished:
    """Nothing is left for the pipeline to do; ``reason`` says why."""

    reason: str


class StepFailed(Exception):
    """A sub-run failed (its own error line is above) or ran without moving the stage."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


_VERBS = {workflow.APPROVE: "approves", workflow.REJECT: "rejects", workflow.SUBMIT: "submits",
          workflow.ACCEPT: "accepts"}
# Where a person's move has a command of its own, name it.
_HINTS = {workflow.APPROVED_FOR_DEPLOYMENT: " (mlgov deploy)"}


def _actions(stage: str, scope: str, role: str) -> str:
    """What ``role`` may do in ``stage``, from the lifecycle table ("approves or rejects")."""
    verbs = [_VERBS[t.action] for t in workflow.actions_from(stage, scope) if t.role == role and t.action in _VERBS]
    return " or ".join(dict.fromkeys(verbs)) or "acts on"


def _in_flight(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    done = (workflow.READY_TO_USE, *workflow.TERMINAL_STAGES)
    return [v for v in status.get("versions", []) if v.get("stage") and v["stage"] not in done]


def _production(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    number = status.get("production_version")
    return next((v for v in status.get("versions", []) if v["version"] == number
                 and v.get("stage") == workflow.READY_TO_USE), None)


def next_move(status: Mapping[str, Any]) -> Due | Wait | Finished:
    """The lifecycle's next move for the pipeline's stage jobs (acquire, train, validate)."""
    model, stage = status["model"], status.get("stage")
    if not status.get("governed") or not stage:
        raise MlflowException(
            f"model {model!r} is not under governance: its {workflow.MODEL_OWNER} starts it with mlgov initiate",
            error_code=RESOURCE_DOES_NOT_EXIST,
        )
    if stage in workflow.TERMINAL_STAGES:
        return Finished(f"{model} is {stage}: nothing is left to run")
    if stage == workflow.DATA_ACQUISITION:
        return Due(ACQUIRE)
    if stage != workflow.APPROVED_FOR_DEVELOPMENT:
        role = status.get("assignee_role") or workflow.ASSIGNEE_ROLE.get(stage, "")
        return Wait(role, stage, None, _actions(stage, workflow.MODEL_SCOPE, role))
    flying = _in_flight(status)
    if not flying:
        production = _production(status)
        if production is not None:
            return Finished(f"{model} version {production['version']} is {workflow.READY_TO_USE} "
                            f"(usability {production.get('usability') or 'unset'}) and no version is in flight")
        return Due(TRAIN)
    newest = max(flying, key=lambda v: v["version"])
    if newest["stage"] == workflow.APPROVED_FOR_VALIDATION:
        return Due(VALIDATE, newest["version"])
    role = newest.get("assignee_role") or workflow.ASSIGNEE_ROLE.get(newest["stage"], "")
    return Wait(role, newest["stage"], newest["version"], _actions(newest["stage"], workflow.VERSION_SCOPE, role))


def monitor_due(status: Mapping[str, Any], payload_url: str) -> int | None:
    """The production version to evaluate, when a payload database is given and usability is not red."""
    production = _production(status)
    if not payload_url.strip() or production is None or production.get("usability") == workflow.USABILITY_REJECT:
        return None
    return int(production["version"])


def position(status: Mapping[str, Any]) -> tuple:
    """Everything a step or a person's move changes: the model's stage, each version's stage and usability."""
    return (status.get("stage"), tuple((v["version"], v.get("stage"), v.get("usability"))
                                       for v in status.get("versions", [])))


def stage_of(status: Mapping[str, Any], version: int | None) -> str | None:
    """The stage of ``version``, or the model's (also for a version not registered yet)."""
    found = next((v for v in status.get("versions", []) if v["version"] == version), None)
    return found.get("stage") if found else status.get("stage")


def describe(status: Mapping[str, Any], version: int | None) -> str:
    subject = status["model"] + (f" version {version}" if version is not None else "")
    return f"{subject} in {stage_of(status, version)}"


def newest_version(status: Mapping[str, Any]) -> int | None:
    return max((v["version"] for v in status.get("versions", [])), default=None)


@contextmanager
def acting(user: str | None) -> Iterator[None]:
    """``MLGOV_USER`` set to ``user`` for a block (None: left as it is), restored afterwards."""
    if user is None:
        yield
        return
    old = os.environ.get(MLGOV_USER.name)
    os.environ[MLGOV_USER.name] = user
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(MLGOV_USER.name, None)
        else:
            os.environ[MLGOV_USER.name] = old


def launch(project_uri: str, entry: str, parameters: Mapping[str, str], run_name: str) -> tuple[str, int]:
    """Run one entry point of the project as its own MLflow run (in this environment); (run id, exit code).

    Asynchronous so the step's exit code (3 refused, 5 breach...) is known; its run is marked
    FINISHED or FAILED as ``mlflow run`` would, and nested under the pipeline's run.
    """
    import mlflow.projects
    from mlflow import MlflowClient

    submitted = mlflow.projects.run(
        project_uri, entry, parameters=dict(parameters), env_manager="local", synchronous=False,
        experiment_id=os.environ.get("MLFLOW_EXPERIMENT_ID") or None, run_name=run_name,
    )
    client = MlflowClient()
    parent = os.environ.get("MLFLOW_RUN_ID")
    try:
        if parent:
            client.set_tag(submitted.run_id, "mlflow.parentRunId", parent)
        submitted.wait()
    except BaseException:
        submitted.cancel()
        client.set_terminated(submitted.run_id, "FAILED")
        raise
    code = submitted.command_proc.returncode
    if client.get_run(submitted.run_id).info.status == "RUNNING":
        client.set_terminated(submitted.run_id, "FINISHED" if code == 0 else "FAILED")
    return submitted.run_id, code


class Pipeline:
    """One pipeline invocation for one model (`run` returns when nothing is left to do now)."""

    def __init__(self, params: PipelineParams, project_uri: str, *, client=None,
                 echo: Callable[[str], None] = print,
                 launcher: Callable[[str, str, Mapping[str, str], str], tuple[str, int]] = launch,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        from mlflow_governance.client.governance import GovernanceClient

        self.params, self.project_uri = params, project_uri
        self.client = client or GovernanceClient()
        # The sub-runs print to the same console: the pipeline's own lines are marked.
        self.echo = lambda line: echo(f"{PREFIX}{line}")
        self.launcher, self.sleep, self.clock = launcher, sleep, clock
        self.signed_in = self._signed_in_user()
        self.monitored = False

    def _signed_in_user(self) -> str | None:
        """Against a server: the credentials' user, who must be every step's user; locally None."""
        if not self.client.remote:
            return None
        from mlflow_governance.client.rest import credentials_problem
        from mlflow_governance.core.environment_variables import MLFLOW_TRACKING_USERNAME

        username = MLFLOW_TRACKING_USERNAME.get()
        if not username:
            raise MlflowException(f"{credentials_problem(None, None)} (registry {self.client.registry_uri})",
                                  error_code=UNAUTHENTICATED)
        named = sorted({u for u in self.params.users.values() if u})
        if any(u != username for u in named):
            who = ", ".join(named)
            raise MlflowException(
                f"against a governance server ({self.client.registry_uri}) each person signs in with their own "
                f"credentials, so the pipeline cannot act as {who}: run the stage entry points (mlflow run . -e "
                "acquire / train / validate / monitor) as each person, or give the pipeline only the steps of "
                "the user whose MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are set",
                error_code=UNAUTHENTICATED,
            )
        return username

    def user_of(self, step: Step, status: Mapping[str, Any]) -> str:
        user = (self.params.users.get(step.user_param) or "").strip() or self.signed_in
        if not user:
            raise MlflowException(
                f"the {step.entry} step is due ({describe(status, None)}) but no {step.user_param} is given: "
                f"pass -P {step.user_param}=USER, a {step.role}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return user

    def _inputs(self, step: Step, version: int | None) -> dict[str, str]:
        p = self.params
        needed: dict[str, dict[str, str]] = {
            "acquire": {"flights_url": p.flights_url, "airports_url": p.airports_url},
            "validate": {"validation_data": p.validation_data},
        }
        for name, value in needed.get(step.entry, {}).items():
            if not value.strip():
                raise MlflowException(
                    f"the {step.entry} step is due for {p.model!r} but no {name} is given: pass -P {name}=...",
                    error_code=INVALID_PARAMETER_VALUE,
                )
        if step is ACQUIRE:
            return {"flights_url": p.flights_url, "airports_url": p.airports_url, "months": p.months, "model": p.model}
        if step is TRAIN:
            return {"model": p.model, "quick": "true" if p.quick else "false"}
        if step is VALIDATE:
            return {"model": p.model, "version": str(version), "data": p.validation_data,
                    "config": p.validation_config}
        return {"model": p.model, "payload_url": p.payload_url, "version": str(version)}

    def _check(self, step: Step, user: str, version: int | None) -> None:
        """`GovernanceClient.require` as ``user``: the refusal the step's own action would meet, before its run."""
        from mlflow_governance.core.errors import GovernanceError

        action = workflow.REJECT if step is MONITOR else workflow.SUBMIT
        try:
            with acting(None if self.signed_in else user):
                self.client.require(self.params.model, action, version, new_version=step is TRAIN)
        except GovernanceError as exc:
            raise GovernanceError(exc.kind, f"the {step.entry} step as {user} is refused before it starts: "
                                            f"{exc.reason}") from None

    def run_step(self, due: Due, status: Mapping[str, Any]) -> Mapping[str, Any]:
        step, model = due.step, self.params.model
        user = self.user_of(step, status)
        inputs = self._inputs(step, due.version)
        self._check(step, user, due.version)
        with acting(None if self.signed_in else user):
            run_id, code = self.launcher(self.project_uri, step.entry, inputs, f"{step.entry} ({user})")
        after = self.client.status(model)
        if code != 0:
            raise StepFailed(f"the {step.entry} step as {user} failed (exit {code}, run {run_id}); "
                             f"{describe(after, due.version)}", code if code > 0 else 1)
        if step is MONITOR:
            version = next(v for v in after["versions"] if v["version"] == due.version)
            self.echo(f"{step.entry} as {user}: {model} version {due.version} evaluated, {version['stage']}, "
                      f"usability {version.get('usability')} (run {run_id})")
            return after
        if position(after) == position(status):
            raise StepFailed(f"the {step.entry} step as {user} ran (run {run_id}) but {describe(after, due.version)} "
                             "did not move",
                             EXIT_STEP_DID_NOT_MOVE)
        version = newest_version(after) if step is TRAIN else due.version
        subject = model + (f" version {version}" if version is not None else "")
        self.echo(f"{step.entry} as {user}: {subject} {stage_of(status, due.version)} -> {stage_of(after, version)} "
                  f"(run {run_id})")
        return after

    def wait(self, move: Wait, status: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Poll up to ``wait_seconds`` for a person's move; the new status, or None when it did not come."""
        what = f"{self.params.model}" + (f" version {move.version}" if move.version is not None else "")
        hint = _HINTS.get(move.stage, "")
        self.echo(f"waiting for the {move.role}: {what} is in {move.stage} (the {move.role} {move.actions} it{hint})")
        deadline = self.clock() + max(self.params.wait_seconds, 0.0)
        while self.clock() < deadline:
            self.sleep(min(POLL_SECONDS, max(deadline - self.clock(), 0.0)))
            now = self.client.status(self.params.model)
            if position(now) != position(status):
                return now
        self.echo(f"run the pipeline again after the {move.role} {move.actions} {what}{hint}")
        return None

    def run(self) -> str:
        """Run every step whose turn it is; returns the last line printed."""
        status = self.client.status(self.params.model)
        while True:
            move = next_move(status)
            if isinstance(move, Due):
                status = self.run_step(move, status)
                continue
            version = None if self.monitored else monitor_due(status, self.params.payload_url)
            if version is not None:
                status = self.run_step(Due(MONITOR, version), status)
                self.monitored = True
                continue
            if isinstance(move, Finished):
                line = f"nothing to do: {move.reason}"
                self.echo(line)
                return line
            moved = self.wait(move, status)
            if moved is None:
                return "stopped"
            status = moved


def run_pipeline(params: PipelineParams, project_uri: str, **kwargs: Any) -> str:
    """Run the pipeline for ``params.model`` (see `Pipeline`); raises `StepFailed` or `MlflowException`."""
    if not params.model.strip():
        raise MlflowException("model must not be empty", error_code=INVALID_PARAMETER_VALUE)
    if params.wait_seconds < 0:
        raise MlflowException("wait_seconds must be 0 or more", error_code=INVALID_PARAMETER_VALUE)
    return Pipeline(params, project_uri, **kwargs).run()
