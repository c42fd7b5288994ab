"""Where a run's reports are kept: under `storage.reports_root`, a local folder or S3 (`s3://`,
`s3a://`), in one folder per run and a stable `latest/` that always holds the newest copy:

    <reports_root>/runs/<run_id>/quality.html   the run's quality report (quality.json, its twin)
    <reports_root>/runs/<run_id>/dashboard.html the KPI dashboard of the gold the run published
    <reports_root>/latest/<same names>
    <reports_root>/index.html                    every run, with links (lakehouse.state.run_index)

`latest/quality.*` is the newest run's report, published or blocked; `latest/dashboard.html` is the
dashboard of the newest published gold (a blocked run writes none). S3 objects are written with
boto3 (the job role may write under the reports root) with their content type, so a browser shows
them as pages; a local folder is created as needed.
"""

from __future__ import annotations

from pathlib import Path

from lakehouse.core.aws import make_client
from lakehouse.core.config import Config, join_uri

LATEST = "latest"
S3_SCHEMES = ("s3://", "s3a://", "s3n://")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}


def run_location(config: Config, run_id: str, name: str) -> str:
    """Where run `run_id`'s report `name` (`quality.html`, ...) is kept."""
    return join_uri(config.storage.reports_root, "runs", run_id, name)


def latest_location(config: Config, name: str) -> str:
    """Where the newest copy of report `name` is kept."""
    return join_uri(config.storage.reports_root, LATEST, name)


def publish(config: Config, run_id: str, name: str, text: str, latest: bool = True) -> str:
    """Write report `name` of run `run_id` into the run's folder, then (unless `latest` is false:
    an older run's report written again) into `latest/`; return the run's copy's location."""
    location = run_location(config, run_id, name)
    write_text(config, location, text)
    if latest:
        write_text(config, latest_location(config, name), text)
    return location


def write_text(config: Config, location: str, text: str) -> None:
    """Write `text` (UTF-8) at `location`, an S3 URI or a local path."""
    if location.startswith(S3_SCHEMES):
        bucket, key = _bucket_key(location)
        make_client("s3", config.aws).put_object(
            Bucket=bucket,
            Key=key,
            Body=text.encode("utf-8"),
            ContentType=CONTENT_TYPES.get(Path(key).suffix, "text/plain; charset=utf-8"),
        )
        return
    path = Path(location.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def read_text(config: Config, location: str) -> str:
    """The text (UTF-8) at `location`, an S3 URI or a local path."""
    if location.startswith(S3_SCHEMES):
        bucket, key = _bucket_key(location)
        body = make_client("s3", config.aws).get_object(Bucket=bucket, Key=key)["Body"]
        return str(body.read().decode("utf-8"))
    return Path(location.removeprefix("file://")).read_text(encoding="utf-8")


def read_text_if_kept(config: Config, location: str) -> str | None:
    """`read_text`, or None when nothing is kept at `location`."""
    try:
        return read_text(config, location)
    except FileNotFoundError:
        return None
    except Exception as exc:  # botocore's ClientError, without importing botocore here
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404"):
            return None
        raise


def list_reports(config: Config, folder: str = "runs") -> dict[str, set[str]]:
    """The reports kept under `<reports_root>/<folder>/`: for `runs`, run id -> the names of
    its reports; for `latest` (or "", the root itself), {"": names}. Empty when nothing is kept
    yet."""
    base = join_uri(config.storage.reports_root, folder).rstrip("/")
    found: dict[str, set[str]] = {}
    if base.startswith(S3_SCHEMES):
        bucket, prefix = _bucket_key(base + "/")
        pages = make_client("s3", config.aws).get_paginator("list_objects_v2")
        keys = [
            o["Key"][len(prefix) :]
            for page in pages.paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        ]
    else:
        root = Path(base.removeprefix("file://"))
        keys = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    for key in keys:
        parent, _, name = key.rpartition("/")
        if "/" not in parent:
            found.setdefault(parent, set()).add(name)
    return found


def _bucket_key(location: str) -> tuple[str, str]:
    bucket, _, key = location.split("://", 1)[1].partition("/")
    if not bucket or not key:
        raise ValueError(f"{location}: expected s3://<bucket>/<key>")
    return bucket, key
