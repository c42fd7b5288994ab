"""The daily pipeline as an AWS Step Functions state machine (Amazon States Language), generated
from the one step list (`orchestration.pipeline_steps`: bronze, silver, quality, gold) and the
retry and timeout settings of `emr/orchestration.yaml`, and the EventBridge Scheduler schedule that
starts it every day.

The state machine (STANDARD, named `stepfunctions.state_machine_name`) takes either
`{"date": "YYYY-MM-DD"}` (`run`, or anyone starting a day by hand) or
`{"scheduled_time": "2024-01-04T02:00:00Z"}` (the schedule: Scheduler fills in the time it fired
and cannot compute "yesterday", nor can ASL; the jobs' `--scheduled-time T` processes the UTC day
before T, `lakehouse.emr.schedule.processing_date`). The Choice `Day from the input` (the first
state) goes to a Pass state for the input given (`scheduled_time` when both are), which puts in
`$.day` what the steps take from it: `flag` and `value` (`--date D` or `--scheduled-time T`),
`name` for the job runs' names (`D` or `scheduled-T`), `text` for the failure notices (`D` or
`the UTC day before T`) and `rerun_date` for the command the notice gives (`D` or
`<the UTC day before T>`). An input with neither goes to the Fail state `No day in the input`
before any job runs.

Then one Task per step, in order, each an EMR Serverless job run it waits for
(`arn:aws:states:::emr-serverless:startJobRun.sync`), with the parameters `step_run_params` gives
the other orchestrators (`jobs/<step>.py --env ENV --date D`, bundle, role, logs) in the Step
Functions integration's PascalCase names, the day taken from `$.day`: `EntryPointArguments.$` is
`States.Array('--env', 'ENV', $.day.flag, $.day.value)` and `Name.$` a `States.Format` of
`$.day.name` (a job run's name may hold the time's `:`). The idempotency token is
`States.Format('{}-<step>-{}', $$.Execution.Name, $$.State.RetryCount)`: the same for a repeated
request of one attempt, but new for each retry, since EMR Serverless answers a known token with
the job run it started (a retry would otherwise get the failed run back); it must match
`[A-Za-z0-9._-]{1,64}`, so execution names are short and plain: `<env>-<date>`,
`<env>-<date>-rerun-<n>` (`run`) and `<env>-scheduled-<id>` (the schedule, `<id>` the invocation's
`<aws.scheduler.execution-id>`; no `:`, which an execution name may not hold).

Every step Task has `TimeoutSeconds` (`task_timeout_minutes`), one Retry of `States.ALL`
(`retries` attempts after `retry_delay_seconds`, times `retry_backoff_rate`, at most
`max_retry_delay_seconds`) and a Catch of `States.ALL` that keeps the error in `$.error` and goes
to `Notify <step> failure`: an SNS message to the account's topic (subject, env, day, step,
execution, error and cause, and the command that starts the day again), then the Fail state
`<step> failed`. Results go to `$.runs.<step>`, so the input and `$.day` reach every state. The
success path ends in the Succeed state `Pipeline succeeded` without a message of its own: each
job already publishes its outcome (`lakehouse.emr.notify`); the state machine's notice covers
what no job can tell (a run that never started, was cancelled on the timeout, or was killed).
Since a caught error ends in a Fail state, redriving a failed execution would only fail again:
`run --rerun` starts the day from bronze in a new execution instead.

`validate` checks a definition before every deploy (and the committed copies in tests).

The definition is committed per environment as `emr/stepfunctions/<env>.asl.json`
(`lakehouse emr stepfunctions render --env ENV --out ...`) with the application id as
`${ApplicationId}` (the `DefinitionSubstitutions` / `templatefile` syntax of CloudFormation and
Terraform); `deploy` puts the id of the application (found by name, or created) in its place.

`deploy` creates the state machine or updates it in place (found by name: idempotent), then
creates or updates its daily schedule `stepfunctions.schedule_name` (found by name too): the
universal target `arn:aws:scheduler:::aws-sdk:sfn:startExecution` with the StartExecution request
(`StateMachineArn`; `Name` `<env>-scheduled-<aws.scheduler.execution-id>`; as `Input`, the JSON
text `{"scheduled_time": "<aws.scheduler.scheduled-time>"}`), the scheduler role, and the
expression, timezone, flexible window, retry policy and dead-letter queue of the daily run of
emr/schedule.yaml. Its state is `stepfunctions.schedule_state`, DISABLED by default so that
deploying never doubles the built-in daily run; deploy refuses it ENABLED while the built-in one
is ENABLED in emr/schedule.yaml.

`run` starts the day's execution `<env>-<date>` unless the day already has one (then it reports the
latest; with `--rerun`, a new `<env>-<date>-rerun-<n>` unless one of the day's is still running).
The schedule's executions are not among the day's (their input names the time the schedule
fired, not the day): `run --date D` starts D even when the schedule already started it.
Step Functions keeps an execution name for 90 days after it closes, and answers a start with a
closed execution's name with `ExecutionAlreadyExists` (or with a running one's ARN when the input
is the same): both mean the day was already started.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from lakehouse.core.config import Config, ConfigError
from lakehouse.emr import serverless
from lakehouse.emr.bundle import BundleLayout
from lakehouse.emr.clients import AwsClients, Request, error_code
from lakehouse.emr.definitions import EmrDefinitions, OrchestrationDef, require_aws
from lakehouse.emr.orchestration import pipeline_steps, step_run_params
from lakehouse.emr.schedule import (
    EXECUTION_ID,
    SCHEDULED_TIME,
    ensure_group,
    group_plan,
    target_schedule_params,
    upsert_one,
    upsert_plan,
)

START_JOB_RUN_SYNC = "arn:aws:states:::emr-serverless:startJobRun.sync"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
# EventBridge Scheduler's universal target calling Step Functions StartExecution (the schedule).
START_EXECUTION_TARGET = "arn:aws:scheduler:::aws-sdk:sfn:startExecution"
# The EventBridge rule Step Functions manages in the account to learn that a job run ended (.sync).
SYNC_EVENTS_RULE = "StepFunctionsGetEventsForEMRServerlessJobRule"
APPLICATION_ID_PLACEHOLDER = "${ApplicationId}"
SUCCEEDED = "Pipeline succeeded"
RUNNING = "RUNNING"
# The states before the steps: which day the input names, and what the steps take from it.
CHOOSE_DAY = "Day from the input"
DAY_OF_SCHEDULE = "Day before the scheduled time"
DAY_OF_DATE = "Day of the date"
NO_DAY = "No day in the input"
_DAY = "<<date>>"  # stands for the day while the parameters are built


# ---------------------------------------------------------------- the definition (pure)


def notify_state(step: str) -> str:
    return f"Notify {step} failure"


def fail_state(step: str) -> str:
    return f"{step} failed"


def _literal(text: str) -> str:
    """`text` as a string literal of an intrinsic function (quotes, braces, backslash escaped)."""
    escaped = "".join("\\" + ch if ch in "'{}\\" else ch for ch in text)
    return f"'{escaped}'"


def _format(template: str, *args: str) -> str:
    """`States.Format(template, args...)`, where `{}` in `template` marks each argument."""
    parts = [_literal(part)[1:-1] for part in template.split("{}")]
    return f"States.Format('{'{}'.join(parts)}', {', '.join(args)})"


def _pascal(value: Any) -> Any:
    """The StartJobRun parameters with the Step Functions integration's names (`jobDriver` ->
    `JobDriver`, at every level; these parameters hold no free-form map whose keys must stay)."""
    if isinstance(value, dict):
        return {key[:1].upper() + key[1:]: _pascal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_pascal(item) for item in value]
    return value


def _replace(params: dict[str, Any], key: str, new_key: str, value: Any) -> dict[str, Any]:
    """`params` with `key` renamed to `new_key` and given `value`, in the same place."""
    return {(new_key if k == key else k): (value if k == key else v) for k, v in params.items()}


def task_parameters(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str, step: str
) -> dict[str, Any]:
    """The Task's Parameters: `step_run_params` of the step, with the day (`$.day`, which the
    states before the steps set from the input) and the token taken from the execution."""
    params = _pascal(step_run_params(config, defs, layout, application_id, step, _DAY, "token"))
    params = _replace(
        params,
        "ClientToken",
        "ClientToken.$",
        _format("{}-" + step + "-{}", "$$.Execution.Name", "$$.State.RetryCount"),
    )
    name_parts = params["Name"].split(_DAY)
    if len(name_parts) > 1:
        template = "{}".join(name_parts)
        dated = _format(template, *["$.day.name"] * (len(name_parts) - 1))
        params = _replace(params, "Name", "Name.$", dated)
    submit = params["JobDriver"]["SparkSubmit"]
    given, arguments = list(submit["EntryPointArguments"]), []
    while given:
        if given[:2] == ["--date", _DAY]:  # `--date D` or `--scheduled-time T`, from the input
            arguments += ["$.day.flag", "$.day.value"]
            del given[:2]
        else:
            arguments.append(_literal(given.pop(0)))
    params["JobDriver"]["SparkSubmit"] = _replace(
        submit,
        "EntryPointArguments",
        "EntryPointArguments.$",
        f"States.Array({', '.join(arguments)})",
    )
    if _DAY in json.dumps(params):
        raise ConfigError(f"step {step}: the date appears where the state machine cannot set it")
    return params


def retrier(o: OrchestrationDef) -> dict[str, Any]:
    """The one Retry of every step Task (emr/orchestration.yaml)."""
    return {
        "ErrorEquals": ["States.ALL"],
        "IntervalSeconds": o.retry_delay_seconds,
        "MaxAttempts": o.retries,
        "BackoffRate": o.retry_backoff_rate,
        "MaxDelaySeconds": o.max_retry_delay_seconds,
    }


def _notify(config: Config, defs: EmrDefinitions, step: str) -> dict[str, Any]:
    env, retries = config.env, defs.orchestration.retries
    message = (
        f"The daily pipeline of lakehouse {env} failed in step {step} for {{}} "
        f"after {retries} retries; the steps after it did not run. Execution: {{}}. "
        f"Error and cause: {{}}. To start the day again from the first step: "
        f"lakehouse emr stepfunctions run --env {env} --date {{}} --rerun"
    )
    return {
        "Type": "Task",
        "Comment": f"Tell the run's topic that step {step} failed, with the error and its cause",
        "Resource": SNS_PUBLISH,
        "Parameters": {
            "TopicArn": defs.account.sns_topic_arn,
            "Subject.$": _format(
                f"[lakehouse {env}] stepfunctions FAILED in {step} ({{}})", "$.day.name"
            ),
            "Message.$": _format(
                message,
                "$.day.text",
                "$$.Execution.Id",
                "States.JsonToString($.error)",
                "$.day.rerun_date",
            ),
            "MessageAttributes": {
                "env": {"DataType": "String", "StringValue": env},
                "job": {"DataType": "String", "StringValue": step},
                "status": {"DataType": "String", "StringValue": "FAILED"},
            },
        },
        "ResultPath": None,
        "Next": fail_state(step),
    }


def definition(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str
) -> dict[str, Any]:
    """The state machine of the daily pipeline (see the module docstring)."""
    o = defs.orchestration
    steps = pipeline_steps(defs)
    if not steps:
        raise ConfigError("emr/cluster.yaml: step_jobs is empty: the state machine has no step")
    states: dict[str, Any] = day_states(steps[0])
    for i, step in enumerate(steps):
        states[step] = {
            "Type": "Task",
            "Comment": f"jobs/{step}.py --env {config.env} --date D (or --scheduled-time T) on "
            "EMR Serverless, until the job run ends",
            "Resource": START_JOB_RUN_SYNC,
            "Parameters": task_parameters(config, defs, layout, application_id, step),
            "ResultPath": f"$.runs.{step}",
            "TimeoutSeconds": o.task_timeout_minutes * 60,
            "Retry": [retrier(o)],
            "Catch": [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": notify_state(step)}
            ],
            "Next": steps[i + 1] if i + 1 < len(steps) else SUCCEEDED,
        }
    states[SUCCEEDED] = {"Type": "Succeed"}
    for step in steps:
        states[notify_state(step)] = _notify(config, defs, step)
        states[fail_state(step)] = {
            "Type": "Fail",
            "Error": "StepFailed",
            "Cause": f"step {step} failed after {o.retries} retries; the SNS notification has "
            "the error and its cause",
        }
    states[NO_DAY] = {
        "Type": "Fail",
        "Error": "NoDay",
        "Cause": 'the input names no day: give {"date": "YYYY-MM-DD"} or '
        '{"scheduled_time": "<ISO time>"} (the UTC day before it)',
    }
    return {
        "Comment": f"lakehouse {config.env}: the daily pipeline ({' -> '.join(steps)}) on EMR "
        'Serverless for the day of the input {"date": "YYYY-MM-DD"}, or of '
        '{"scheduled_time": "<ISO time>"} (the UTC day before it, as the daily schedule starts '
        "it). Generated by `lakehouse emr stepfunctions`: edit emr/*.yaml, not this.",
        "StartAt": CHOOSE_DAY,
        "States": states,
    }


def day_states(first_step: str) -> dict[str, Any]:
    """The Choice on the input and the Pass states that put in `$.day` what the steps take from
    it (see the module docstring), then go to `first_step`."""

    def day(flag: str, value: str, name: str, text: str, rerun_date: str) -> dict[str, Any]:
        return {
            "flag": flag,
            "value.$": value,
            "name.$": name,
            "text.$": text,
            "rerun_date.$": rerun_date,
        }

    time = "$.scheduled_time"
    return {
        CHOOSE_DAY: {
            "Type": "Choice",
            "Comment": 'The day: {"scheduled_time": T} (the daily schedule) processes the UTC '
            'day before T, {"date": D} the day D',
            "Choices": [
                {"Variable": time, "IsPresent": True, "Next": DAY_OF_SCHEDULE},
                {"Variable": "$.date", "IsPresent": True, "Next": DAY_OF_DATE},
            ],
            "Default": NO_DAY,
        },
        DAY_OF_SCHEDULE: {
            "Type": "Pass",
            "Comment": "The steps run with --scheduled-time T: the jobs process the UTC day "
            "before T",
            "Parameters": day(
                "--scheduled-time",
                time,
                _format("scheduled-{}", time),
                _format("the UTC day before {}", time),
                _format("<the UTC day before {}>", time),
            ),
            "ResultPath": "$.day",
            "Next": first_step,
        },
        DAY_OF_DATE: {
            "Type": "Pass",
            "Comment": "The steps run with --date D",
            "Parameters": day("--date", "$.date", "$.date", "$.date", "$.date"),
            "ResultPath": "$.day",
            "Next": first_step,
        },
    }


def to_text(asl: dict[str, Any]) -> str:
    """The definition as Step Functions gets it (and, with a final newline, as committed)."""
    return json.dumps(asl, indent=2)


def committed_text(config: Config, defs: EmrDefinitions, layout: BundleLayout) -> str:
    """`emr/stepfunctions/<env>.asl.json`: the definition with the application id placeholder."""
    return to_text(definition(config, defs, layout, APPLICATION_ID_PLACEHOLDER)) + "\n"


# ---------------------------------------------------------------- validation (pure)


_TERMINAL = {"Succeed", "Fail"}
_TYPES = {"Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"}


def _targets(state: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, state name) of every transition out of `state`."""
    out = []
    if "Next" in state:
        out.append(("Next", state["Next"]))
    if "Default" in state:
        out.append(("Default", state["Default"]))
    out += [("Choices Next", c.get("Next")) for c in state.get("Choices", [])]
    out += [("Catch Next", c.get("Next")) for c in state.get("Catch", [])]
    return out


