"""Gold for Athena against a moto server: every gold table registered in the environment's BI
database as a native Delta table at its S3 location, put back as defined by a second call, and
`--dry-run` sends nothing."""

from __future__ import annotations

from typing import Any

import pytest

import moto_server
from lakehouse.core.context import Lakehouse
from moto_server import run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto

LAKE = "s3://lakehouse-dev-lake/lakehouse"


def _tables(moto: str) -> dict[str, dict[str, Any]]:
    glue = moto_server.client(moto, "glue")
    return {t["Name"]: t for t in glue.get_tables(DatabaseName="lakehouse_dev_bi")["TableList"]}


def test_every_gold_table_is_a_delta_table_athena_reads(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "athena", "--env", "dev"], monkeypatch) == 0

    tables = _tables(moto)
    gold = Lakehouse.load("dev").gold
    assert sorted(tables) == sorted(gold) and len(tables) == 11
    for name, table in tables.items():
        assert table["TableType"] == "EXTERNAL_TABLE"
        assert table["Parameters"] == {"EXTERNAL": "TRUE", "table_type": "DELTA"}
        assert table["StorageDescriptor"]["Location"] == f"{LAKE}/gold/{name}"
        assert table["Description"] == gold[name].description.strip()


def test_a_second_call_puts_a_changed_table_back(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "athena", "--env", "dev"], monkeypatch) == 0
    glue = moto_server.client(moto, "glue")
    glue.update_table(
        DatabaseName="lakehouse_dev_bi",
        TableInput={
            "Name": "daily_kpis",
            "StorageDescriptor": {"Location": "s3://elsewhere/daily_kpis"},
        },
    )

    assert run_cli(["emr", "athena", "--env", "dev"], monkeypatch) == 0

    tables = _tables(moto)
    assert len(tables) == 11
    assert tables["daily_kpis"]["StorageDescriptor"]["Location"] == f"{LAKE}/gold/daily_kpis"
    assert tables["daily_kpis"]["Parameters"]["table_type"] == "DELTA"
    assert [d["Name"] for d in glue.get_databases()["DatabaseList"]] == ["lakehouse_dev_bi"]


def test_the_dry_run_prints_the_glue_requests_and_sends_none(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["emr", "athena", "--env", "dev", "--dry-run"], monkeypatch) == 0

    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert len(lines) == 2 + 3 * 11
    assert '"operation": "CreateTable"' in lines[-1]
    assert moto_server.client(moto, "glue").get_databases()["DatabaseList"] == []
