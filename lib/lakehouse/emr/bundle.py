"""The job bundle: where its files sit locally (`dist/lakehouse-<version>/`) and in S3
(`<aws.artifacts_uri>/<version>/`), how it is uploaded, and the spark-submit arguments that attach
it.

The bundle is attached the same way on EMR on EC2 and EMR Serverless: `--py-files pyfiles.zip` (the
`lakehouse` package and its pure-Python dependencies) and `--jars` (Deequ), with the entry point
`jobs/<job>.py` from the same versioned folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse import __version__
from lakehouse.core.config import ConfigError, join_uri
from lakehouse.emr.clients import AwsClients, Request
from lakehouse.emr.definitions import BundleDef

MANIFEST = "manifest.json"
TOPIC_ENV = "LAKEHOUSE_SNS_TOPIC_ARN"
NAMESPACE_ENV = "LAKEHOUSE_METRICS_NAMESPACE"


def bundle_dir(dist: str | Path, version: str = __version__) -> Path:
    """The local bundle folder `package.py` writes: `<dist>/lakehouse-<version>/`."""
    return Path(dist) / f"lakehouse-{version}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> (`bucket`, `some/key`)."""
    if not uri.startswith("s3://"):
        raise ConfigError(f"expected an s3:// URI, got {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


@dataclass(frozen=True)
class BundleLayout:
    """Where one version of the bundle lives in S3."""

    version: str
    root_uri: str
    definition: BundleDef

    def uri(self, relpath: str) -> str:
        return join_uri(self.root_uri, relpath)

    @property
    def pyfiles_uri(self) -> str:
        return self.uri(self.definition.pyfiles)

    def job_uri(self, job: str) -> str:
        return self.uri(f"jobs/{job}.py")

    @property
    def jar_uris(self) -> list[str]:
        return [self.uri(f"jars/{jar}") for jar in self.definition.jars]


def bundle_layout(
    artifacts_uri: str, definition: BundleDef, version: str | None = None
) -> BundleLayout:
    """The S3 layout of bundle `version` (default: the installed package's) under the artifacts
    URI."""
    v = version or __version__
    return BundleLayout(version=v, root_uri=join_uri(artifacts_uri, v), definition=definition)


def spark_submit_args(
    layout: BundleLayout, extra_jars: Sequence[str], conf: Mapping[str, str]
) -> list[str]:
    """The spark-submit options attaching the bundle: `--py-files`, `--jars`, then `--conf k=v`
    in key order (so requests are stable and comparable)."""
    args = ["--py-files", layout.pyfiles_uri, "--jars", ",".join([*layout.jar_uris, *extra_jars])]
    for key in sorted(conf):
        args += ["--conf", f"{key}={conf[key]}"]
    return args


def read_manifest(local_dir: Path) -> dict[str, Any]:
    """The bundle's manifest (`package.py` writes it): version and files with sizes and sha256."""
    path = local_dir / MANIFEST
    if not path.exists():
        raise ConfigError(
            f"{path}: no bundle here; build it first with `make package` (make package)"
        )
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload_requests(local_dir: Path, layout: BundleLayout) -> list[Request]:
    """One PutObject per bundle file (manifest last, so a complete manifest means a complete
    upload). The body is shown as the local file in dry runs."""
    manifest = read_manifest(local_dir)
    if manifest.get("version") != layout.version:
        raise ConfigError(
            f"{local_dir / MANIFEST}: bundle version {manifest.get('version')!r} does not match "
            f"the version being uploaded ({layout.version!r})"
        )
    requests = []
    for entry in sorted(manifest["files"], key=lambda e: e["path"]):
        bucket, key = split_s3_uri(layout.uri(entry["path"]))
        requests.append(
            Request(
                "s3",
                "put_object",
                {
                    "Bucket": bucket,
                    "Key": key,
                    "Body": f"<file {local_dir / entry['path']}, {entry['size']} bytes>",
                    "Metadata": {"sha256": entry["sha256"]},
                },
            )
        )
    bucket, key = split_s3_uri(layout.uri(MANIFEST))
    requests.append(
        Request(
            "s3",
            "put_object",
            {
                "Bucket": bucket,
                "Key": key,
                "Body": f"<file {local_dir / MANIFEST}>",
                "ContentType": "application/json",
            },
        )
    )
    return requests


def upload(clients: AwsClients, local_dir: Path, layout: BundleLayout) -> list[str]:
    """Upload the bundle. Every file is checked against its manifest checksum before anything is
    sent, so a bundle changed after packaging uploads nothing. Returns the uploaded URIs."""
    root_key = split_s3_uri(layout.root_uri)[1]
    prepared = []
    for request in upload_requests(local_dir, layout):
        params = dict(request.params)
        path = local_dir / params["Key"][len(root_key) :].lstrip("/")
        expected = params.get("Metadata", {}).get("sha256")
        if expected is not None and sha256_of(path) != expected:
            raise ConfigError(f"{path}: checksum differs from {local_dir / MANIFEST}; rebuild")
        prepared.append((request, params, path))
    uploaded = []
    for request, params, path in prepared:
        params["Body"] = path.read_bytes()
        clients.call(Request(request.service, request.operation, params))
        uploaded.append(f"s3://{params['Bucket']}/{params['Key']}")
    return uploaded