def validate(asl: dict[str, Any], orchestration: OrchestrationDef) -> list[str]:
    """What is wrong with the state machine `asl` (empty: nothing): the start and every transition
    (Next, a Choice's `Choices[].Next` and `Default`, a Catch's Next) lead to a state, every state
    is reachable from the start, every state but a Choice ends or goes on (a Choice goes on by its
    Choices only), and every Task other than a notification runs with the configured timeout and
    Retry and catches every error into an SNS notification."""
    states: dict[str, Any] = asl.get("States") or {}
    problems: list[str] = []
    start = asl.get("StartAt")
    if start not in states:
        problems.append(f"StartAt {start!r} is not a state")
    for name, state in states.items():
        kind = state.get("Type")
        if kind not in _TYPES:
            problems.append(f"state {name!r}: unknown Type {kind!r}")
            continue
        for field_name, target in _targets(state):
            if target not in states:
                problems.append(f"state {name!r}: {field_name} {target!r} is not a state")
        if kind == "Choice":
            if not state.get("Choices"):
                problems.append(f"state {name!r}: a Choice without Choices")
            if "Next" in state or "End" in state:
                problems.append(
                    f"state {name!r}: a Choice has no Next or End (its Choices and Default go on)"
                )
        elif kind not in _TERMINAL:
            if "Next" in state and state.get("End"):
                problems.append(f"state {name!r} has both Next and End")
            elif "Next" not in state and not state.get("End"):
                problems.append(f"state {name!r} has neither Next nor End")
        if kind == "Task" and state.get("Resource") != SNS_PUBLISH:
            problems += _task_problems(name, state, states, orchestration)
    problems += [f"state {name!r} is not reachable from StartAt" for name in _unreachable(asl)]
    return problems


