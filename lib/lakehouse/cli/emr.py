"""`lakehouse emr ...`: upload the bundle, run the pipeline on EMR on EC2 or EMR Serverless,
schedule it (and the weekly maintenance), backfill it, run maintenance or an erasure now, create
the alarms and dashboard, register gold for Athena, build the Airflow DAG bundle, deploy and start
the Step Functions state machine, and render the IAM policies.

Every subcommand takes `--dry-run`: it prints the exact requests (service, operation, parameters as
JSON, one per line) and sends none. `--env` may be given before `emr` or after the subcommand.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lakehouse.core.config import ENVIRONMENTS, Config, ConfigError, load_config
from lakehouse.emr import (
    airflow,
    athena,
    cluster,
    iam,
    monitoring,
    operations,
    schedule,
    serverless,
    stepfunctions,
)
from lakehouse.emr.bundle import BundleLayout, bundle_dir, bundle_layout, upload, upload_requests
from lakehouse.emr.clients import AwsClients, Request, print_dry_run
from lakehouse.emr.definitions import EmrDefinitions, load_definitions, require_aws
from lakehouse.emr.wait import Backoff, WaitTimeout


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add `emr` and its subcommands to the `lakehouse` command."""
    emr = subparsers.add_parser(
        "emr", help="run the pipeline on AWS EMR (see docs/EMR.md)", description=__doc__
    )
    sub = emr.add_subparsers(dest="emr_command", required=True, metavar="EMR_COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--env",
        default=argparse.SUPPRESS,
        choices=ENVIRONMENTS,
        help="configuration overlay conf/<env>.yaml (same as the global --env)",
    )
    common.add_argument(
        "--dry-run",
        action="store_true",
        help="print the AWS requests (service, operation, JSON parameters) and send none",
    )
    common.add_argument("--emr-dir", default=None, help="EMR definitions folder (default: ./emr)")
    common.add_argument(
        "--bundle-version",
        default=None,
        help="bundle version under <aws.artifacts_uri>/ (default: the installed package's)",
    )

    p = sub.add_parser("upload", parents=[common], help="upload the job bundle to S3")
    p.add_argument("--dist", default="dist", help="folder holding lakehouse-<version>/ (dist)")
    p.set_defaults(func=cmd_upload)

    p = sub.add_parser("cluster", help="start or stop the EMR on EC2 cluster")
    cluster_sub = p.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    up = cluster_sub.add_parser("up", parents=[common], help="start the cluster (or reuse it)")
    up.set_defaults(func=cmd_cluster_up)
    down = cluster_sub.add_parser("down", parents=[common], help="terminate the cluster")
    down.add_argument("--cluster-id", default=None, help="default: the active cluster by name")
    down.set_defaults(func=cmd_cluster_down)

    p = sub.add_parser(
        "steps", parents=[common], help="submit the day's pipeline as ordered cluster steps"
    )
    p.add_argument("--date", type=_date, required=True, help="the day to process, YYYY-MM-DD")
    p.add_argument("--cluster-id", default=None, help="default: the active cluster by name")
    p.add_argument("--wait", action="store_true", help="wait for the steps to finish")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser(
        "run", parents=[common], help="run the day's pipeline on EMR Serverless and wait"
    )
    p.add_argument("--date", type=_date, required=True, help="the day to process, YYYY-MM-DD")
    p.add_argument("--rerun", action="store_true", help="run again even if the day succeeded")
    p.add_argument("--no-wait", action="store_true", help="submit and return")
    p.add_argument("--deadline-minutes", type=float, default=None, help="give up (and cancel)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "schedule", parents=[common], help="create or update the daily EventBridge schedule"
    )
    p.set_defaults(func=cmd_schedule)

    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--cluster",
        action="store_true",
        help="run as a step of the EMR on EC2 cluster (default: an EMR Serverless job run)",
    )
    target.add_argument("--cluster-id", default=None, help="with --cluster: default by name")
    target.add_argument(
        "--rerun",
        action="store_true",
        help="run again a job of the same name that succeeded (never one still in flight)",
    )

    p = sub.add_parser(
        "backfill",
        parents=[common, target],
        help="reprocess a range of ingest dates as one job, with the diff (--daily-runs: resubmit "
        "the daily runs instead)",
    )
    p.add_argument("--from", dest="from_date", type=_date, required=True, help="first day")
    p.add_argument("--to", dest="to_date", type=_date, required=True, help="last day (included)")
    p.add_argument(
        "--preview", action="store_true", help="the job diffs and publishes nothing (its dry run)"
    )
    p.add_argument(
        "--daily-runs",
        action="store_true",
        help="submit the daily run of each day instead, with bounded parallelism",
    )
    p.add_argument("--parallel", type=_positive, default=None, help="--daily-runs in flight")
    p.add_argument("--deadline-minutes", type=float, default=None, help="give up (and cancel)")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser(
        "stream",
        parents=[common, target],
        help="start the streaming ingestion (conf `stream`): a Serverless STREAMING run, or with "
        "--cluster a step handing it to YARN; one per stream name",
    )
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser(
        "maintain",
        parents=[common, target],
        help="run the maintenance job now (OPTIMIZE, VACUUM, full quality scan)",
    )
    p.add_argument("--no-quality", action="store_true", help="skip the full quality scan")
    p.set_defaults(func=cmd_maintain)

    p = sub.add_parser(
        "erase",
        parents=[common, target],
        help="submit the erasure of a customer's personal data (docs/MAINTENANCE.md)",
    )
    p.add_argument("--customer", required=True, help="the customer_id to erase")
    p.add_argument(
        "--request-id", default=None, help="your reference (default: erase-<customer>-<today>)"
    )
    p.add_argument("--reason", default=None, help="why (free text; never personal data)")
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser(
        "monitoring",
        parents=[common],
        help="create or update the CloudWatch alarms, the deadline heartbeat and the dashboard",
    )
    p.set_defaults(func=cmd_monitoring)

    p = sub.add_parser(
        "athena",
        parents=[common],
        help="register every gold table in Glue as a Delta table Athena (and QuickSight) reads",
    )
    p.set_defaults(func=cmd_athena)

    p = sub.add_parser(
        "airflow",
        parents=[common],
        help="build the Airflow (MWAA) DAG bundle: the daily and maintenance DAGs for this env",
    )
    p.add_argument(
        "--out", default=None, help="folder for lakehouse_dags.zip (default: dist/airflow/<env>)"
    )
    p.set_defaults(func=cmd_airflow)

    p = sub.add_parser(
        "stepfunctions",
        help="the daily pipeline as a Step Functions state machine: deploy, render or run it",
    )
    sfn_sub = p.add_subparsers(dest="stepfunctions_command", required=True, metavar="ACTION")
    sfn = sfn_sub.add_parser(
        "deploy",
        parents=[common],
        help="create or update the state machine (validated first) and its daily schedule "
        "(stepfunctions.schedule_state of emr/orchestration.yaml, DISABLED by default)",
    )
    sfn.set_defaults(func=cmd_stepfunctions_deploy)
    sfn = sfn_sub.add_parser(
        "render", parents=[common], help="print the state machine definition (ASL JSON)"
    )
    sfn.add_argument(
        "--out", default=None, help="write it here (e.g. emr/stepfunctions/dev.asl.json)"
    )
    sfn.set_defaults(func=cmd_stepfunctions_render)
    sfn = sfn_sub.add_parser(
        "run", parents=[common], help="start the state machine for a day (once per day)"
    )
    sfn.add_argument("--date", type=_date, required=True, help="the day to process, YYYY-MM-DD")
    sfn.add_argument(
        "--rerun",
        action="store_true",
        help="start a new execution even if the day has one (never while one is running)",
    )
    sfn.set_defaults(func=cmd_stepfunctions_run)

    p = sub.add_parser(
        "iam", parents=[common], help="render the least-privilege IAM policy documents"
    )
    p.add_argument("--out", default=None, help="write the documents here (e.g. emr/iam/dev)")
    p.set_defaults(func=cmd_iam)


