"""The job bundle (`lakehouse.emr.package`) and its upload to S3 (against a moto server).

The tests give `build_bundle` a small wheel made here instead of running `pip wheel` (which needs
the network for its build environment and takes seconds); the wheel declares the real package's
requirements, so dependency resolution runs on the real virtualenv.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import moto_server
from lakehouse.core.config import PROJECT_ROOT, load_typed_yaml
from lakehouse.emr.definitions import BundleDef
from moto_server import run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto

JOBS = [
    "bronze", "silver", "quality", "gold", "pipeline", "maintain", "erase", "backfill", "stream"
]  # fmt: skip
# The jars emr/bundle.yaml ships: Deequ, and the Kafka connector with what it needs.
JARS = [
    "deequ-2.0.7-spark-3.5.jar",
    "spark-sql-kafka-0-10_2.12-3.5.7.jar",
    "spark-token-provider-kafka-0-10_2.12-3.5.7.jar",
    "kafka-clients-3.4.1.jar",
    "commons-pool2-2.11.1.jar",
]


@pytest.fixture(scope="module")
def package() -> ModuleType:
    return importlib.import_module("lakehouse.emr.package")


def _project(root: Path) -> tuple[Path, Path]:
    """A project folder with pyproject.toml, the entry points, a Deequ jar and a wheel."""
    (root / "jobs").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "lakehouse"\nversion = "0.1.0"\n')
    for job in JOBS:
        (root / "jobs" / f"{job}.py").write_text(f"# {job} entry point\n")
    jars = root / ".jars"
    jars.mkdir()
    for jar in JARS:
        (jars / jar).write_bytes(b"PK fake jar")
    wheel = root / "build" / "lakehouse-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    requires = importlib.metadata.requires("lakehouse") or []
    metadata = "Metadata-Version: 2.1\nName: lakehouse\nVersion: 0.1.0\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("lakehouse/__init__.py", "__version__ = '0.1.0'\n")
        zf.writestr("lakehouse/core/generator_spec.py", "SPEC = 1\n")
        zf.writestr("lakehouse-0.1.0.dist-info/METADATA", metadata)
    return wheel, jars


def _python_on_zip_alone(zip_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """`code` run by this interpreter without site-packages (`-S`), the zip first on its path
    (as `--py-files` puts it on EMR's)."""
    return subprocess.run(
        [sys.executable, "-S", "-c", code, str(zip_path)],
        capture_output=True,
        text=True,
        check=False,
    )


def _bundle_def() -> BundleDef:
    return load_typed_yaml(PROJECT_ROOT / "emr" / "bundle.yaml", BundleDef)


def test_bundle_holds_wheel_pure_python_deps_jobs_and_deequ(
    package: ModuleType, tmp_path: Path
) -> None:
    wheel, jars = _project(tmp_path / "project")

    target = package.build_bundle(
        tmp_path / "dist",
        project_root=tmp_path / "project",
        wheel=wheel,
        jars_dir=jars,
        bundle_def=_bundle_def(),
    )

    assert target == tmp_path / "dist" / "lakehouse-0.1.0"
    manifest = json.loads((target / "manifest.json").read_text())
    assert sorted(e["path"] for e in manifest["files"]) == sorted(
        [
            *(f"jars/{j}" for j in JARS),
            *(f"jobs/{j}.py" for j in JOBS),
            "lakehouse-0.1.0-py3-none-any.whl",
            "pyfiles.zip",
        ]
    )
    assert sorted(manifest["dependencies"]) == sorted(
        [
            "delta-spark",
            "importlib_metadata",
            "Jinja2",
            "lazy-importer",
            "MarkupSafe",
            "plotly",
            "pydeequ",
            "PyYAML",
            "zipp",
        ]
    )
    with zipfile.ZipFile(target / "pyfiles.zip") as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names if not n.endswith(".dist-info/") and "/" in n}
    assert {"lakehouse", "yaml", "pydeequ", "delta", "zipp", "importlib_metadata"} <= tops
    assert not {"pyspark", "numpy", "pandas", "boto3", "botocore", "pyarrow"} & tops
    assert not [n for n in names if n.endswith((".so", ".pyc"))]
    # plotly for its plotly.js alone (emr/bundle.yaml: assets_only), none of its modules.
    assert [n for n in names if n.startswith("plotly/") and not n.endswith("/")] == [
        "plotly/__init__.py",
        "plotly/package_data/plotly.min.js",
    ]
    assert "lakehouse/core/" in names  # directory entries let zipimport find namespace packages


def test_pyfiles_zip_imports_without_site_packages(package: ModuleType, tmp_path: Path) -> None:
    wheel, jars = _project(tmp_path / "project")
    target = package.build_bundle(
        tmp_path / "dist",
        project_root=tmp_path / "project",
        wheel=wheel,
        jars_dir=jars,
        bundle_def=_bundle_def(),
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import yaml, zipp;"
        "import lakehouse.core.generator_spec;"
        "print(yaml.__with_libyaml__, yaml.safe_load('a: [1]'), lakehouse.core.generator_spec.SPEC)"
    )

    result = _python_on_zip_alone(target / "pyfiles.zip", code)

    assert result.stderr == ""
    assert result.stdout == "False {'a': [1]} 1\n"