def _task_problems(
    name: str, state: dict[str, Any], states: dict[str, Any], o: OrchestrationDef
) -> list[str]:
    problems = []
    timeout = o.task_timeout_minutes * 60
    if state.get("TimeoutSeconds") != timeout:
        problems.append(
            f"state {name!r}: TimeoutSeconds is {state.get('TimeoutSeconds')!r}, not {timeout}"
        )
    retry = state.get("Retry")
    if not retry:
        problems.append(f"state {name!r} has no Retry")
    elif retry != [retrier(o)]:
        problems.append(
            f"state {name!r}: Retry is {json.dumps(retry)}, not {json.dumps([retrier(o)])}"
        )
    catchers = [c for c in state.get("Catch", []) if "States.ALL" in c.get("ErrorEquals", [])]
    if not catchers:
        problems.append(f"state {name!r} has no Catch of States.ALL")
    else:
        target = states.get(catchers[0].get("Next"), {})
        if target.get("Type") != "Task" or target.get("Resource") != SNS_PUBLISH:
            problems.append(
                f"state {name!r}: its Catch goes to {catchers[0].get('Next')!r}, "
                "not to an SNS notification"
            )
    return problems


def _unreachable(asl: dict[str, Any]) -> list[str]:
    states: dict[str, Any] = asl.get("States") or {}
    seen: set[str] = set()
    todo = [asl.get("StartAt")]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(str(name))
        todo += [target for _, target in _targets(states[name])]
    return [name for name in states if name not in seen]