# ---------------------------------------------------------------- helpers


def _context(args: argparse.Namespace) -> tuple[Config, EmrDefinitions]:
    config = load_config(args.env, args.conf_dir)
    require_aws(config)
    return config, load_definitions(config.env, args.emr_dir)


def _layout(config: Config, defs: EmrDefinitions, args: argparse.Namespace) -> BundleLayout:
    assert config.aws is not None
    return bundle_layout(config.aws.artifacts_uri, defs.bundle, args.bundle_version)


def _clients(config: Config) -> AwsClients:
    assert config.aws is not None
    return AwsClients(config.aws)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------- commands


def cmd_upload(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    layout = _layout(config, defs, args)
    local = bundle_dir(args.dist, layout.version)
    if args.dry_run:
        print_dry_run(upload_requests(local, layout))
        return 0
    for uri in upload(_clients(config), local, layout):
        print(f"uploaded {uri}")
    return 0


def cmd_cluster_up(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    if args.dry_run:
        print_dry_run(cluster.up_plan(config, defs))
        return 0
    print(cluster.cluster_up(_clients(config), config, defs))
    return 0


def cmd_cluster_down(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    if args.dry_run:
        print_dry_run(cluster.down_plan(defs, args.cluster_id))
        return 0
    cluster.cluster_down(_clients(config), defs, args.cluster_id)
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    layout = _layout(config, defs, args)
    if args.dry_run:
        print_dry_run(cluster.steps_plan(config, defs, layout, args.date, args.cluster_id))
        return 0
    clients = _clients(config)
    try:
        if not args.wait:
            cluster.submit_steps(clients, config, defs, layout, args.date, args.cluster_id)
            return 0
        # Waiting, a failed day is submitted again from its failed step (cluster.step_retries).
        states = cluster.run_steps(
            clients,
            config,
            defs,
            layout,
            args.date,
            args.cluster_id,
            Backoff.from_def(defs.cluster.step_wait),
            sleep=time.sleep,
        )
    except LookupError as exc:
        return _fail(str(exc))
    except WaitTimeout as exc:
        return _fail(f"{exc}; open steps were cancelled")
    return 0 if all(s == "COMPLETED" for s in states.values()) else 1


def cmd_run(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    layout = _layout(config, defs, args)
    if args.dry_run:
        print_dry_run(serverless.run_plan(config, defs, layout, [args.date], not args.no_wait))
        return 0
    es = _clients(config).client("emr-serverless")
    app_id = serverless.ensure_application(es, config, defs)
    ref = serverless.submit_daily_run(es, config, defs, layout, app_id, args.date, rerun=args.rerun)
    if args.no_wait:
        return 0
    backoff = Backoff.from_def(defs.serverless.job.wait, args.deadline_minutes)
    try:
        state = serverless.wait_for_run(
            es, app_id, ref.run_id, backoff, what=f"run {serverless.run_name(defs, args.date)}"
        )
    except WaitTimeout as exc:
        return _fail(f"{exc}; the run was cancelled")
    return 0 if state == "SUCCESS" else 1


def cmd_schedule(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    layout = _layout(config, defs, args)
    if args.dry_run:
        name = defs.serverless.application.name
        app_id = f"<id of application {name!r}>"
        plan: list[Request] = [
            serverless.list_applications_request(),
            serverless.create_application_request(config, defs).only_if(
                f"only if no application is named {name!r}"
            ),
            *schedule.schedule_plan(config, defs, layout, app_id),
        ]
        print_dry_run(plan)
        return 0
    clients = _clients(config)
    app_id = serverless.ensure_application(clients.client("emr-serverless"), config, defs)
    schedule.upsert_schedule(clients, config, defs, layout, app_id)
    return 0


def days_between(first: date, last: date) -> list[date]:
    if last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def cmd_backfill(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    if not args.daily_runs:
        if args.parallel or args.deadline_minutes:
            return _fail("--parallel and --deadline-minutes go with --daily-runs")
        job = operations.backfill_job(config, args.from_date, args.to_date, args.preview)
        return _submit_ops(args, job)
    layout = _layout(config, defs, args)
    days = days_between(args.from_date, args.to_date)
    parallel = args.parallel or defs.serverless.backfill_parallel
    if args.dry_run:
        print(f"# backfill {len(days)} days, at most {parallel} runs in flight")
        print_dry_run(serverless.run_plan(config, defs, layout, days, wait=True))
        return 0
    es = _clients(config).client("emr-serverless")
    app_id = serverless.ensure_application(es, config, defs)

    def submit(day: date) -> serverless.RunRef:
        return serverless.submit_daily_run(es, config, defs, layout, app_id, day, rerun=args.rerun)

    wait = defs.serverless.job.wait
    minutes = args.deadline_minutes or wait.deadline_minutes * -(-len(days) // parallel)
    try:
        results = serverless.backfill(
            es,
            submit,
            app_id,
            days,
            parallel,
            Backoff.from_def(wait, minutes),
            sleep=time.sleep,
            clock=time.monotonic,
        )
    except WaitTimeout as exc:
        return _fail(f"{exc}; runs in flight were cancelled")
    print(serverless.summarise(results))
    return 0 if all(s == "SUCCESS" for s in results.values()) else 1


def cmd_maintain(args: argparse.Namespace) -> int:
    config, _ = _context(args)
    return _submit_ops(args, operations.maintenance_job(config, date.today(), args.no_quality))


def cmd_stream(args: argparse.Namespace) -> int:
    config, _ = _context(args)
    return _submit_ops(args, operations.stream_job(config))


def cmd_erase(args: argparse.Namespace) -> int:
    config, _ = _context(args)
    request_id = args.request_id or f"erase-{args.customer}-{date.today().isoformat()}"
    return _submit_ops(args, operations.erasure_job(config, args.customer, request_id, args.reason))


def _submit_ops(args: argparse.Namespace, job: operations.OpsJob) -> int:
    """Submit operations job `job` as a Serverless run, or a cluster step with `--cluster`."""
    config, defs = _context(args)
    layout = _layout(config, defs, args)
    if args.dry_run:
        if args.cluster:
            print_dry_run(operations.step_plan(config, defs, layout, job, args.cluster_id))
        else:
            print_dry_run(operations.run_plan(config, defs, layout, job))
        return 0
    clients = _clients(config)
    if args.cluster:
        try:
            operations.submit_step(
                clients, config, defs, layout, job, args.cluster_id, rerun=args.rerun
            )
        except LookupError as exc:
            return _fail(str(exc))
        return 0
    es = clients.client("emr-serverless")
    app_id = serverless.ensure_application(es, config, defs)
    operations.submit_run(es, config, defs, layout, app_id, job, rerun=args.rerun)
    return 0


def cmd_monitoring(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    if args.dry_run:
        print_dry_run(monitoring.monitoring_plan(config, defs))
        return 0
    monitoring.apply_monitoring(_clients(config), config, defs)
    return 0


def cmd_athena(args: argparse.Namespace) -> int:
    from lakehouse.core.context import Lakehouse

    config, _ = _context(args)
    lh = Lakehouse.load(config.env, args.conf_dir)
    if args.dry_run:
        print_dry_run(athena.plan(lh))
        return 0
    athena.register(_clients(config), lh)
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    layout = _layout(config, defs, args)
    out = Path(args.out or f"dist/airflow/{config.env}")
    if args.dry_run:
        name = defs.serverless.application.name
        print_dry_run(
            [
                serverless.list_applications_request(),
                serverless.create_application_request(config, defs).only_if(
                    f"only if no application is named {name!r}"
                ),
            ]
        )
        print(
            f"# then writes {out / airflow.BUNDLE_NAME}, {out / airflow.PLUGINS_NAME} and "
            f"{out / 'requirements.txt'}"
        )
        return 0
    es = _clients(config).client("emr-serverless")
    app_id = serverless.ensure_application(es, config, defs)
    for path in airflow.write_bundle(airflow.airflow_spec(config, defs, layout, app_id), out):
        print(f"wrote {path}")
    return 0


def cmd_stepfunctions_deploy(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    layout = _layout(config, defs, args)
    if args.dry_run:
        print_dry_run(stepfunctions.deploy_plan(config, defs, layout))
        return 0
    stepfunctions.deploy(_clients(config), config, defs, layout)
    return 0


def cmd_stepfunctions_render(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    text = stepfunctions.committed_text(config, defs, _layout(config, defs, args))
    if args.dry_run:
        print("# dry run: nothing is sent to AWS; rendering the definition sends no request")
    if args.out and not args.dry_run:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")
        return 0
    print(text, end="")
    return 0


def cmd_stepfunctions_run(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    if args.dry_run:
        print_dry_run(stepfunctions.run_plan(config, defs, args.date, args.rerun))
        return 0
    try:
        stepfunctions.run(_clients(config), config, defs, args.date, rerun=args.rerun)
    except LookupError as exc:
        return _fail(str(exc))
    return 0


def cmd_iam(args: argparse.Namespace) -> int:
    config, defs = _context(args)
    if args.dry_run:
        print("# dry run: nothing is sent to AWS; rendering IAM documents sends no request")
    if args.out and not args.dry_run:
        for path in iam.write_policies(config, defs, Path(args.out)):
            print(f"wrote {path}")
        return 0
    for name, document in iam.render_policies(config, defs).items():
        print(f"# {name}")
        print(iam.to_text(document), end="")
    return 0
