"""One writing run at a time on a lakehouse: the run lock.

Two pipelines started at once on one lakehouse raced (a create-if-not-exists that lost, a
ledger check that saw the other run's rows) and never said another run was active. Every run
now holds the lakehouse's lock while it writes (`run_pipeline`, and through it the commands and
EMR jobs that run steps); a second run waits for it, saying what it waits for, and gives up
after `lock.wait_minutes` with an error naming the holder.

The lock is a sequence of small objects under `<lakehouse root>/_lock/`, one generation each:
`run-<n>.json` names its holder (run id, command, host, process, when it was taken, when it
expires), `run-<n>.released` is written when the holder lets go. Taking the lock is creating
`run-<n+1>.json` where `n` is the newest generation, which must be released, expired, or held by
a process of this host that no longer exists (a run killed with `kill -9`). The create is
atomic, so of two runs that both find the lock free exactly one gets it:

- a local folder: the object is written under a name of its own, then hard-linked to its name,
  which fails when the name exists;
- S3 (`s3://`, `s3a://`): `PutObject` with `If-None-Match: *`, which S3 refuses with 412 when
  the key exists.

Nothing is ever deleted or overwritten, so no run can remove a lock another run just took.

The lock is a lease: taken for `lock.lease_minutes`, renewed by a thread of the holder every
third of that while the holder runs, each renewal a new object `run-<n>.lease-<k>.json` with the
new expiry (the newest one counts). A holder on another host that dies (an EMR job cancelled on
its timeout, a terminated cluster) stops renewing, and the lock is free `lease_minutes` after its
last renewal, so the orchestrator's retry gets it within the lease instead of hours later. A
lock object written before leases (a fixed `expires_at`) is honoured as written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from lakehouse.core import progress
from lakehouse.core.config import is_uri, join_uri
from lakehouse.core.context import Lakehouse
from lakehouse.core.errors import UserError

LOCK_DIR = "_lock"
_HOLDER_RE = re.compile(r"^run-(\d+)\.json$")


class LockTimeout(UserError):
    """Another run held the lakehouse's lock for longer than this run would wait."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) one generation of the lock."""

    generation: int
    run_id: str
    command: str
    host: str
    pid: int
    acquired_at: str
    expires_at: str

    def describe(self) -> str:
        return (
            f"run {self.run_id} ({self.command}, process {self.pid} on {self.host}, "
            f"since {self.acquired_at}, lock expires {self.expires_at})"
        )


class LockStore(Protocol):
    """Where the lock's objects live: names, reads, atomic creates."""

    location: str

    def names(self) -> list[str]: ...

    def read(self, name: str) -> bytes | None: ...

    def create(self, name: str, body: bytes) -> bool:
        """Write `name` only if it does not exist; False when it does."""
        ...


class LocalStore:
    """Lock objects in a local folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if not p.name.startswith("."))

    def read(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None

    def create(self, name: str, body: bytes) -> bool:
        """Written whole under a name of its own, then linked to `name`: the link fails when
        `name` exists, and a reader never sees half an object."""
        self.folder.mkdir(parents=True, exist_ok=True)
        draft = self.folder / f".{name}.{os.getpid()}.{time.monotonic_ns()}"
        draft.write_bytes(body)
        try:
            os.link(draft, self.folder / name)
        except FileExistsError:
            return False
        finally:
            draft.unlink()
        return True


def _if_none_match(request: Any, **_: Any) -> None:
    request.headers["If-None-Match"] = "*"


class S3Store:
    """Lock objects under an S3 prefix, created with `If-None-Match: *`.

    The header is added to every `PutObject` of the store's client by an event hook rather
    than botocore's `IfNoneMatch` parameter, which botocore only knows from 1.35 (EMR 7.x
    releases provide older ones); the store is the client's only user."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}"
        client.meta.events.register("before-sign.s3.PutObject", _if_none_match)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def names(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + "/"
        )
        return sorted(o["Key"].rsplit("/", 1)[-1] for p in pages for o in p.get("Contents", []))

    def read(self, name: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(name))[
                "Body"
            ].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body

    def create(self, name: str, body: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=body)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
                409,
                412,
            ):
                return False
            raise
        return True