# ---------------------------------------------------------------- requests (pure)


def _role(defs: EmrDefinitions) -> str:
    if not defs.account.stepfunctions_role_arn:
        raise ConfigError(
            f"emr/account.{defs.env}.yaml: missing key 'stepfunctions_role_arn' (the state "
            f"machine's role, with emr/iam/{defs.env}/stepfunctions-role-policy.json)"
        )
    return defs.account.stepfunctions_role_arn


def checked_definition(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str
) -> str:
    """The definition as deployed; a ConfigError lists its problems when it does not validate."""
    asl = definition(config, defs, layout, application_id)
    problems = validate(asl, defs.orchestration)
    if problems:
        raise ConfigError("the state machine definition is invalid: " + "; ".join(problems))
    return to_text(asl)


def create_request(config: Config, defs: EmrDefinitions, text: str) -> Request:
    tags = {"project": config.project, "env": config.env, **defs.account.tags}
    return Request(
        "stepfunctions",
        "create_state_machine",
        {
            "name": defs.orchestration.stepfunctions.state_machine_name,
            "definition": text,
            "roleArn": _role(defs),
            "type": "STANDARD",
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        },
    )


def update_request(defs: EmrDefinitions, arn: str, text: str) -> Request:
    return Request(
        "stepfunctions",
        "update_state_machine",
        {"stateMachineArn": arn, "definition": text, "roleArn": _role(defs)},
    )


