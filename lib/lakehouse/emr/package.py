"""Build the job bundle: `python -m lakehouse.emr.package --out dist/` (`make package`) writes
`dist/lakehouse-<version>/`:

    lakehouse-<version>-py3-none-any.whl  the package (`pip wheel --no-deps .`), for the record
    pyfiles.zip                           the package + its pure-Python runtime dependencies
    jobs/<job>.py                         the spark-submit entry points (emr/bundle.yaml: jobs)
    jars/<jar>                            JVM libraries from .jars/ (`make jars`): Deequ
    manifest.json                         version, dependency versions, files with size, sha256

Why one zip rather than a packed virtualenv: every dependency EMR does not already provide is pure
Python (PyYAML's C parser is an optional speed-up with a pure fallback), so a zip on `--py-files`
works unchanged on EMR on EC2 and EMR Serverless, needs no `spark.archives` or per-platform
PYSPARK_PYTHON path, and does not have to be built on Amazon Linux for EMR's glibc and CPU. A
dependency with compiled code that is not an optional speed-up makes this script fail: that is the
point to switch to a packed venv (venv-pack, built on Amazon Linux 2023) or a custom image.

Dependencies are taken from the environment running this script (the project's virtualenv, where
the tests ran), resolved from the wheel's requirements minus what EMR provides (emr/bundle.yaml:
emr_provided), so the bundle carries the versions that were tested. The zip is reproducible: sorted
entries, fixed timestamps.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from lakehouse.core.config import load_typed_yaml
from lakehouse.emr.bundle import MANIFEST, bundle_dir
from lakehouse.emr.definitions import BundleDef

PROJECT_ROOT = Path(__file__).resolve().parents[3]
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
SKIPPED_DIST_INFO = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(RuntimeError):
    """The bundle cannot be built; the message says what to do."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_version(project_root: Path) -> str:
    data = tomllib.loads((project_root / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def build_wheel(project_root: Path, into: Path) -> Path:
    """`pip wheel --no-deps .` into `into`; returns the wheel."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(into), "."]
    result = subprocess.run(command, cwd=project_root, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackageError(f"building the wheel failed:\n{result.stdout}{result.stderr}")
    wheels = sorted(into.glob("lakehouse-*.whl"))
    if len(wheels) != 1:
        raise PackageError(f"expected one lakehouse wheel in {into}, found {wheels}")
    return wheels[0]


def wheel_requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(zf.read(name).decode("utf-8"))
    return list(message.get_all("Requires-Dist") or [])


def _applies(requirement: Requirement) -> bool:
    """Whether a requirement applies at run time (no extras requested, this Python)."""
    if requirement.marker is None:
        return True
    env = {**default_environment(), "extra": ""}
    return bool(requirement.marker.evaluate(env))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    distribution: metadata.Distribution


def resolve_dependencies(
    requirements: Iterable[str], provided: Sequence[str], assets_only: Iterable[str] = ()
) -> list[Dependency]:
    """The installed distributions the requirements need, transitively, minus those EMR provides
    (and minus the requirements of `assets_only` distributions, shipped for data files alone).
    Fails if one is not installed here (run with the project's virtualenv)."""
    data_only = {canonical(a) for a in assets_only}
    skip = {canonical(p) for p in provided}
    found: dict[str, Dependency] = {}
    queue = [Requirement(r) for r in requirements]
    while queue:
        requirement = queue.pop(0)
        key = canonical(requirement.name)
        if key in skip or key in found or not _applies(requirement):
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise PackageError(
                f"{requirement.name} is needed at run time but not installed in {sys.prefix}; "
                "run this script with the project's virtualenv (make venv)"
            ) from None
        version = dist.version
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            raise PackageError(
                f"installed {requirement.name} {version} does not match {requirement}"
            )
        found[key] = Dependency(dist.metadata["Name"], version, dist)
        if key not in data_only:
            queue += [Requirement(r) for r in dist.requires or []]
    return [found[k] for k in sorted(found)]


def dependency_files(
    dep: Dependency,
    optional_native: Sequence[str],
    assets_only: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Path]:
    """The files of an installed distribution to put in the zip, by archive name: its modules
    and metadata, without bytecode, scripts outside site-packages or compiled extensions (which a
    zip cannot load; allowed to be dropped only for `optional_native` distributions). For an
    `assets_only` distribution, only its listed files (and its metadata)."""
    only = {canonical(k): set(v) for k, v in (assets_only or {}).items()}.get(canonical(dep.name))
    files: dict[str, Path] = {}
    native = []
    for entry in dep.distribution.files or []:
        name = entry.as_posix()
        if name.startswith("..") or "__pycache__" in name or name.endswith(".pyc"):
            continue
        if only is not None and name not in only and ".dist-info/" not in name:
            continue
        parts = name.split("/")
        if parts[0].endswith(".dist-info") and parts[-1] in SKIPPED_DIST_INFO:
            continue
        if name.endswith(NATIVE_SUFFIXES):
            native.append(name)
            continue
        files[name] = Path(str(dep.distribution.locate_file(entry)))
    if native and canonical(dep.name) not in {canonical(n) for n in optional_native}:
        raise PackageError(
            f"{dep.name} {dep.version} has compiled code ({native[0]}) that a zip on --py-files "
            "cannot load: add it to emr_provided if EMR has it, or ship a packed virtualenv"
        )
    missing = sorted((only or set()) - set(files))
    if missing:
        raise PackageError(f"{dep.name} {dep.version} has no {missing[0]} (emr/bundle.yaml)")
    return files


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def write_pyfiles_zip(
    out: Path,
    wheel: Path,
    deps: Sequence[Dependency],
    optional_native: Sequence[str],
    conf_dir: Path | None = None,
    assets_only: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Write the zip: the wheel's contents plus each dependency's files, and the project's conf/
    as `lakehouse/_conf/` (where `lakehouse.core.config` finds it when no conf folder is on disk).
    Returns its entries."""
    entries: dict[str, bytes] = {}
    if conf_dir is not None:
        for path in sorted(conf_dir.rglob("*.yaml")):
            entries["lakehouse/_conf/" + path.relative_to(conf_dir).as_posix()] = path.read_bytes()
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.endswith("/"):
                entries[name] = zf.read(name)
    for dep in deps:
        for name, path in dependency_files(dep, optional_native, assets_only).items():
            if name in entries:
                raise PackageError(f"{name} is in both the wheel and {dep.name}")
            entries[name] = path.read_bytes()
    # Directory entries too: zipimport finds namespace packages (folders without __init__.py,
    # like lakehouse/generate) only through them.
    folders = {
        "/".join(n.split("/")[:i]) + "/" for n in entries for i in range(1, n.count("/") + 1)
    }
    with zipfile.ZipFile(out, "w") as zf:
        for name in sorted([*entries, *folders]):
            if name in folders:
                info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
            else:
                _add(zf, name, entries[name])
    return sorted(entries)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_bundle(
    out: Path,
    *,
    project_root: Path = PROJECT_ROOT,
    wheel: Path | None = None,
    jars_dir: Path | None = None,
    bundle_def: BundleDef | None = None,
    allow_missing_jobs: bool = False,
) -> Path:
    """Build `out/lakehouse-<version>/` and return it (see the module docstring)."""
    definition = bundle_def or load_typed_yaml(project_root / "emr" / "bundle.yaml", BundleDef)
    version = project_version(project_root)
    jobs_dir = project_root / "jobs"
    missing_jobs = [j for j in definition.jobs if not (jobs_dir / f"{j}.py").exists()]
    if missing_jobs and not allow_missing_jobs:
        raise PackageError(f"missing entry points in {jobs_dir}: {', '.join(missing_jobs)}")
    jars = jars_dir or project_root / ".jars"
    missing_jars = [j for j in definition.jars if not (jars / j).exists()]
    if missing_jars:
        raise PackageError(f"missing {', '.join(missing_jars)} in {jars}: run `make jars`")

    target = bundle_dir(out, version)
    if target.exists():
        shutil.rmtree(target)
    (target / "jobs").mkdir(parents=True)
    (target / "jars").mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        built = wheel or build_wheel(project_root, Path(tmp))
        if not built.name.startswith(f"lakehouse-{version}-"):
            raise PackageError(f"{built.name} is not version {version} of the lakehouse wheel")
        shutil.copy2(built, target / built.name)
        deps = resolve_dependencies(
            wheel_requirements(built), definition.emr_provided, definition.assets_only
        )
        write_pyfiles_zip(
            target / definition.pyfiles,
            built,
            deps,
            definition.optional_native,
            conf_dir=project_root / "conf",
            assets_only=definition.assets_only,
        )
    for job in definition.jobs:
        if job not in missing_jobs:
            shutil.copy2(jobs_dir / f"{job}.py", target / "jobs" / f"{job}.py")
    for jar in definition.jars:
        shutil.copy2(jars / jar, target / "jars" / jar)

    files = sorted(p for p in target.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        "version": version,
        "python": definition.python,
        "built_with": sys.version.split()[0],
        "dependencies": {d.name: d.version for d in deps},
        "missing_jobs": missing_jobs,
        "files": [
            {
                "path": p.relative_to(target).as_posix(),
                "size": p.stat().st_size,
                "sha256": _sha256(p),
            }
            for p in files
        ],
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="dist", help="output folder (default: dist)")
    parser.add_argument("--wheel", default=None, help="use this wheel instead of building one")
    parser.add_argument("--jars-dir", default=None, help="resolved jars (default: .jars)")
    parser.add_argument(
        "--allow-missing-jobs",
        action="store_true",
        help="build even if some entry points of emr/bundle.yaml do not exist yet",
    )
    args = parser.parse_args(argv)
    try:
        target = build_bundle(
            Path(args.out),
            wheel=Path(args.wheel) if args.wheel else None,
            jars_dir=Path(args.jars_dir) if args.jars_dir else None,
            allow_missing_jobs=args.allow_missing_jobs,
        )
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        print(f"{entry['size']:>10}  {target / entry['path']}")
    deps = ", ".join(f"{k} {v}" for k, v in manifest["dependencies"].items())
    print(f"bundle {target} (pyfiles: lakehouse + {deps})")
    if manifest["missing_jobs"]:
        print(f"warning: entry points not yet written: {', '.join(manifest['missing_jobs'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