def store_for(lh: Lakehouse) -> LockStore:
    """The lock's store for the lakehouse root: its `_lock/` folder or S3 prefix."""
    root = lh.root
    if not is_uri(root) or root.startswith("file:"):
        return LocalStore(Path(root.removeprefix("file://").removeprefix("file:")) / LOCK_DIR)
    parsed = urlparse(root)
    if parsed.scheme not in ("s3", "s3a", "s3n"):
        raise UserError(f"no run lock for {root}: only local folders and S3 are supported")
    import boto3

    aws = lh.config.aws
    client = boto3.client(
        "s3",
        region_name=aws.region if aws else None,
        endpoint_url=aws.endpoint_url if aws else None,
    )
    return S3Store(client, parsed.netloc, join_uri(parsed.path.lstrip("/"), LOCK_DIR))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def current_holder(store: LockStore, now: dt.datetime | None = None) -> Holder | None:
    """The holder of the lock now, or None when it is free (never taken, released, expired, or
    held by a process of this host that has ended)."""
    return _look(store, now)[0]


def _look(store: LockStore, now: dt.datetime | None = None) -> tuple[Holder | None, int]:
    """(the holder or None, the newest generation), from one listing: the generation to take is
    the one after the newest seen free, so two runs that both saw it free create the same
    object and one of them fails."""
    now = now or _now()
    names = store.names()
    newest = max((int(m[1]) for n in names if (m := _HOLDER_RE.match(n))), default=0)
    if newest == 0 or f"run-{newest}.released" in names:
        return None, newest
    body = store.read(f"run-{newest}.json")
    if body is None:
        return None, newest
    try:
        holder = Holder(**json.loads(body))
    except (ValueError, TypeError) as exc:
        raise UserError(
            f"the lock object {store.location}/run-{newest}.json is unreadable ({exc}); if no "
            f"run is active, write run-{newest}.released beside it"
        ) from None
    lease_re = re.compile(rf"^run-{newest}\.lease-(\d+)\.json$")
    renewals = [int(m[1]) for n in names if (m := lease_re.match(n))]
    if renewals:
        lease = store.read(f"run-{newest}.lease-{max(renewals)}.json")
        if lease is not None:
            holder = replace(holder, expires_at=str(json.loads(lease)["expires_at"]))
    if dt.datetime.fromisoformat(holder.expires_at.replace("Z", "+00:00")) <= now:
        return None, newest
    if holder.host == socket.gethostname() and _pid_gone(holder.pid):
        return None, newest
    return holder, newest


def try_acquire(
    store: LockStore, run_id: str, command: str, lease_minutes: float
) -> tuple[Holder | None, Holder | None]:
    """(the lock taken for `lease_minutes`, None) or (None, whoever holds it)."""
    holder, newest = _look(store)
    if holder is not None:
        return None, holder
    now = _now()
    mine = Holder(
        generation=newest + 1,
        run_id=run_id,
        command=command,
        host=socket.gethostname(),
        pid=os.getpid(),
        acquired_at=_iso(now),
        expires_at=_iso(now + dt.timedelta(minutes=lease_minutes)),
    )
    body = json.dumps(asdict(mine), sort_keys=True).encode()
    if store.create(f"run-{mine.generation}.json", body):
        return mine, None
    # Another run created this generation between our look and our create.
    return None, current_holder(store)


class LockLost(UserError):
    """The run's lease ran out while it ran (no renewal reached the store in time): another run
    may have taken the lock and written beside it."""


