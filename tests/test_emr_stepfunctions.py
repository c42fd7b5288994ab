"""The daily pipeline as a Step Functions state machine: generated from the one step list with the
configured timeout, retries and failure notices; checked by `validate` before every deploy;
created, then updated in place, on a moto server; started once per day (again only with
`--rerun`); its `--dry-run`s print the exact requests; the committed definitions are up to date."""

from __future__ import annotations

import copy
import json
from typing import Any

import botocore.endpoint
import pytest

import moto_server
from lakehouse.core.config import PROJECT_ROOT, load_config
from lakehouse.emr.bundle import bundle_layout
from lakehouse.emr.definitions import load_definitions
from lakehouse.emr.orchestration import retry_delays_seconds, step_run_params
from lakehouse.emr.stepfunctions import (
    APPLICATION_ID_PLACEHOLDER,
    committed_text,
    definition,
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


# ---------------------------------------------------------------- the definition


def test_the_steps_run_in_order_each_timed_retried_and_caught_into_a_notice() -> None:
    asl = _asl()
    states = asl["States"]

    assert asl["StartAt"] == "bronze"
    assert list(states) == [
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
    ]
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
        assert task["ResultPath"] == f"$.runs.{step}"  # the input's date stays in $.date
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
        "Name.$": "States.Format('daily-pipeline-bronze-{}', $.date)",
        "JobDriver": {
            "SparkSubmit": {
                "EntryPoint": f"{ARTIFACTS}/jobs/bronze.py",
                "EntryPointArguments.$": "States.Array('--env', 'dev', '--date', $.date)",
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


def test_a_failed_step_is_told_to_the_topic_with_env_date_step_error_and_cause() -> None:
    notify = _asl()["States"]["Notify quality failure"]

    assert notify == {
        "Type": "Task",
        "Comment": "Tell the run's topic that step quality failed, with the error and its cause",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {
            "TopicArn": TOPIC,
            "Subject.$": "States.Format('[lakehouse dev] stepfunctions FAILED in quality ({})', "
            "$.date)",
            "Message.$": "States.Format('The daily pipeline of lakehouse dev failed in step "
            "quality for {} after 3 retries; the steps after it did not run. Execution: {}. "
            "Error and cause: {}. To start the day again from the first step: lakehouse emr "
            "stepfunctions run --env dev --date {} --rerun', $.date, $$.Execution.Id, "
            "States.JsonToString($.error), $.date)",
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


def test_deploy_creates_the_state_machine_then_updates_it_in_place(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    sfn = moto_server.client(moto, "stepfunctions")

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
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == f"created state machine {MACHINE}: {MACHINE_ARN}"
    )

    # Someone changed it by hand; a second deploy puts the definition back, in the same machine.
    sfn.update_state_machine(
        stateMachineArn=MACHINE_ARN,
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Succeed"}}}),
    )
    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 0

    assert [m["name"] for m in sfn.list_state_machines()["stateMachines"]] == [MACHINE]
    described = sfn.describe_state_machine(stateMachineArn=MACHINE_ARN)
    assert json.loads(described["definition"]) == _asl(application_id=app["id"])
    assert described["roleArn"] == ROLE
    assert capsys.readouterr().out.splitlines() == [
        f"updated state machine {MACHINE}: {MACHINE_ARN}"
    ]
    assert len(moto_server.client(moto, "emr-serverless").list_applications()["applications"]) == 1


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
    assert moto_server.client(moto, "stepfunctions").list_state_machines()["stateMachines"] == []
    assert moto_server.client(moto, "emr-serverless").list_applications()["applications"] == []

    # The real deploy sends exactly that definition, with the application's id.
    assert run_cli(["emr", "stepfunctions", "deploy", "--env", "dev"], monkeypatch) == 0
    (found,) = moto_server.client(moto, "emr-serverless").list_applications()["applications"]
    deployed = moto_server.client(moto, "stepfunctions").describe_state_machine(
        stateMachineArn=MACHINE_ARN
    )
    assert deployed["definition"] == text.replace(app, found["id"])


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
