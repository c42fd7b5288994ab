"""The daily pipeline as a Step Functions state machine: generated from the one step list with the
configured timeout, retries and failure notices; the day from either input, `{"date": D}` or the
daily schedule's `{"scheduled_time": T}` (evaluated here as Step Functions would); checked by
`validate` before every deploy; created, then updated in place, with its DISABLED daily schedule,
on a moto server; started once per day (again only with `--rerun`); its `--dry-run`s print the
exact requests; the committed definitions are up to date."""

from __future__ import annotations

import copy
import json
import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import botocore.endpoint
import pytest

import moto_server
from lakehouse.core.config import PROJECT_ROOT, load_config
from lakehouse.emr import schedule
from lakehouse.emr.bundle import bundle_layout
from lakehouse.emr.definitions import load_definitions
from lakehouse.emr.orchestration import retry_delays_seconds, step_run_params
from lakehouse.emr.stepfunctions import (
    APPLICATION_ID_PLACEHOLDER,
    committed_text,
    definition,
    scheduled_execution_name,
    validate,
)
from moto_server import capture, run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto

ASL_DIR = PROJECT_ROOT / "emr" / "stepfunctions"
MACHINE = "lakehouse-dev-daily"
MACHINE_ARN = f"arn:aws:states:eu-west-1:123456789012:stateMachine:{MACHINE}"
ROLE = "arn:aws:iam::123456789012:role/lakehouse-dev-stepfunctions"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:lakehouse-dev-runs"
SCHEDULE = "lakehouse-dev-stepfunctions-daily"
SCHEDULE_ARN = f"arn:aws:scheduler:eu-west-1:123456789012:schedule/default/{SCHEDULE}"
SCHEDULER_ROLE = "arn:aws:iam::123456789012:role/lakehouse-dev-scheduler"
DLQ = "arn:aws:sqs:eu-west-1:123456789012:lakehouse-dev-scheduler-dlq"
# What Scheduler fills in: the time it fired and the invocation's id (its documented example).
FIRED = "2024-01-04T02:00:00Z"
INVOCATION = "d32c5kddcf5bb8c3"
CHOOSE, BY_SCHEDULE, BY_DATE, NO_DAY = (
    "Day from the input",
    "Day before the scheduled time",
    "Day of the date",
    "No day in the input",
)
ARTIFACTS = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"
STEPS = ["bronze", "silver", "quality", "gold"]
RETRY = {
    "ErrorEquals": ["States.ALL"],
    "IntervalSeconds": 300,
    "MaxAttempts": 3,
    "BackoffRate": 2.0,
    "MaxDelaySeconds": 1800,
}


def _asl(env: str = "dev", application_id: str = "app-1") -> dict[str, Any]:
    config, defs = load_config(env), load_definitions(env)
    assert config.aws is not None
    layout = bundle_layout(config.aws.artifacts_uri, defs.bundle, None)
    return definition(config, defs, layout, application_id)


def _check(asl: dict[str, Any]) -> list[str]:
    return validate(asl, load_definitions("dev").orchestration)


# ---------------------------------------------------------------- a tiny ASL evaluator
# Just what the definition uses before and in its Tasks: `$.a.b` and `$$.A.B` paths, string
# literals, States.Format, States.Array and States.JsonToString, Choice rules with IsPresent, and
# Pass states with Parameters and a ResultPath `$.x`.


def _path(data: Any, path: str) -> Any:
    for key in path.split(".")[1:]:
        data = data[key]
    return data


def _arguments(text: str) -> list[str]:
    """The top-level, comma-separated arguments of an intrinsic function, unevaluated."""
    parts, current, depth, quoted, escaped = [], "", 0, False, False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == "'":
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    return [*parts, current.strip()]


def _text(literal: str, values: list[str] | None = None) -> str:
    """A string literal's text; with `values`, a States.Format template filled in."""
    assert literal[0] == literal[-1] == "'", literal
    chars, out, given = iter(literal[1:-1]), "", iter(values or [])
    for ch in chars:
        if ch == "\\":
            out += next(chars)
        elif ch == "{" and values is not None:
            assert next(chars) == "}"
            out += next(given)
        else:
            out += ch
    assert next(given, None) is None, f"more arguments than {{}} in {literal}"
    return out


def _evaluate(expression: str, data: Any, context: Any) -> Any:
    if expression.startswith("$$."):
        return _path(context, expression[1:])
    if expression.startswith("$."):
        return _path(data, expression)
    if expression.startswith("'"):
        return _text(expression)
    function, _, rest = expression.partition("(")
    assert rest.endswith(")"), expression
    arguments = _arguments(rest[:-1])
    if function == "States.Format":
        template, *args = arguments
        return _text(template, [str(_evaluate(a, data, context)) for a in args])
    values = [_evaluate(a, data, context) for a in arguments]
    if function == "States.Array":
        return values
    if function == "States.JsonToString":
        return json.dumps(values[0], separators=(",", ":"))
    raise AssertionError(f"not an intrinsic the definition uses: {function}")


def _resolve(parameters: Any, data: Any, context: Any) -> Any:
    """`parameters` as the state sends them: every `key.$` evaluated into `key`."""
    if isinstance(parameters, dict):
        return {
            key.removesuffix(".$"): _evaluate(value, data, context)
            if key.endswith(".$")
            else _resolve(value, data, context)
            for key, value in parameters.items()
        }
    if isinstance(parameters, list):
        return [_resolve(item, data, context) for item in parameters]
    return parameters