class LeaseRenewal:
    """Renews `holder`'s lease every third of `lease_minutes`, on a daemon thread, until
    `stop()`: each renewal is the object `run-<n>.lease-<k>.json` with the new expiry. A renewal
    that fails (S3 unreachable a moment) is reported and tried again within seconds; the lease it
    already has still runs. If it runs out before a renewal gets through, `lost` says since when
    (`run_lock` then fails the run)."""

    RETRY_SECONDS = 10.0

    def __init__(self, store: LockStore, holder: Holder, lease_minutes: float) -> None:
        self.store, self.holder, self.lease_minutes = store, holder, lease_minutes
        self.renewed = 0
        self.lost: str | None = None
        self._good_until = dt.datetime.fromisoformat(holder.expires_at.replace("Z", "+00:00"))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lakehouse-lock-lease-{holder.generation}", daemon=True
        )

    def start(self) -> LeaseRenewal:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        beat = max(self.lease_minutes * 60 / 3, 0.1)
        wait, k = beat, 0
        while not self._stop.wait(wait):
            now = _now()
            expires = now + dt.timedelta(minutes=self.lease_minutes)
            body = json.dumps(
                {
                    "run_id": self.holder.run_id,
                    "renewed_at": _iso(now),
                    "expires_at": _iso(expires),
                },
                sort_keys=True,
            ).encode()
            try:
                if self.store.create(f"run-{self.holder.generation}.lease-{k + 1}.json", body):
                    k += 1
                    self.renewed, self._good_until, wait = k, expires, beat
                    continue
                k += 1  # the name exists (cannot happen with one renewer): take the next one
            except Exception as exc:
                progress.report(f"  could not renew the lakehouse lock's lease ({exc}); retrying")
            wait = min(beat, self.RETRY_SECONDS)
            if self.lost is None and _now() >= self._good_until:
                self.lost = _iso(self._good_until)
                progress.report(
                    f"  the lakehouse lock's lease ran out at {self.lost}: another run may take it"
                )


def release(store: LockStore, holder: Holder) -> None:
    store.create(
        f"run-{holder.generation}.released",
        json.dumps({"run_id": holder.run_id, "released_at": _iso(_now())}).encode(),
    )


# Locks this process holds, by store location: a run inside a run (a backfill's pipeline) does
# not wait for itself.
_HELD: dict[str, Holder] = {}


@contextmanager
def run_lock(
    lh: Lakehouse,
    run_id: str,
    command: str,
    *,
    store: LockStore | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Holder]:
    """Hold the lakehouse's lock inside; wait for another holder up to `lock.wait_minutes`,
    reporting what is waited for; `LockTimeout` naming the holder after that."""
    store = store or store_for(lh)
    if store.location in _HELD:
        yield _HELD[store.location]
        return
    settings = lh.config.lock
    deadline = time.monotonic() + settings.wait_minutes * 60
    waited_for: Holder | None = None
    while True:
        mine, other = try_acquire(store, run_id, command, settings.lease_minutes)
        if mine is not None:
            break
        if other is None:
            sleep(min(1.0, settings.poll_seconds))  # let go between our create and our look
            continue
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"another run holds the lakehouse's lock at {store.location}: "
                f"{other.describe()}; waited {settings.wait_minutes} min (lock.wait_minutes). "
                "Run again when it has finished; a holder that died on another host holds it "
                "until it expires."
            )
        if other != waited_for:
            progress.report(f"  waiting for the lakehouse lock: held by {other.describe()}")
            waited_for = other
        sleep(settings.poll_seconds)
    if waited_for is not None:
        progress.report(f"  lakehouse lock taken after {waited_for.run_id} let go")
    _HELD[store.location] = mine
    renewal = LeaseRenewal(store, mine, settings.lease_minutes).start()
    try:
        yield mine
    finally:
        renewal.stop()
        del _HELD[store.location]
        release(store, mine)
    if renewal.lost is not None:
        raise LockLost(
            f"run {run_id} lost the lakehouse's lock at {store.location}: its lease ran out at "
            f"{renewal.lost} with no renewal stored (lock.lease_minutes); another run may have "
            "written meanwhile. Check the ledger and rerun the day."
        )