def list_state_machines_request() -> Request:
    return Request("stepfunctions", "list_state_machines", {})


def machine_placeholder(defs: EmrDefinitions) -> str:
    return f"<ARN of state machine {defs.orchestration.stepfunctions.state_machine_name!r}>"


def state_machine_arn(config: Config, defs: EmrDefinitions) -> str:
    """The state machine's ARN, known before it exists (the scheduler role's policy, the schedule
    a dry run prints): `arn:aws:states:<region>:<account>:stateMachine:<name>`."""
    require_aws(config)
    assert config.aws is not None
    name = defs.orchestration.stepfunctions.state_machine_name
    return f"arn:aws:states:{config.aws.region}:{defs.account.account_id}:stateMachine:{name}"


def scheduled_execution_name(env: str) -> str:
    """The name of an execution the schedule starts: `dev-scheduled-<aws.scheduler.execution-id>`
    (unique per invocation; never one of `run`'s `<env>-<date>...`; no `:`, which an execution name
    may not hold, so not the scheduled time)."""
    return f"{env}-scheduled-{EXECUTION_ID}"


def start_execution_request(config: Config, machine_arn: str) -> dict[str, Any]:
    """The StartExecution request the schedule sends (the API's names, as the universal target
    wants them): the day is the one before the time the schedule fired."""
    return {
        "StateMachineArn": machine_arn,
        "Name": scheduled_execution_name(config.env),
        "Input": json.dumps({"scheduled_time": SCHEDULED_TIME}),
    }


