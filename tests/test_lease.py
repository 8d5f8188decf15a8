"""The lease lock (storage/lease.py) against what crashes and full disks leave behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from storage.lease import LOCK, Lease, LeaseError, LeaseHeld, holder_is_dead


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_holder_on_this_host_is_taken_over_at_once(tmp_path, caplog):
    dead = f"{socket.gethostname()}:{_dead_pid()}:abcd1234"
    assert holder_is_dead(dead)
    Lease(str(tmp_path), lease_s=600, owner=dead)._write(None, create=True)
    with Lease(str(tmp_path), lease_s=600):
        assert "its process is gone" in caplog.text


def test_a_live_or_remote_holder_keeps_its_lease(tmp_path):
    for owner in (f"{socket.gethostname()}:{os.getpid()}:live0000",
                  f"another-host:{_dead_pid()}:remote00", "nightly-1"):
        assert not holder_is_dead(owner)
        root = tmp_path / owner.replace(":", "_")
        Lease(str(root), lease_s=600, owner=owner)._write(None, create=True)
        with pytest.raises(LeaseHeld, match="held by"):
            Lease(str(root), lease_s=600).acquire()


def test_an_empty_or_broken_lock_is_reported_by_path(tmp_path):
    (tmp_path / LOCK).write_bytes(b"")  # what a full disk left before this fix
    with pytest.raises(LeaseError, match=rf"{tmp_path}/{LOCK} is malformed .*0 bytes.*delete it"):
        Lease(str(tmp_path)).acquire()
    (tmp_path / LOCK).write_text('{"owner": "x"}')
    with pytest.raises(LeaseError, match="malformed .*KeyError"):
        Lease(str(tmp_path)).acquire()


def test_a_full_disk_leaves_no_lock(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        Lease(str(tmp_path)).acquire()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with Lease(str(tmp_path)):
        pass


def test_a_missing_bucket_is_named(s3_server, tmp_path):
    from storage.cache import fetch

    message = r"s3://no-such-bucket/\S+: bucket 'no-such-bucket' does not exist \(create it"
    with pytest.raises(FileNotFoundError, match=message):
        with Lease("s3://no-such-bucket/set"):
            pass
    with pytest.raises(FileNotFoundError, match=message):
        fetch("s3://no-such-bucket/models/normalizer.safetensors", tmp_path)
