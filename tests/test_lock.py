"""The lakehouse's run lock (lakehouse/state/lock.py): one writing run at a time, a second one
waits saying for whom, or stops naming the holder; a dead holder frees it; of two runs that
find it free at once exactly one gets it, in a local folder and on S3 (the moto server)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

import moto_server
from lakehouse.core.config import LockConfig
from lakehouse.core.context import Lakehouse
from lakehouse.pipeline import run_pipeline
from lakehouse.state import lock as L
from lakehouses import local_lakehouse

moto = moto_server.moto
moto_url = moto_server.moto_url


def _lakehouse(tmp_path: Path, wait_minutes: float = 1) -> Lakehouse:
    lh = local_lakehouse(tmp_path)
    return lh.with_config(lock=LockConfig(wait_minutes=wait_minutes, poll_seconds=5))


def _store(lh: Lakehouse) -> L.LockStore:
    return L.store_for(lh)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_a_second_run_waits_for_the_holder_saying_so_and_takes_the_lock_when_it_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    monkeypatch.setattr(L.progress, "report", lambda message, *args: said.append(message))
    lh = _lakehouse(tmp_path)
    store = _store(lh)
    first, _ = L.try_acquire(store, "run-1", "pipeline steps bronze", 6)
    assert first is not None and first.generation == 1
    slept: list[float] = []

    def first_run_finishes(seconds: float) -> None:
        slept.append(seconds)
        L.release(store, first)

    with L.run_lock(lh, "run-2", "pipeline steps bronze", sleep=first_run_finishes) as held:
        assert (held.generation, held.run_id) == (2, "run-2")
        assert L.current_holder(store) == held
    assert slept == [5]
    assert L.current_holder(store) is None
    assert said == [
        f"  waiting for the lakehouse lock: held by {first.describe()}",
        "  lakehouse lock taken after run-1 let go",
    ]
    assert store.names() == ["run-1.json", "run-1.released", "run-2.json", "run-2.released"]


def test_a_run_that_waited_long_enough_stops_naming_the_holder(tmp_path: Path) -> None:
    lh = _lakehouse(tmp_path, wait_minutes=0)
    store = _store(lh)
    first, _ = L.try_acquire(store, "run-1", "maintain", 6)
    assert first is not None

    with pytest.raises(L.LockTimeout) as stopped:
        with L.run_lock(lh, "run-2", "pipeline steps bronze", sleep=lambda s: None):
            pytest.fail("the lock was taken while another run held it")

    assert str(stopped.value).startswith(
        f"another run holds the lakehouse's lock at {store.location}: {first.describe()}; "
        "waited 0 min (lock.wait_minutes)."
    )
    assert L.current_holder(store) == first


def test_a_holder_that_died_on_this_host_or_expired_frees_the_lock(tmp_path: Path) -> None:
    lh = _lakehouse(tmp_path, wait_minutes=0)
    store = _store(lh)
    dead, _ = L.try_acquire(store, "run-1", "pipeline", 6)
    assert dead is not None
    # The holder's process ended without letting go (kill -9).
    body = json.dumps({**dataclasses.asdict(dead), "pid": _dead_pid()}).encode()
    (tmp_path / "lake" / "_lock" / "run-1.json").write_bytes(body)
    expired, _ = L.try_acquire(store, "run-2", "pipeline", -1)  # expired when taken
    assert expired is not None and expired.generation == 2

    with L.run_lock(lh, "run-3", "pipeline", sleep=lambda s: None) as held:
        assert held.generation == 3


def _write(store_dir: Path, name: str, body: dict[str, object]) -> None:
    (store_dir / name).write_text(json.dumps(body))


def test_a_holder_elsewhere_keeps_the_lock_while_it_renews_and_frees_it_when_it_stops(
    tmp_path: Path,
) -> None:
    lh = _lakehouse(tmp_path, wait_minutes=0)
    store = _store(lh)
    lock_dir = tmp_path / "lake" / "_lock"
    lock_dir.mkdir(parents=True)
    # An EMR job on another host took the lock at 00:00 for 15 minutes and renewed it at 00:05
    # and 00:10; its lease now runs to a minute from now, though the lock object's own expiry
    # has passed.
    now = L._now()
    taken = {
        "generation": 1, "run_id": "emr-run", "command": "pipeline steps silver",
        "host": "ip-10-0-0-1", "pid": 4242, "acquired_at": L._iso(now - dt.timedelta(minutes=14)),
        "expires_at": L._iso(now - dt.timedelta(minutes=1)),
    }  # fmt: skip
    _write(lock_dir, "run-1.json", taken)
    _write(lock_dir, "run-1.lease-1.json", {"expires_at": L._iso(now - dt.timedelta(minutes=5))})
    _write(lock_dir, "run-1.lease-2.json", {"expires_at": L._iso(now + dt.timedelta(minutes=1))})

    holder = L.current_holder(store)
    assert holder is not None and holder.run_id == "emr-run"
    assert holder.expires_at == L._iso(now + dt.timedelta(minutes=1))  # the newest renewal counts
    with pytest.raises(L.LockTimeout):
        with L.run_lock(lh, "run-2", "pipeline", sleep=lambda s: None):
            pytest.fail("the lock was taken while its holder kept renewing it")

    # The job was cancelled on its timeout: no renewal came after one that has now run out.
    _write(lock_dir, "run-1.lease-3.json", {"expires_at": L._iso(now - dt.timedelta(seconds=1))})

    assert L.current_holder(store) is None
    with L.run_lock(lh, "run-2", "pipeline", sleep=lambda s: None) as held:
        assert held.generation == 2


def test_a_holder_renews_its_lease_until_it_lets_go(tmp_path: Path) -> None:
    store = _store(_lakehouse(tmp_path))
    mine, _ = L.try_acquire(store, "run-1", "pipeline", 0.01)  # 0.6 s, renewed every 0.2 s
    assert mine is not None

    renewal = L.LeaseRenewal(store, mine, 0.01).start()
    deadline = time.monotonic() + 60
    while renewal.renewed < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    renewal.stop()
    renewed = renewal.renewed

    assert renewed >= 3
    leases = sorted(n for n in store.names() if ".lease-" in n)
    assert leases == sorted(f"run-1.lease-{k}.json" for k in range(1, renewed + 1))
    newest = json.loads(store.read(f"run-1.lease-{renewed}.json") or b"{}")
    assert newest["run_id"] == "run-1"
    assert L.current_holder(store) in (
        None,
        dataclasses.replace(mine, expires_at=newest["expires_at"]),
    )
    time.sleep(0.5)
    assert sorted(n for n in store.names() if ".lease-" in n) == leases  # none after stop()


class _LeaseStoreDown:
    """A store that takes the lock but can store no renewal (S3 unreachable)."""

    def __init__(self, store: L.LockStore) -> None:
        self.inner, self.location = store, store.location

    def names(self) -> list[str]:
        return self.inner.names()

    def read(self, name: str) -> bytes | None:
        return self.inner.read(name)

    def create(self, name: str, body: bytes) -> bool:
        if ".lease-" in name:
            raise OSError("simulated: the store is unreachable")
        return self.inner.create(name, body)


def test_a_run_whose_lease_ran_out_without_a_renewal_fails_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    monkeypatch.setattr(L.progress, "report", lambda message, *args: said.append(message))
    lh = local_lakehouse(tmp_path).with_config(
        lock=LockConfig(wait_minutes=0, poll_seconds=5, lease_minutes=0.01)  # 0.6 s
    )
    store = _LeaseStoreDown(_store(lh))

    with pytest.raises(L.LockLost) as lost:
        with L.run_lock(lh, "run-1", "pipeline", store=store):
            deadline = time.monotonic() + 60
            while not any("ran out" in m for m in said) and time.monotonic() < deadline:
                time.sleep(0.05)

    assert str(lost.value).startswith(
        f"run run-1 lost the lakehouse's lock at {store.location}: its lease ran out at "
    )
    assert any(
        m.startswith("  could not renew the lakehouse lock's lease (simulated") for m in said
    )
    assert L.current_holder(store) is None  # released all the same


def test_a_run_inside_a_run_of_this_process_does_not_wait_for_itself(tmp_path: Path) -> None:
    lh = _lakehouse(tmp_path, wait_minutes=0)
    with L.run_lock(lh, "backfill-1", "backfill") as outer:
        with L.run_lock(lh, "backfill-1", "pipeline") as inner:
            assert inner == outer
        assert L.current_holder(_store(lh)) == outer
    assert L.current_holder(_store(lh)) is None


def _race(store: L.LockStore, runners: int) -> list[str]:
    """`runners` threads try to take the free lock at the same moment; the run ids that got
    it."""
    barrier = threading.Barrier(runners)
    won: list[str] = []

    def run(n: int) -> None:
        barrier.wait()
        mine, _ = L.try_acquire(store, f"run-{n}", "pipeline", 6)
        if mine is not None:
            won.append(mine.run_id)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


@pytest.mark.parametrize("trial", range(5))
def test_of_runs_that_find_the_lock_free_at_once_exactly_one_gets_it(
    tmp_path: Path, trial: int
) -> None:
    store = _store(_lakehouse(tmp_path))

    assert len(_race(store, 8)) == 1
    assert [n for n in store.names() if n.endswith(".json")] == ["run-1.json"]


def test_on_s3_the_lock_is_created_with_if_none_match(moto: str) -> None:
    s3 = moto_server.client(moto, "s3")
    s3.create_bucket(
        Bucket="lake", CreateBucketConfiguration={"LocationConstraint": moto_server.REGION}
    )
    store = L.S3Store(s3, "lake", "lakehouse/_lock")

    assert store.create("probe", b"first") is True
    assert store.create("probe", b"second") is False
    assert store.read("probe") == b"first"
    assert len(_race(store, 6)) == 1
    assert store.names() == ["probe", "run-1.json"]


def test_a_pipeline_started_while_another_run_holds_the_lock_stops_before_writing(
    spark: SparkSession, tmp_path: Path
) -> None:
    lh = _lakehouse(tmp_path, wait_minutes=0)
    holder, _ = L.try_acquire(L.store_for(lh), "run-1", "pipeline steps bronze,silver", 6)
    assert holder is not None

    with pytest.raises(L.LockTimeout, match="run run-1 \\(pipeline steps bronze,silver"):
        run_pipeline(spark, lh, "run-2")

    assert sorted(p.name for p in (tmp_path / "lake").iterdir()) == ["_lock"]