def _one_daily_schedule(defs: EmrDefinitions) -> None:
    """Refuse a daily schedule of the state machine ENABLED beside the built-in daily run."""
    sf, s = defs.orchestration.stepfunctions, defs.schedule
    if sf.schedule_state == "ENABLED" and s.state == "ENABLED":
        raise ConfigError(
            f"stepfunctions.schedule_state (emr/orchestration.yaml) is ENABLED while the daily "
            f"run {s.name!r} (state in emr/schedule.yaml) is ENABLED too: every day would run "
            f"twice. When Step Functions takes over, set state: DISABLED in emr/schedule.yaml "
            f"and run `lakehouse emr schedule --env {defs.env}`"
        )


def schedule_params(config: Config, defs: EmrDefinitions, machine_arn: str) -> dict[str, Any]:
    """CreateSchedule / UpdateSchedule parameters of the state machine's daily schedule: the
    expression, timezone, group, retry policy and dead-letter queue of the daily run of
    emr/schedule.yaml, its own name and state (emr/orchestration.yaml)."""
    _one_daily_schedule(defs)
    sf = defs.orchestration.stepfunctions
    steps = ", ".join(pipeline_steps(defs))
    return target_schedule_params(
        defs,
        sf.schedule_name,
        defs.schedule.expression,
        sf.schedule_state,
        f"Daily lakehouse pipeline ({steps}) as the Step Functions state machine "
        f"{sf.state_machine_name}",
        start_execution_request(config, machine_arn),
        target=START_EXECUTION_TARGET,
    )


def deploy_plan(config: Config, defs: EmrDefinitions, layout: BundleLayout) -> list[Request]:
    """What `deploy` sends, for `--dry-run` (the application id is known only once found)."""
    app = defs.serverless.application.name
    text = checked_definition(config, defs, layout, f"<id of application {app!r}>")
    name = defs.orchestration.stepfunctions.state_machine_name
    group = defs.schedule.group
    return [
        serverless.list_applications_request(),
        serverless.create_application_request(config, defs).only_if(
            f"only if no application is named {app!r}"
        ),
        list_state_machines_request(),
        update_request(defs, machine_placeholder(defs), text).only_if(
            f"if a state machine is named {name!r}"
        ),
        create_request(config, defs, text).only_if("if none is"),
        *group_plan(group),
        *upsert_plan(group, schedule_params(config, defs, state_machine_arn(config, defs))),
    ]


def execution_name(env: str, day: date) -> str:
    """The day's first execution: `dev-2024-01-03`."""
    return f"{env}-{day.isoformat()}"


def execution_input(day: date) -> str:
    return json.dumps({"date": day.isoformat()})


def start_request(machine_arn: str, name: str, day: date) -> Request:
    return Request(
        "stepfunctions",
        "start_execution",
        {"stateMachineArn": machine_arn, "name": name, "input": execution_input(day)},
    )


def run_plan(config: Config, defs: EmrDefinitions, day: date, rerun: bool) -> list[Request]:
    """What `run` sends, for `--dry-run`."""
    machine = machine_placeholder(defs)
    base = execution_name(config.env, day)
    if rerun:
        name = f"{base}-rerun-<n>"
        when = (
            f"only if none of the day's executions ({base}, {base}-rerun-*) is running; <n>: "
            f"how many the day has (with none, the name is {base})"
        )
    else:
        name, when = base, f"only if the day has no execution yet ({base}, {base}-rerun-*)"
    return [
        list_state_machines_request(),
        Request("stepfunctions", "list_executions", {"stateMachineArn": machine}),
        start_request(machine, name, day).only_if(when),
        Request(
            "stepfunctions", "describe_execution", {"executionArn": f"<ARN of execution {name!r}>"}
        ).only_if("only if StartExecution answers ExecutionAlreadyExists (started meanwhile)"),
    ]


