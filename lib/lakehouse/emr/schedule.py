"""The EventBridge Scheduler schedules: the daily run at 02:00 UTC and the weekly maintenance
(Sundays, `jobs/maintain.py`); each calls EMR Serverless StartJobRun directly (the universal target
`arn:aws:scheduler:::aws-sdk:emrserverless:startJobRun`), with a retry policy and a dead-letter
queue for invocations that still fail.

The schedule cannot compute "yesterday", so the run gets
`--scheduled-time <aws.scheduler.scheduled-time>` (Scheduler fills in e.g. `2024-01-04T02:00:00Z`)
and the pipeline turns it into the day to process with `processing_date` (the day before, in UTC).
The run's idempotency token is the invocation's `<aws.scheduler.execution-id>`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from lakehouse.core.config import Config
from lakehouse.emr.bundle import BundleLayout
from lakehouse.emr.clients import AwsClients, Request, error_code
from lakehouse.emr.definitions import EmrDefinitions
from lakehouse.emr.operations import MAINTAIN
from lakehouse.emr.serverless import start_job_run_params

UNIVERSAL_TARGET = "arn:aws:scheduler:::aws-sdk:emrserverless:startJobRun"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
EXECUTION_ID = "<aws.scheduler.execution-id>"


def processing_date(scheduled_time: str) -> date:
    """The day a scheduled run processes: the UTC day before the schedule fired
    (`2024-01-04T02:00:00Z` -> 2024-01-03)."""
    fired = datetime.fromisoformat(scheduled_time.replace("Z", "+00:00"))
    if fired.tzinfo is None:
        fired = fired.replace(tzinfo=UTC)
    return fired.astimezone(UTC).date() - timedelta(days=1)


def target_input(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str
) -> dict[str, Any]:
    """The StartJobRun request the schedule sends (as JSON in the target's Input)."""
    return start_job_run_params(
        config,
        defs,
        layout,
        application_id,
        name=f"{defs.serverless.job.name}-scheduled-{SCHEDULED_TIME}",
        token=EXECUTION_ID,
        arguments=["--env", config.env, "--scheduled-time", SCHEDULED_TIME],
    )


def maintenance_target_input(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str
) -> dict[str, Any]:
    """The StartJobRun request the weekly maintenance schedule sends: `jobs/maintain.py --env ENV`
    (maintenance needs no date: it compacts and vacuums what is there)."""
    return start_job_run_params(
        config,
        defs,
        layout,
        application_id,
        name=f"maintenance-scheduled-{SCHEDULED_TIME}",
        token=EXECUTION_ID,
        arguments=["--env", config.env],
        entry_point=MAINTAIN,
    )


def schedule_params(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str
) -> dict[str, Any]:
    """CreateSchedule / UpdateSchedule parameters of the daily run (the two take the same)."""
    s = defs.schedule
    run = target_input(config, defs, layout, application_id)
    return target_schedule_params(defs, s.name, s.expression, s.state, s.description, run)


def all_schedule_params(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str
) -> list[dict[str, Any]]:
    """The parameters of every schedule of the environment: the daily run, then the weekly
    maintenance when `emr/schedule.yaml` defines it."""
    out = [schedule_params(config, defs, layout, application_id)]
    m = defs.schedule.maintenance
    if m is not None:
        run = maintenance_target_input(config, defs, layout, application_id)
        out.append(target_schedule_params(defs, m.name, m.expression, m.state, m.description, run))
    return out


def target_schedule_params(
    defs: EmrDefinitions,
    name: str,
    expression: str,
    state: str,
    description: str,
    request: dict[str, Any],
    target: str = UNIVERSAL_TARGET,
) -> dict[str, Any]:
    """CreateSchedule / UpdateSchedule parameters of a schedule calling the universal target
    `target` with `request` (the API's parameters, sent as the target's Input), in the group of
    emr/schedule.yaml, with its timezone, flexible window, retry policy and dead-letter queue."""
    s = defs.schedule
    window: dict[str, Any] = (
        {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": s.flexible_window_minutes}
        if s.flexible_window_minutes
        else {"Mode": "OFF"}
    )
    return {
        "Name": name,
        "GroupName": s.group,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": s.timezone,
        "Description": description,
        "State": state,
        "FlexibleTimeWindow": window,
        "Target": {
            "Arn": target,
            "RoleArn": defs.account.scheduler_role_arn,
            "Input": json.dumps(request, sort_keys=True),
            "RetryPolicy": {
                "MaximumEventAgeInSeconds": s.retry.maximum_event_age_seconds,
                "MaximumRetryAttempts": s.retry.maximum_retry_attempts,
            },
            "DeadLetterConfig": {"Arn": defs.account.dlq_arn},
        },
    }


def schedule_plan(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str
) -> list[Request]:
    """The scheduler requests `schedule` sends (after the application look-up), for `--dry-run`."""
    s = defs.schedule
    plan = group_plan(s.group)
    for params in all_schedule_params(config, defs, layout, application_id):
        plan += upsert_plan(s.group, params)
    return plan


def upsert_schedule(
    clients: AwsClients,
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    application_id: str,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Create each schedule (daily, weekly maintenance), or update it in place when it exists;
    return their ARNs."""
    s = defs.schedule
    ensure_group(clients, s.group)
    return [
        upsert_one(clients, s.group, params, log)
        for params in all_schedule_params(config, defs, layout, application_id)
    ]


def ensure_group(clients: AwsClients, group: str) -> None:
    """Create the schedule group `group` unless it exists (`default` always does)."""
    if group == "default":
        return
    try:
        clients.call(Request("scheduler", "get_schedule_group", {"Name": group}))
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        clients.call(Request("scheduler", "create_schedule_group", {"Name": group}))


def group_plan(group: str) -> list[Request]:
    """What `ensure_group` sends, for `--dry-run`."""
    if group == "default":
        return []
    return [
        Request("scheduler", "get_schedule_group", {"Name": group}),
        Request("scheduler", "create_schedule_group", {"Name": group}).only_if(
            f"only if schedule group {group!r} does not exist"
        ),
    ]


def upsert_one(
    clients: AwsClients, group: str, params: dict[str, Any], log: Callable[[str], None] = print
) -> str:
    """Create the schedule `params` describes, or update it in place; return its ARN."""
    name = params["Name"]
    try:
        clients.call(Request("scheduler", "get_schedule", {"Name": name, "GroupName": group}))
        exists = True
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        exists = False
    operation = "update_schedule" if exists else "create_schedule"
    arn = str(clients.call(Request("scheduler", operation, params))["ScheduleArn"])
    verb = "updated" if exists else "created"
    log(f"{verb} schedule {name} ({params['ScheduleExpression']}): {arn}")
    return arn


def upsert_plan(group: str, params: dict[str, Any]) -> list[Request]:
    """What `upsert_one` sends, for `--dry-run`."""
    name = params["Name"]
    return [
        Request("scheduler", "get_schedule", {"Name": name, "GroupName": group}),
        Request("scheduler", "update_schedule", params).only_if(f"if {name} exists"),
        Request("scheduler", "create_schedule", params).only_if("if it does not"),
    ]