def test_bundle_is_reproducible(package: ModuleType, tmp_path: Path) -> None:
    wheel, jars = _project(tmp_path / "project")
    kwargs = {
        "project_root": tmp_path / "project",
        "wheel": wheel,
        "jars_dir": jars,
        "bundle_def": _bundle_def(),
    }

    first = package.build_bundle(tmp_path / "one", **kwargs)
    second = package.build_bundle(tmp_path / "two", **kwargs)

    assert (first / "pyfiles.zip").read_bytes() == (second / "pyfiles.zip").read_bytes()


def test_missing_entry_points_or_jars_stop_the_build(package: ModuleType, tmp_path: Path) -> None:
    wheel, jars = _project(tmp_path / "project")
    (tmp_path / "project" / "jobs" / "gold.py").unlink()

    with pytest.raises(package.PackageError, match=r"missing entry points in .*: gold"):
        package.build_bundle(
            tmp_path / "dist",
            project_root=tmp_path / "project",
            wheel=wheel,
            jars_dir=jars,
            bundle_def=_bundle_def(),
        )
    (jars / "deequ-2.0.7-spark-3.5.jar").unlink()
    with pytest.raises(package.PackageError, match=r"deequ-2.0.7-spark-3.5.jar .*make jars"):
        package.build_bundle(
            tmp_path / "dist",
            project_root=tmp_path / "project",
            wheel=wheel,
            jars_dir=jars,
            bundle_def=_bundle_def(),
            allow_missing_jobs=True,
        )


def test_compiled_dependencies_are_refused(package: ModuleType) -> None:
    provided = [p for p in _bundle_def().emr_provided if p != "pyarrow"]
    (pyarrow,) = package.resolve_dependencies(["pyarrow"], provided)

    with pytest.raises(package.PackageError, match=r"pyarrow .* compiled code"):
        package.dependency_files(pyarrow, ["pyyaml"])


def test_upload_puts_the_bundle_under_the_version(
    package: ModuleType, moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel, jars = _project(tmp_path / "project")
    target = package.build_bundle(
        tmp_path / "dist",
        project_root=tmp_path / "project",
        wheel=wheel,
        jars_dir=jars,
        bundle_def=_bundle_def(),
    )
    s3 = moto_server.client(moto, "s3")
    s3.create_bucket(
        Bucket="lakehouse-dev-artifacts",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )

    argv = ["emr", "upload", "--env", "dev", "--dist", str(tmp_path / "dist")]
    assert run_cli([*argv, "--bundle-version", "0.1.0"], monkeypatch) == 0

    listed = s3.list_objects_v2(Bucket="lakehouse-dev-artifacts")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(
        f"lakehouse/0.1.0/{p}"
        for p in [
            *(f"jars/{j}" for j in JARS),
            *(f"jobs/{j}.py" for j in JOBS),
            "lakehouse-0.1.0-py3-none-any.whl",
            "pyfiles.zip",
            "manifest.json",
        ]
    )
    body = s3.get_object(Bucket="lakehouse-dev-artifacts", Key="lakehouse/0.1.0/pyfiles.zip")
    assert body["Body"].read() == (target / "pyfiles.zip").read_bytes()
    manifest = json.loads((target / "manifest.json").read_text())
    zip_entry = next(e for e in manifest["files"] if e["path"] == "pyfiles.zip")
    assert body["Metadata"] == {"sha256": zip_entry["sha256"]}


def test_upload_refuses_a_file_changed_after_packaging(
    package: ModuleType, moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel, jars = _project(tmp_path / "project")
    target = package.build_bundle(
        tmp_path / "dist",
        project_root=tmp_path / "project",
        wheel=wheel,
        jars_dir=jars,
        bundle_def=_bundle_def(),
    )
    (target / "jobs" / "gold.py").write_text("# edited by hand\n")
    s3 = moto_server.client(moto, "s3")
    s3.create_bucket(
        Bucket="lakehouse-dev-artifacts",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )

    argv = ["emr", "upload", "--env", "dev", "--dist", str(tmp_path / "dist")]
    assert run_cli([*argv, "--bundle-version", "0.1.0"], monkeypatch) == 2

    assert s3.list_objects_v2(Bucket="lakehouse-dev-artifacts")["KeyCount"] == 0


def test_the_real_bundle_ships_neither_the_generator_nor_the_benchmark(
    package: ModuleType, tmp_path: Path
) -> None:
    """`make package`'s own build (the project's real wheel, built by pip): the development
    tools in `lib/lakehouse_dev` stay out of the wheel and out of pyfiles.zip."""
    target = package.build_bundle(tmp_path / "dist")

    [wheel] = sorted(target.glob("lakehouse-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = zf.namelist()
    with zipfile.ZipFile(target / "pyfiles.zip") as zf:
        in_zip = zf.namelist()
    for names in (in_wheel, in_zip):
        assert "lakehouse/silver/engine.py" in names
        assert "lakehouse/emr/package.py" in names
        assert [n for n in names if n.startswith("lakehouse_dev") or "/generate/" in n] == []
        assert [n for n in names if "/bench/" in n] == []
    assert "lakehouse/_conf/tables/orders.yaml" in in_zip
    assert "lakehouse/_conf/gold/fact_orders.yaml" in in_zip
    # The report pages render from the zip alone: the templates, Jinja2 with MarkupSafe's
    # pure-Python escaping, and plotly.js read from the one plotly file shipped.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from lakehouse.core import pages;"
        "page = pages.render('base.html.j2'); print(page.count('<html'), len(pages.plotly_js()))"
    )
    result = _python_on_zip_alone(target / "pyfiles.zip", code)
    assert result.stderr == ""
    count, js = result.stdout.split()
    assert count == "1" and int(js) > 1_000_000