# ---------------------------------------------------------------- actions


def find_state_machine(sfn: Any, name: str) -> str | None:
    """The ARN of the state machine called `name`, if any."""
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page.get("stateMachines", []):
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
    return None


def deploy(
    clients: AwsClients,
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    log: Callable[[str], None] = print,
) -> str:
    """Create the state machine, or update it in place when one has its name, then its daily
    schedule likewise; return the state machine's ARN. The definition is validated first: an
    invalid one is never sent."""
    _role(defs)
    _one_daily_schedule(defs)
    checked_definition(config, defs, layout, APPLICATION_ID_PLACEHOLDER)  # before any request
    app_id = serverless.ensure_application(clients.client("emr-serverless"), config, defs, log)
    text = checked_definition(config, defs, layout, app_id)
    name = defs.orchestration.stepfunctions.state_machine_name
    arn = find_state_machine(clients.client("stepfunctions"), name)
    if arn is not None:
        clients.call(update_request(defs, arn, text))
        log(f"updated state machine {name}: {arn}")
    else:
        arn = str(clients.call(create_request(config, defs, text))["stateMachineArn"])
        log(f"created state machine {name}: {arn}")
    group, sf = defs.schedule.group, defs.orchestration.stepfunctions
    ensure_group(clients, group)
    upsert_one(clients, group, schedule_params(config, defs, arn), log)
    if sf.schedule_state == "DISABLED":
        log(
            f"schedule {sf.schedule_name} is DISABLED (stepfunctions.schedule_state, "
            "emr/orchestration.yaml): the state machine runs only the days `run` starts"
        )
    return arn


@dataclass(frozen=True)
class ExecutionRef:
    """An execution of one day: its ARN, name, status when seen, and whether this call started
    it."""

    arn: str
    name: str
    status: str
    started: bool


def day_executions(sfn: Any, machine_arn: str, env: str, day: date) -> list[dict[str, Any]]:
    """The day's executions (`<env>-<date>`, `<env>-<date>-rerun-<n>`), the latest first. Those the
    schedule started (`<env>-scheduled-<id>`) are not found: only their input tells their day (the
    one before `scheduled_time`), and ListExecutions gives no input."""
    base = execution_name(env, day)
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn):
        found += [
            e
            for e in page.get("executions", [])
            if e["name"] == base or e["name"].startswith(f"{base}-rerun-")
        ]
    return sorted(found, key=lambda e: e["startDate"], reverse=True)


def run(
    clients: AwsClients,
    config: Config,
    defs: EmrDefinitions,
    day: date,
    *,
    rerun: bool = False,
    log: Callable[[str], None] = print,
) -> ExecutionRef:
    """Start the day's execution, unless the day has one (then the latest is returned and nothing
    is started). With `rerun`, start a new one unless one of the day's is still running."""
    sfn = clients.client("stepfunctions")
    machine_name = defs.orchestration.stepfunctions.state_machine_name
    machine = find_state_machine(sfn, machine_name)
    if machine is None:
        raise LookupError(
            f"no state machine is named {machine_name!r}: "
            f"run `lakehouse emr stepfunctions deploy --env {config.env}` first"
        )
    existing = day_executions(sfn, machine, config.env, day)
    blocking = [e for e in existing if e["status"] == RUNNING] if rerun else existing
    if blocking:
        e = blocking[0]
        hint = "" if rerun else " (--rerun starts a new one)"
        log(
            f"execution {e['name']} already exists: {e['executionArn']} ({e['status']}); "
            f"not starting another{hint}"
        )
        return ExecutionRef(str(e["executionArn"]), str(e["name"]), str(e["status"]), False)
    base = execution_name(config.env, day)
    names = {e["name"] for e in existing}
    name, n = base, len(existing)
    while name in names:
        name = f"{base}-rerun-{n}"
        n += 1
    try:
        response = clients.call(start_request(machine, name, day))
    except ClientError as exc:
        if error_code(exc) != "ExecutionAlreadyExists":
            raise
        arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
        status = str(sfn.describe_execution(executionArn=arn)["status"])
        log(f"execution {name} already exists: {arn} ({status}); not starting another")
        return ExecutionRef(arn, name, status, False)
    arn = str(response["executionArn"])
    log(f"started execution {name}: {arn}")
    return ExecutionRef(arn, name, RUNNING, True)