def _through_the_day_states(
    asl: dict[str, Any], execution_input: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Run the Choice and Pass states from the start on `execution_input`: the first other state
    reached, and the data it gets."""
    data, name = copy.deepcopy(execution_input), asl["StartAt"]
    while (state := asl["States"][name])["Type"] in ("Choice", "Pass"):
        if state["Type"] == "Choice":
            name = state["Default"]
            for rule in state["Choices"]:
                assert set(rule) == {"Variable", "IsPresent", "Next"}, rule
                try:
                    _path(data, rule["Variable"])
                    present = True
                except KeyError:
                    present = False
                if present == rule["IsPresent"]:
                    name = rule["Next"]
                    break
        else:
            assert re.fullmatch(r"\$\.\w+", state["ResultPath"])
            data[state["ResultPath"][2:]] = _resolve(state["Parameters"], data, {})
            name = state["Next"]
    return name, data


def _context(execution: str, retry: int = 0) -> dict[str, Any]:
    arn = f"arn:aws:states:eu-west-1:123456789012:execution:{MACHINE}:{execution}"
    return {"Execution": {"Name": execution, "Id": arn}, "State": {"RetryCount": retry}}


# ---------------------------------------------------------------- the definition


def test_the_steps_run_in_order_each_timed_retried_and_caught_into_a_notice() -> None:
    asl = _asl()
    states = asl["States"]

    assert asl["StartAt"] == CHOOSE
    assert list(states) == [
        CHOOSE,
        BY_SCHEDULE,
        BY_DATE,
        "bronze",
        "silver",
        "quality",
        "gold",
        "Pipeline succeeded",
        "Notify bronze failure",
        "bronze failed",
        "Notify silver failure",
        "silver failed",
        "Notify quality failure",
        "quality failed",
        "Notify gold failure",
        "gold failed",
        NO_DAY,
    ]
    assert states[CHOOSE] == {
        "Type": "Choice",
        "Comment": 'The day: {"scheduled_time": T} (the daily schedule) processes the UTC day '
        'before T, {"date": D} the day D',
        "Choices": [
            {"Variable": "$.scheduled_time", "IsPresent": True, "Next": BY_SCHEDULE},
            {"Variable": "$.date", "IsPresent": True, "Next": BY_DATE},
        ],
        "Default": NO_DAY,
    }
    assert states[BY_SCHEDULE]["Next"] == states[BY_DATE]["Next"] == "bronze"
    assert states[BY_SCHEDULE]["ResultPath"] == states[BY_DATE]["ResultPath"] == "$.day"
    assert states[NO_DAY]["Type"] == "Fail"
    for step, after in zip(STEPS, [*STEPS[1:], "Pipeline succeeded"], strict=True):
        task = states[step]
        assert task["Type"] == "Task"
        assert task["Resource"] == "arn:aws:states:::emr-serverless:startJobRun.sync"
        assert task["TimeoutSeconds"] == 2 * 60 * 60
        assert task["Retry"] == [RETRY]
        assert task["Catch"] == [
            {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.error",
                "Next": f"Notify {step} failure",
            }
        ]
        assert task["ResultPath"] == f"$.runs.{step}"  # the input and $.day stay
        assert task["Next"] == after
        assert states[f"Notify {step} failure"]["Next"] == f"{step} failed"
        assert states[f"{step} failed"]["Type"] == "Fail"
    assert states["Pipeline succeeded"] == {"Type": "Succeed"}
    assert _check(asl) == []
    assert validate(_asl("prod"), load_definitions("prod").orchestration) == []


def test_the_waits_before_the_retries_are_the_other_orchestrators() -> None:
    (retry,) = _asl()["States"]["silver"]["Retry"]
    waits = [
        min(retry["IntervalSeconds"] * retry["BackoffRate"] ** i, retry["MaxDelaySeconds"])
        for i in range(retry["MaxAttempts"])
    ]

    assert waits == retry_delays_seconds(load_definitions("dev")) == [300.0, 600.0, 1200.0]


def test_a_step_runs_the_same_job_as_elsewhere_with_the_day_from_the_input() -> None:
    parameters = _asl()["States"]["bronze"]["Parameters"]
    config, defs = load_config("dev"), load_definitions("dev")
    assert config.aws is not None
    layout = bundle_layout(config.aws.artifacts_uri, defs.bundle, None)
    same = step_run_params(config, defs, layout, "app-1", "bronze", "2024-01-03", "t")

    assert parameters == {
        "ApplicationId": "app-1",
        "ClientToken.$": ("States.Format('{}-bronze-{}', $$.Execution.Name, $$.State.RetryCount)"),
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/lakehouse-dev-emr-job",
        "Name.$": "States.Format('daily-pipeline-bronze-{}', $.day.name)",
        "JobDriver": {
            "SparkSubmit": {
                "EntryPoint": f"{ARTIFACTS}/jobs/bronze.py",
                "EntryPointArguments.$": "States.Array('--env', 'dev', $.day.flag, $.day.value)",
                "SparkSubmitParameters": same["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"],
            }
        },
        "ConfigurationOverrides": {
            "MonitoringConfiguration": {
                "S3MonitoringConfiguration": {"LogUri": "s3://lakehouse-dev-logs/emr/serverless/"},
                "CloudWatchLoggingConfiguration": {
                    "Enabled": True,
                    "LogGroupName": "/aws/emr-serverless/lakehouse-dev",
                },
            }
        },
        "ExecutionTimeoutMinutes": 120,
    }
    assert same["name"] == "daily-pipeline-bronze-2024-01-03"
    assert same["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--env", "dev", "--date", "2024-01-03"
    ]  # fmt: skip
    # ... which is what the Task sends for the input {"date": "2024-01-03"}.
    _, data = _through_the_day_states(_asl(), {"date": "2024-01-03"})
    sent = _resolve(parameters, data, _context("dev-2024-01-03"))
    assert sent == {
        **_pascal_like(same, sent),
        "ClientToken": "dev-2024-01-03-bronze-0",
    }


def _pascal_like(params: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    """`params` (the API's camelCase names) with the keys of `like` (the integration's PascalCase),
    where `like` has them (StartJobRun's retryPolicy is not a parameter of the integration)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        pascal = key[:1].upper() + key[1:]
        if pascal not in like:
            continue
        out[pascal] = _pascal_like(value, like[pascal]) if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize(
    ("execution_input", "execution", "day_arguments", "run_name"),
    [
        (
            {"date": "2024-01-03"},
            "dev-2024-01-03",
            ["--date", "2024-01-03"],
            "2024-01-03",
        ),
        (
            {"scheduled_time": FIRED},
            f"dev-scheduled-{INVOCATION}",
            ["--scheduled-time", FIRED],
            f"scheduled-{FIRED}",
        ),
        # Both: the schedule's time (Scheduler sends only that; a person sends only a date).
        (
            {"scheduled_time": FIRED, "date": "2024-02-01"},
            "dev-2024-02-01",
            ["--scheduled-time", FIRED],
            f"scheduled-{FIRED}",
        ),
    ],
)
def test_either_input_gives_every_step_its_day(
    execution_input: dict[str, Any], execution: str, day_arguments: list[str], run_name: str
) -> None:
    asl = _asl()

    first, data = _through_the_day_states(asl, execution_input)

    assert first == "bronze"
    for step in STEPS:
        for retry in range(4):
            sent = _resolve(asl["States"][step]["Parameters"], data, _context(execution, retry))
            arguments = sent["JobDriver"]["SparkSubmit"]["EntryPointArguments"]
            assert arguments == ["--env", "dev", *day_arguments]
            assert sent["Name"] == f"daily-pipeline-{step}-{run_name}"
            assert sent["ClientToken"] == f"{execution}-{step}-{retry}"
            assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", sent["ClientToken"])
    # The day both inputs of the first two cases name, for the jobs.
    assert schedule.processing_date(FIRED) == date(2024, 1, 3)


def test_an_input_without_a_day_fails_before_any_step() -> None:
    asl = _asl()

    assert _through_the_day_states(asl, {}) == (NO_DAY, {})
    assert _through_the_day_states(asl, {"day": "2024-01-03"})[0] == NO_DAY
    assert asl["States"][NO_DAY] == {
        "Type": "Fail",
        "Error": "NoDay",
        "Cause": 'the input names no day: give {"date": "YYYY-MM-DD"} or '
        '{"scheduled_time": "<ISO time>"} (the UTC day before it)',
    }


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_scheduled_execution_names_and_their_tokens_stay_valid(env: str) -> None:
    """An execution name may not hold `:` (nor whitespace, brackets, ...) and has at most 80
    characters; the job runs' token is at most 64 of [A-Za-z0-9._-]. Scheduler's invocation id is
    16 characters in its documentation; allow 36 (a UUID)."""
    name = scheduled_execution_name(env).replace("<aws.scheduler.execution-id>", "x" * 36)
    retries = load_definitions(env).orchestration.retries

    assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name)
    assert not name.startswith(f"{env}-20")  # never one of `run`'s `<env>-<date>...`
    for step in STEPS:
        assert len(f"{name}-{step}-{retries}") <= 64


def test_a_failed_step_is_told_to_the_topic_with_env_date_step_error_and_cause() -> None:
    notify = _asl()["States"]["Notify quality failure"]

    assert notify == {
        "Type": "Task",
        "Comment": "Tell the run's topic that step quality failed, with the error and its cause",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {
            "TopicArn": TOPIC,
            "Subject.$": "States.Format('[lakehouse dev] stepfunctions FAILED in quality ({})', "
            "$.day.name)",
            "Message.$": "States.Format('The daily pipeline of lakehouse dev failed in step "
            "quality for {} after 3 retries; the steps after it did not run. Execution: {}. "
            "Error and cause: {}. To start the day again from the first step: lakehouse emr "
            "stepfunctions run --env dev --date {} --rerun', $.day.text, $$.Execution.Id, "
            "States.JsonToString($.error), $.day.rerun_date)",
            "MessageAttributes": {
                "env": {"DataType": "String", "StringValue": "dev"},
                "job": {"DataType": "String", "StringValue": "quality"},
                "status": {"DataType": "String", "StringValue": "FAILED"},
            },
        },
        "ResultPath": None,
        "Next": "quality failed",
    }
    assert _asl()["States"]["quality failed"] == {
        "Type": "Fail",
        "Error": "StepFailed",
        "Cause": "step quality failed after 3 retries; the SNS notification has the error and "
        "its cause",
    }


@pytest.mark.parametrize(
    ("execution_input", "execution", "day", "rerun"),
    [
        ({"date": "2024-01-03"}, "dev-2024-01-03", "2024-01-03", "--date 2024-01-03"),
        (
            {"scheduled_time": FIRED},
            f"dev-scheduled-{INVOCATION}",
            f"the UTC day before {FIRED}",
            f"--date <the UTC day before {FIRED}>",
        ),
    ],
)
def test_the_failure_notice_names_the_day_of_either_input(
    execution_input: dict[str, Any], execution: str, day: str, rerun: str
) -> None:
    asl = _asl()
    _, data = _through_the_day_states(asl, execution_input)
    # What the Catch of a step leaves for the notice: the error and its cause.
    data["error"] = {"Error": "States.Timeout", "Cause": "the job run took too long"}
    context = _context(execution)

    sent = _resolve(asl["States"]["Notify quality failure"]["Parameters"], data, context)

    name = data["day"]["name"]
    assert sent["Subject"] == f"[lakehouse dev] stepfunctions FAILED in quality ({name})"
    assert sent["Message"] == (
        f"The daily pipeline of lakehouse dev failed in step quality for {day} after 3 retries; "
        f"the steps after it did not run. Execution: {context['Execution']['Id']}. Error and "
        'cause: {"Error":"States.Timeout","Cause":"the job run took too long"}. To start the '
        f"day again from the first step: lakehouse emr stepfunctions run --env dev {rerun} "
        "--rerun"
    )
    # SNS takes a subject of less than 100 characters: the longest env and step, too.
    prod = _asl("prod")
    _, prod_data = _through_the_day_states(prod, execution_input)
    for step in STEPS:
        subject = prod["States"][f"Notify {step} failure"]["Parameters"]["Subject.$"]
        assert len(_evaluate(subject, prod_data, context)) < 100


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_committed_definitions_are_a_fresh_render(env: str) -> None:
    config, defs = load_config(env), load_definitions(env)
    assert config.aws is not None
    layout = bundle_layout(config.aws.artifacts_uri, defs.bundle, None)
    committed = (ASL_DIR / f"{env}.asl.json").read_text(encoding="utf-8")

    assert committed == committed_text(config, defs, layout)
    asl = json.loads(committed)
    assert validate(asl, defs.orchestration) == []
    assert {s["Parameters"]["ApplicationId"] for s in asl["States"].values() if "Retry" in s} == {
        APPLICATION_ID_PLACEHOLDER
    }
    assert sorted(p.name for p in ASL_DIR.iterdir()) == ["dev.asl.json", "prod.asl.json"]


# ---------------------------------------------------------------- validation


def test_validate_reports_an_unreachable_state() -> None:
    asl = _asl()
    asl["States"]["Cleanup"] = {"Type": "Pass", "End": True}

    assert _check(asl) == ["state 'Cleanup' is not reachable from StartAt"]


def test_validate_reports_a_transition_to_no_state() -> None:
    asl = _asl()
    asl["States"]["gold"]["Next"] = "Pipeline done"

    assert _check(asl) == [
        "state 'gold': Next 'Pipeline done' is not a state",
        "state 'Pipeline succeeded' is not reachable from StartAt",
    ]


def test_validate_reports_a_choice_pointing_nowhere() -> None:
    asl = _asl()
    asl["States"][CHOOSE]["Choices"][1]["Next"] = "Day of date"

    assert _check(asl) == [
        "state 'Day from the input': Choices Next 'Day of date' is not a state",
        "state 'Day of the date' is not reachable from StartAt",
    ]

    asl = _asl()
    asl["States"][CHOOSE]["Default"] = "No day"
    del asl["States"][CHOOSE]["Choices"][0]["Next"]

    assert _check(asl) == [
        "state 'Day from the input': Default 'No day' is not a state",
        "state 'Day from the input': Choices Next None is not a state",
        "state 'Day before the scheduled time' is not reachable from StartAt",
        "state 'No day in the input' is not reachable from StartAt",
    ]


def test_validate_reports_a_choice_that_goes_on_by_itself_or_chooses_nothing() -> None:
    asl = _asl()
    asl["States"][CHOOSE]["Next"] = "bronze"
    asl["States"][BY_DATE]["Type"] = "Choice"  # a Pass made a Choice: no Choices, but a Next

    assert _check(asl) == [
        "state 'Day from the input': a Choice has no Next or End (its Choices and Default go on)",
        "state 'Day of the date': a Choice without Choices",
        "state 'Day of the date': a Choice has no Next or End (its Choices and Default go on)",
    ]


def test_validate_reports_a_pass_state_that_does_not_go_on() -> None:
    asl = _asl()
    del asl["States"][BY_SCHEDULE]["Next"]

    assert _check(asl) == ["state 'Day before the scheduled time' has neither Next nor End"]


def test_validate_reports_a_task_without_retry_timeout_or_notice() -> None:
    asl = _asl()
    del asl["States"]["silver"]["Retry"]
    del asl["States"]["gold"]["TimeoutSeconds"]
    asl["States"]["bronze"]["Catch"][0]["Next"] = "bronze failed"

    assert _check(asl) == [
        "state 'bronze': its Catch goes to 'bronze failed', not to an SNS notification",
        "state 'silver' has no Retry",
        "state 'gold': TimeoutSeconds is None, not 7200",
        "state 'Notify bronze failure' is not reachable from StartAt",
    ]


def test_validate_reports_retries_other_than_configured_and_unfinished_states() -> None:
    asl = _asl()
    asl["States"]["quality"]["Retry"][0]["MaxAttempts"] = 1
    del asl["States"]["Notify gold failure"]["Next"]
    asl["StartAt"] = "Bronze"

    assert _check(asl) == [
        "StartAt 'Bronze' is not a state",
        'state \'quality\': Retry is [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 300, '
        '"MaxAttempts": 1, "BackoffRate": 2.0, "MaxDelaySeconds": 1800}], not '
        '[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 300, "MaxAttempts": 3, '
        '"BackoffRate": 2.0, "MaxDelaySeconds": 1800}]',
        "state 'Notify gold failure' has neither Next nor End",
        *[f"state {name!r} is not reachable from StartAt" for name in asl["States"]],
    ]


def test_an_invalid_definition_is_never_deployed(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    valid = definition

    def without_retry(*args: Any) -> dict[str, Any]:
        asl = copy.deepcopy(valid(*args))
        del asl["States"]["gold"]["Retry"]
        return asl

    monkeypatch.setattr("lakehouse.emr.stepfunctions.definition", without_retry)

    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 2
    assert capsys.readouterr().err == (
        "configuration error: the state machine definition is invalid: state 'gold' has no Retry\n"
    )
    assert moto_server.client(moto, "stepfunctions").list_state_machines()["stateMachines"] == []
    assert moto_server.client(moto, "emr-serverless").list_applications()["applications"] == []


# ---------------------------------------------------------------- deploy and run on moto


def _daily_run_schedule() -> dict[str, Any]:
    """The built-in daily run's schedule (emr/schedule.yaml), whose timing the state machine's
    schedule shares."""
    config, defs = load_config("dev"), load_definitions("dev")
    assert config.aws is not None
    layout = bundle_layout(config.aws.artifacts_uri, defs.bundle, None)
    return schedule.schedule_params(config, defs, layout, "app-1")


def _expected_schedule_params() -> dict[str, Any]:
    """The CreateSchedule / UpdateSchedule parameters of the state machine's daily schedule."""
    daily = _daily_run_schedule()
    return {
        "Name": SCHEDULE,
        "GroupName": "default",
        "ScheduleExpression": "cron(0 2 * * ? *)",
        "ScheduleExpressionTimezone": "UTC",
        "Description": "Daily lakehouse pipeline (bronze, silver, quality, gold) as the Step "
        f"Functions state machine {MACHINE}",
        "State": "DISABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": "arn:aws:scheduler:::aws-sdk:sfn:startExecution",
            "RoleArn": SCHEDULER_ROLE,
            "Input": json.dumps(
                {
                    "Input": '{"scheduled_time": "<aws.scheduler.scheduled-time>"}',
                    "Name": "dev-scheduled-<aws.scheduler.execution-id>",
                    "StateMachineArn": MACHINE_ARN,
                },
                sort_keys=True,
            ),
            "RetryPolicy": daily["Target"]["RetryPolicy"],
            "DeadLetterConfig": {"Arn": DLQ},
        },
    }


def test_the_schedule_times_and_retries_as_the_daily_run_does() -> None:
    daily, ours = _daily_run_schedule(), _expected_schedule_params()

    for key in ("GroupName", "ScheduleExpression", "ScheduleExpressionTimezone"):
        assert ours[key] == daily[key]
    assert ours["FlexibleTimeWindow"] == daily["FlexibleTimeWindow"]
    for key in ("RoleArn", "RetryPolicy", "DeadLetterConfig"):
        assert ours["Target"][key] == daily["Target"][key]
    assert daily["Target"]["RetryPolicy"] == {
        "MaximumEventAgeInSeconds": 3600,
        "MaximumRetryAttempts": 3,
    }
    assert daily["State"] == "ENABLED"  # the built-in run stays the one that runs


def _stored_schedule(moto: str) -> dict[str, Any]:
    """The schedule as moto keeps it, in CreateSchedule's terms."""
    got = moto_server.client(moto, "scheduler").get_schedule(Name=SCHEDULE, GroupName="default")
    assert got["Arn"] == SCHEDULE_ARN
    return {key: got[key] for key in _expected_schedule_params()}


def test_deploy_creates_the_state_machine_then_updates_it_in_place(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    sfn = moto_server.client(moto, "stepfunctions")
    scheduler = moto_server.client(moto, "scheduler")

    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 0

    (app,) = moto_server.client(moto, "emr-serverless").list_applications()["applications"]
    (machine,) = sfn.list_state_machines()["stateMachines"]
    assert machine["name"] == MACHINE
    assert machine["stateMachineArn"] == MACHINE_ARN
    described = sfn.describe_state_machine(stateMachineArn=MACHINE_ARN)
    assert described["roleArn"] == ROLE
    assert described["type"] == "STANDARD"
    assert json.loads(described["definition"]) == _asl(application_id=app["id"])
    assert sfn.list_tags_for_resource(resourceArn=MACHINE_ARN)["tags"] == [
        {"key": "project", "value": "lakehouse"},
        {"key": "env", "value": "dev"},
    ]
    # The daily schedule, DISABLED: the built-in daily run stays the one that runs.
    assert _stored_schedule(moto) == _expected_schedule_params()
    assert capsys.readouterr().out.splitlines()[-3:] == [
        f"created state machine {MACHINE}: {MACHINE_ARN}",
        f"created schedule {SCHEDULE} (cron(0 2 * * ? *)): {SCHEDULE_ARN}",
        f"schedule {SCHEDULE} is DISABLED (stepfunctions.schedule_state, "
        "emr/orchestration.yaml): the state machine runs only the days `run` starts",
    ]

    # Someone changed both by hand; a second deploy puts them back, in the same machine and
    # schedule.
    sfn.update_state_machine(
        stateMachineArn=MACHINE_ARN,
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Succeed"}}}),
    )
    scheduler.update_schedule(
        Name=SCHEDULE,
        GroupName="default",
        ScheduleExpression="cron(0 5 * * ? *)",
        State="ENABLED",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:scheduler:::aws-sdk:sfn:startExecution", "RoleArn": ROLE},
    )
    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 0

    assert [m["name"] for m in sfn.list_state_machines()["stateMachines"]] == [MACHINE]
    described = sfn.describe_state_machine(stateMachineArn=MACHINE_ARN)
    assert json.loads(described["definition"]) == _asl(application_id=app["id"])
    assert described["roleArn"] == ROLE
    assert [s["Name"] for s in scheduler.list_schedules()["Schedules"]] == [SCHEDULE]
    assert _stored_schedule(moto) == _expected_schedule_params()
    assert capsys.readouterr().out.splitlines() == [
        f"updated state machine {MACHINE}: {MACHINE_ARN}",
        f"updated schedule {SCHEDULE} (cron(0 2 * * ? *)): {SCHEDULE_ARN}",
        f"schedule {SCHEDULE} is DISABLED (stepfunctions.schedule_state, "
        "emr/orchestration.yaml): the state machine runs only the days `run` starts",
    ]
    assert len(moto_server.client(moto, "emr-serverless").list_applications()["applications"]) == 1


def test_a_scheduled_execution_has_its_own_name_and_runs_with_the_fire_time(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    sfn = moto_server.client(moto, "stepfunctions")
    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 0
    (app,) = moto_server.client(moto, "emr-serverless").list_applications()["applications"]
    target = _stored_schedule(moto)["Target"]

    # What the universal target sends when the schedule fires: the StartExecution request of its
    # Input, with Scheduler's context attributes filled in (moto's Scheduler never fires).
    request = json.loads(
        target["Input"]
        .replace("<aws.scheduler.scheduled-time>", FIRED)
        .replace("<aws.scheduler.execution-id>", INVOCATION)
    )
    started = sfn.start_execution(
        stateMachineArn=request["StateMachineArn"], name=request["Name"], input=request["Input"]
    )

    scheduled = f"dev-scheduled-{INVOCATION}"
    assert started["executionArn"] == f"{MACHINE_ARN.replace('stateMachine', 'execution')}:" + (
        scheduled
    )
    assert _executions(sfn) == [(scheduled, "RUNNING", {"scheduled_time": FIRED})]
    deployed = json.loads(sfn.describe_state_machine(stateMachineArn=MACHINE_ARN)["definition"])
    first, data = _through_the_day_states(deployed, {"scheduled_time": FIRED})
    bronze = _resolve(deployed["States"][first]["Parameters"], data, _context(scheduled))
    assert bronze["ApplicationId"] == app["id"]
    assert bronze["JobDriver"]["SparkSubmit"]["EntryPointArguments"] == [
        "--env", "dev", "--scheduled-time", FIRED
    ]  # fmt: skip
    # `run` names its executions by day, so the two never collide; it does not see the
    # schedule's (ListExecutions gives no input to tell their day by) and starts the day.
    capsys.readouterr()
    run = ["emr", "stepfunctions", "run", "--env", "dev", "--date", "2024-01-03"]
    assert run_cli(run, monkeypatch) == 0
    assert [name for name, _, _ in _executions(sfn)] == [scheduled, "dev-2024-01-03"]


def _emr_dir_with(tmp_path: Path, **overlays: str) -> Path:
    """A copy of emr/ with `text` appended to each overlay `emr/<name>.dev.yaml`."""
    folder = tmp_path / "emr"
    shutil.copytree(PROJECT_ROOT / "emr", folder, ignore=shutil.ignore_patterns("iam"))
    for name, text in overlays.items():
        overlay = folder / f"{name}.dev.yaml"
        overlay.write_text(overlay.read_text(encoding="utf-8") + text, encoding="utf-8")
    return folder


def test_deploy_refuses_a_second_daily_schedule_and_enables_it_alone(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    deploy = ["emr", "stepfunctions", "deploy", "--env", "dev", "--emr-dir"]
    both = _emr_dir_with(tmp_path / "both", orchestration="  schedule_state: ENABLED\n")

    assert run_cli([*deploy, str(both)], monkeypatch) == 2
    assert run_cli([*deploy, str(both), "--dry-run"], monkeypatch) == 2

    refusal = (
        "configuration error: stepfunctions.schedule_state (emr/orchestration.yaml) is ENABLED "
        "while the daily run 'lakehouse-dev-daily' (state in emr/schedule.yaml) is ENABLED too: "
        "every day would run twice. When Step Functions takes over, set state: DISABLED in "
        "emr/schedule.yaml and run `lakehouse emr schedule --env dev`\n"
    )
    assert capsys.readouterr().err == refusal * 2
    assert moto_server.client(moto, "stepfunctions").list_state_machines()["stateMachines"] == []
    assert moto_server.client(moto, "scheduler").list_schedules()["Schedules"] == []

    # Step Functions took over: its schedule ENABLED, the built-in one DISABLED.
    took_over = _emr_dir_with(
        tmp_path / "took-over",
        orchestration="  schedule_state: ENABLED\n",
        schedule="state: DISABLED\n",
    )
    assert run_cli([*deploy, str(took_over)], monkeypatch) == 0
    assert _stored_schedule(moto) == {**_expected_schedule_params(), "State": "ENABLED"}
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"created schedule {SCHEDULE} (cron(0 2 * * ? *)): {SCHEDULE_ARN}"
    )


def _executions(sfn: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, status, input) of every execution of the dev state machine, oldest first."""
    listed = sfn.list_executions(stateMachineArn=MACHINE_ARN)["executions"]
    out = []
    for e in sorted(listed, key=lambda e: e["startDate"]):
        described = sfn.describe_execution(executionArn=e["executionArn"])
        out.append((e["name"], e["status"], json.loads(described["input"])))
    return out


def test_run_starts_the_day_once_and_again_only_with_rerun(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    sfn = moto_server.client(moto, "stepfunctions")
    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 0
    run = ["emr", "stepfunctions", "run", "--env", "dev", "--date", "2024-01-03"]
    first = f"arn:aws:states:eu-west-1:123456789012:execution:{MACHINE}:dev-2024-01-03"
    capsys.readouterr()

    assert run_cli(run, monkeypatch) == 0
    assert capsys.readouterr().out == f"started execution dev-2024-01-03: {first}\n"
    assert _executions(sfn) == [("dev-2024-01-03", "RUNNING", {"date": "2024-01-03"})]

    assert run_cli(run, monkeypatch) == 0
    assert capsys.readouterr().out == (
        f"execution dev-2024-01-03 already exists: {first} (RUNNING); not starting another "
        "(--rerun starts a new one)\n"
    )
    assert len(_executions(sfn)) == 1

    # Not even --rerun starts a second execution of the day while one runs.
    assert run_cli([*run, "--rerun"], monkeypatch) == 0
    assert len(_executions(sfn)) == 1

    # The day's execution ended (moto never ends one by itself: stop it); --rerun starts another.
    sfn.stop_execution(executionArn=first)
    capsys.readouterr()
    assert run_cli([*run, "--rerun"], monkeypatch) == 0

    assert _executions(sfn) == [
        ("dev-2024-01-03", "ABORTED", {"date": "2024-01-03"}),
        ("dev-2024-01-03-rerun-1", "RUNNING", {"date": "2024-01-03"}),
    ]
    assert capsys.readouterr().out == f"started execution dev-2024-01-03-rerun-1: {first}-rerun-1\n"
    # Without --rerun, the day's latest execution is reported.
    assert run_cli(run, monkeypatch) == 0
    assert capsys.readouterr().out.startswith(
        f"execution dev-2024-01-03-rerun-1 already exists: {first}-rerun-1 (RUNNING)"
    )
    assert len(_executions(sfn)) == 2


def test_an_execution_started_meanwhile_is_reported_not_duplicated(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    sfn = moto_server.client(moto, "stepfunctions")
    run = ["emr", "stepfunctions", "run", "--env", "dev", "--date", "2024-01-03"]
    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 0
    assert run_cli(run, monkeypatch) == 0
    first = f"arn:aws:states:eu-west-1:123456789012:execution:{MACHINE}:dev-2024-01-03"
    sfn.stop_execution(executionArn=first)
    capsys.readouterr()

    # The listing misses the day's execution (as if it started between the listing and the
    # start): Step Functions answers ExecutionAlreadyExists for a closed execution's name.
    def clients_missing_the_execution(config: Any) -> Any:
        clients = moto_server.aws_clients(config)
        capture(clients.client("stepfunctions"), "ListExecutions", answer={"executions": []})
        return clients

    monkeypatch.setattr("lakehouse.cli.emr._clients", clients_missing_the_execution)
    assert run_cli(run, monkeypatch) == 0

    assert capsys.readouterr().out == (
        f"execution dev-2024-01-03 already exists: {first} (ABORTED); not starting another\n"
    )
    assert [name for name, _, _ in _executions(sfn)] == ["dev-2024-01-03"]


def test_run_before_deploy_says_what_to_do(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    code = run_cli(
        ["emr", "stepfunctions", "run", "--env", "dev", "--date", "2024-01-03"], monkeypatch
    )

    assert code == 1
    assert capsys.readouterr().err == (
        "error: no state machine is named 'lakehouse-dev-daily': "
        "run `lakehouse emr stepfunctions deploy --env dev` first\n"
    )


# ---------------------------------------------------------------- dry runs


def _dry_run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> list[str]:
    sent: list[str] = []

    def refuse(self: Any, request: Any) -> Any:
        sent.append(request.url)
        raise AssertionError(f"a dry run sent a request: {request.url}")

    with monkeypatch.context() as patch:
        patch.setattr(botocore.endpoint.Endpoint, "_send", refuse)
        assert run_cli([*argv, "--dry-run"], monkeypatch) == 0
    assert sent == []
    return str(capsys.readouterr().out).splitlines()


def test_deploy_dry_run_prints_the_exact_requests(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    lines = _dry_run(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch, capsys)

    app = "<id of application 'lakehouse-dev'>"
    # The committed definition with the id the dry run cannot know, as sent (no final newline).
    text = (ASL_DIR / "dev.asl.json").read_text(encoding="utf-8")[:-1]
    text = text.replace(APPLICATION_ID_PLACEHOLDER, app)
    assert lines[0] == "# dry run: nothing is sent to AWS; these are the requests, in order"
    printed = [json.loads(line) for line in lines[1:]]
    assert [(r["service"], r["operation"], r.get("when")) for r in printed] == [
        ("emr-serverless", "ListApplications", None),
        ("emr-serverless", "CreateApplication", "only if no application is named 'lakehouse-dev'"),
        ("stepfunctions", "ListStateMachines", None),
        (
            "stepfunctions",
            "UpdateStateMachine",
            "if a state machine is named 'lakehouse-dev-daily'",
        ),
        ("stepfunctions", "CreateStateMachine", "if none is"),
        ("scheduler", "GetSchedule", None),
        ("scheduler", "UpdateSchedule", f"if {SCHEDULE} exists"),
        ("scheduler", "CreateSchedule", "if it does not"),
    ]
    assert printed[2]["params"] == {}
    assert printed[3]["params"] == {
        "stateMachineArn": "<ARN of state machine 'lakehouse-dev-daily'>",
        "definition": text,
        "roleArn": ROLE,
    }
    assert printed[4]["params"] == {
        "name": MACHINE,
        "definition": text,
        "roleArn": ROLE,
        "type": "STANDARD",
        "tags": [{"key": "project", "value": "lakehouse"}, {"key": "env", "value": "dev"}],
    }
    # The schedule names the state machine by its ARN, known before it exists.
    assert printed[5]["params"] == {"Name": SCHEDULE, "GroupName": "default"}
    assert printed[6]["params"] == printed[7]["params"] == _expected_schedule_params()
    assert moto_server.client(moto, "stepfunctions").list_state_machines()["stateMachines"] == []
    assert moto_server.client(moto, "emr-serverless").list_applications()["applications"] == []
    assert moto_server.client(moto, "scheduler").list_schedules()["Schedules"] == []

    # The real deploy sends exactly that definition, with the application's id, and schedule.
    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 0
    (found,) = moto_server.client(moto, "emr-serverless").list_applications()["applications"]
    deployed = moto_server.client(moto, "stepfunctions").describe_state_machine(
        stateMachineArn=MACHINE_ARN
    )
    assert deployed["definition"] == text.replace(app, found["id"])
    assert _stored_schedule(moto) == printed[7]["params"]


def test_run_dry_runs_print_the_exact_requests(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    run = ["emr", "stepfunctions", "run", "--env", "dev", "--date", "2024-01-03"]
    once = _dry_run(run, monkeypatch, capsys)
    again = _dry_run([*run, "--rerun"], monkeypatch, capsys)

    machine = "<ARN of state machine 'lakehouse-dev-daily'>"
    header = "# dry run: nothing is sent to AWS; these are the requests, in order"
    assert [once[0], *map(json.loads, once[1:])] == [
        header,
        {"service": "stepfunctions", "operation": "ListStateMachines", "params": {}},
        {
            "service": "stepfunctions",
            "operation": "ListExecutions",
            "params": {"stateMachineArn": machine},
        },
        {
            "service": "stepfunctions",
            "operation": "StartExecution",
            "params": {
                "stateMachineArn": machine,
                "name": "dev-2024-01-03",
                "input": '{"date": "2024-01-03"}',
            },
            "when": "only if the day has no execution yet (dev-2024-01-03, dev-2024-01-03-rerun-*)",
        },
        {
            "service": "stepfunctions",
            "operation": "DescribeExecution",
            "params": {"executionArn": "<ARN of execution 'dev-2024-01-03'>"},
            "when": "only if StartExecution answers ExecutionAlreadyExists (started meanwhile)",
        },
    ]
    start = json.loads(again[3])
    assert start["params"]["name"] == "dev-2024-01-03-rerun-<n>"
    assert start["when"] == (
        "only if none of the day's executions (dev-2024-01-03, dev-2024-01-03-rerun-*) is "
        "running; <n>: how many the day has (with none, the name is dev-2024-01-03)"
    )
    assert moto_server.client(moto, "stepfunctions").list_state_machines()["stateMachines"] == []


def test_render_prints_the_committed_definition(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    assert run_cli(["emr", "stepfunctions", "render", "--env", "prod"], monkeypatch) == 0

    assert capsys.readouterr().out == (ASL_DIR / "prod.asl.json").read_text(encoding="utf-8")
