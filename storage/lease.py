"""A lock object with a lease, so that two runs of a job never write the same set at once.

The lock is `<root>/_lock.json` = {"owner", "expires_at"} (Unix seconds). Taking it fails with
an error naming the holder while its lease is live; an expired lease (its holder crashed) may
be taken over, and so may a lease whose holder was a process of this host that no longer
exists (killed: no need to wait out its lease). The holder renews the lease from a heartbeat
thread and deletes the lock when done, on error too. A lock that is not valid JSON is reported
by its URI (a run never leaves one: it writes the lock whole).

Atomicity: on S3 the lock is created with a conditional PUT (If-None-Match: *), and renewed or
taken over with If-Match on the ETag read, so of two racing writers only one succeeds. On a
local disk it is written to a temporary file and hard-linked into place (the link fails if a
lock exists); a takeover replaces the expired file and then
reads it back to check it won (read-check-write: two takers racing within milliseconds could
both believe they won; local sets are for single-machine use).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from storage import s3
from storage.objects import write_bytes
from storage.paths import resolve
from storage.stale import process_is_gone

log = logging.getLogger(__name__)

LOCK = "_lock.json"


class LeaseHeld(RuntimeError):
    """Another run holds a live lease on the set."""


class LeaseError(RuntimeError):
    """The lock object is not one a run wrote."""


def holder_is_dead(owner: str) -> bool:
    """Whether a lock's owner ("host:pid:token") is a process of this host that no longer
    exists: its lease need not be waited out. A holder on another host is never judged."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return process_is_gone(int(pid))


class Lease:
    """`with Lease(root, lease_s):` holds the lock of `root` for the duration of the block."""

    def __init__(self, root: str, lease_s: float = 600.0, owner: str | None = None) -> None:
        self.root, self.lease_s = root, lease_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.uri = f"{root.rstrip('/')}/{LOCK}"
        self._etag: str | None = None  # S3: the ETag of our lock object
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- storage of the lock object -------------------------------------------------------

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires_at": time.time() + self.lease_s}).encode()

    def _s3(self):
        bucket, prefix = s3.split(self.root)
        key = "/".join(p for p in (prefix.strip("/"), LOCK) if p)
        return s3.client(), bucket, key

    def _read(self) -> tuple[dict, str | None] | None:
        """(lock contents, ETag on S3) or None when there is no lock. A lock that is not what
        a run writes is an error naming it (a run never leaves one: see _write)."""
        if self.root.startswith("s3://"):
            client, bucket, key = self._s3()
            try:
                obj = client.get_object(Bucket=bucket, Key=key)
            except client.exceptions.NoSuchKey:
                return None
            except client.exceptions.ClientError as e:
                raise s3.error(e, "reading the lock", self.uri) from e
            body, etag = obj["Body"].read(), obj["ETag"]
        else:
            try:
                body, etag = (Path(self.root) / LOCK).read_bytes(), None
            except FileNotFoundError:
                return None
        try:
            lock = json.loads(body)
            float(lock["expires_at"]), str(lock["owner"])
        except (ValueError, KeyError, TypeError) as e:
            raise LeaseError(f"the lock {self.uri} is malformed ({type(e).__name__}: {e}; "
                             f"{len(body)} bytes): no run of this project wrote it whole. If "
                             "no run is writing the set, delete it and run again") from None
        return lock, etag

    def _write(self, expect: str | None, create: bool) -> bool:
        """Write our lock: `create` only if none exists, else only over the ETag `expect`.
        False when another writer got there first."""
        body = self._body()
        if self.root.startswith("s3://"):
            client, bucket, key = self._s3()
            cond = {"IfNoneMatch": "*"} if create else {"IfMatch": expect}
            try:
                self._etag = client.put_object(Bucket=bucket, Key=key, Body=body, **cond)["ETag"]
            except client.exceptions.ClientError as e:
                if e.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise s3.error(e, "writing the lock", self.uri) from e
            return True
        path = Path(self.root) / LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        if create:
            # Written whole under a temporary name, then linked into place: the link fails if
            # a lock exists, and a crash or a full disk never leaves a partial lock behind.
            tmp = path.with_name(f"{LOCK}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                tmp.write_bytes(body)
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            return True
        write_bytes(resolve(str(path))[0], str(path), body)
        current = self._read()
        return current is not None and current[0]["owner"] == self.owner

    def _delete(self) -> None:
        if self.root.startswith("s3://"):
            client, bucket, key = self._s3()
            client.delete_object(Bucket=bucket, Key=key)
        else:
            (Path(self.root) / LOCK).unlink(missing_ok=True)

    # ---- acquire, renew, release ----------------------------------------------------------

    def acquire(self) -> None:
        if not self._write(None, create=True):
            current = self._read()
            if current is None:  # released between our two calls
                ok = self._write(None, create=True)
            else:
                lock, etag = current
                dead = holder_is_dead(lock["owner"])
                if lock["expires_at"] > time.time() and not dead:
                    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lock["expires_at"]))
                    raise LeaseHeld(f"{self.uri} is held by {lock['owner']} until {until} "
                                    "(another run is writing this set: wait for it, or for its "
                                    "lease to expire if it crashed)")
                log.warning("taking over the lock %s of %s: %s", self.uri, lock["owner"],
                            "its process is gone" if dead else "its lease expired")
                ok = self._write(etag, create=False)
            if not ok:
                raise LeaseHeld(f"{self.uri} was taken by another run at the same moment")
        log.info("took the lock %s (lease %.0f s)", self.uri, self.lease_s)
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                        name=f"lease-{LOCK}")
        self._thread.start()

    def _heartbeat(self) -> None:
        # Renew at a third of the lease, so one missed renewal does not lose it.
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self._write(self._etag, create=False):
                    log.error("lost the lock %s: another run took it over", self.uri)
                    return
            except Exception as e:  # a network blip: try again at the next beat
                log.warning("renewing the lock %s failed: %s", self.uri, e)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        current = self._read()
        if current is not None and current[0]["owner"] == self.owner:
            self._delete()
            log.info("released the lock %s", self.uri)

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
