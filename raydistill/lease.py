"""The lease of a run directory: at most one job works in a run at a time (``RUN/.lease.json``).

Taken by :func:`raydistill.pipeline.run.run_stages` through :meth:`RunDir.lease`; pure fsspec.
Local disks use an exclusive hard link and ``flock``; S3 uses conditional writes
(``If-None-Match`` / ``If-Match``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Iterator

import fsspec

from raydistill.config import ConfigError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from raydistill.runs import RunDir

LEASE_FILE = ".lease.json"
LEASE_TTL_SECONDS = 300.0
"""A lease not renewed for this long belongs to a dead job and is taken over."""
LEASE_RENEW_SECONDS = 30.0
"""How often the holder renews its lease."""


class RunInUse(ConfigError):
    """Another job holds the lease of the run directory (or took it over from this one)."""


class RunLease:
    """The lease of a run directory: at most one job works in a run at a time.

    ``RUN/.lease.json`` names its holder (host, pid, command, a random token), when the lease was
    taken, when it was last renewed and for how long a renewal holds. It is created only if
    absent, renewed by a daemon thread every ``renew_seconds`` and deleted on release. A lease
    not renewed for ``ttl_seconds`` belongs to a dead job and is taken over with a warning; so is
    at once the lease of a job that ran on this machine (same boot, same PID namespace) and whose
    process is gone, so a driver killed with SIGKILL can be rerun right away.

    Every change is a compare-and-swap on the file as it was read: locally, creation is a hard
    link of a complete temporary file (fails if the name exists) and a replacement or deletion
    happens under ``flock`` of the file, checked to be the one read; on S3 they are conditional
    requests (``If-None-Match: *`` to create, ``If-Match: ETag`` to renew, take over or
    delete), which AWS S3 and moto honour. A store that ignores those headers leaves a race
    between two jobs that start in the same instant (each reads no lease and writes its own).
    Expiry compares the holder's renewal time with the reader's clock: hosts must agree on the
    time to well within ``ttl_seconds``.
    """

    def __init__(self, run: RunDir, ttl_seconds: float = LEASE_TTL_SECONDS,
                 renew_seconds: float = LEASE_RENEW_SECONDS):
        self.run = run
        self.ttl_seconds = ttl_seconds
        self.renew_seconds = renew_seconds
        self.token = uuid.uuid4().hex
        self.uri = run.uri(LEASE_FILE)
        path = run.path(LEASE_FILE)
        self._file = (_LocalLeaseFile(path) if run.on_local_disk
                      else _ObjectLeaseFile(run.fs, path))
        self._started_at = time.time()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> "RunLease":
        self.acquire()
        self._renewer = threading.Thread(target=self._keep_renewed, daemon=True,
                                         name="raydistill-lease")
        self._renewer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lease; raise :class:`RunInUse` naming the job that holds it."""
        self._started_at = time.time()
        for _ in range(4):  # each turn lost a race with another job, which the next one sees
            record, version = self._file.read()
            if record is not None and record.get("token") == self.token:
                return  # our write took effect though its answer was lost (a retried request)
            if record is None:
                if self._file.create(self._payload()):
                    return
                continue
            expired, dead = _expired(record), _holder_is_gone(record)
            if not expired and not dead:
                raise RunInUse(self._in_use_message(record))
            if self._file.replace(self._payload(), version):
                whose = "the expired lease" if expired else "the lease of a job that is gone"
                log.warning(f"run_dir: {self.run.url}: took over {whose} ({_describe(record)})")
                return
        raise RunInUse(f"run_dir: could not take the lease {self.uri}: other jobs keep "
                       "changing it")

    def holder(self) -> str | None:
        """Who holds the lease now (another live job, or this one), in words; None when nobody
        does (no lease, an expired one, or one whose job is gone)."""
        record, _ = self._file.read()
        if record is None or _expired(record) or _holder_is_gone(record):
            return None
        return _describe(record)

    def refuse_if_held(self) -> None:
        """Raise :class:`RunInUse` when another live job holds the lease; take nothing. A job
        calls it before its slow start-up (Ray), so that a busy run is refused at once; the
        lease itself is taken later (:meth:`acquire` decides any race)."""
        record, _ = self._file.read()
        if (record is not None and record.get("token") != self.token
                and not _expired(record) and not _holder_is_gone(record)):
            raise RunInUse(self._in_use_message(record))

    def renew(self) -> bool:
        """Extend the lease; False (and :meth:`check` raises from then on) if it is no longer
        ours."""
        record, version = self._file.read()
        if record is not None and record.get("token") == self.token:
            if self._file.replace(self._payload(), version):
                return True
            record, _ = self._file.read()
            if record is not None and record.get("token") == self.token:
                return True  # a retried request: our renewal did take effect
        self._lost = (f"run_dir: lost the lease of {self.run.url}: "
                      + (f"taken over by {_describe(record)}" if record else "it was deleted"))
        return False

    def check(self) -> None:
        """Raise :class:`RunInUse` if the lease was lost (another job took it over)."""
        if self._lost:
            raise RunInUse(self._lost)

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours.

        A storage error only warns: the lease expires by itself after ``ttl_seconds``.
        """
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            record, version = self._file.read()
            if record is not None and record.get("token") == self.token:
                self._file.delete(version)
        except Exception as error:  # never hide the error that ended the run
            log.warning(f"run_dir: could not release the lease {self.uri} ({error}); it expires "
                        f"in {self.ttl_seconds:.0f} s")

    def _keep_renewed(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            try:
                if not self.renew():
                    log.warning(self._lost)
                    return
            except Exception as error:  # storage trouble: the next turn retries, within the TTL
                log.warning(f"run_dir: could not renew the lease {self.uri} ({error})")

    def _payload(self) -> bytes:
        record = {"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                  "process_start": (_process_state(os.getpid()) or ("", None))[1],
                  "process_space": _process_space(), "command": " ".join(sys.argv)[:300],
                  "started_at": self._started_at, "renewed_at": time.time(),
                  "ttl_seconds": self.ttl_seconds}
        return json.dumps(record, indent=2, sort_keys=True).encode()

    def _in_use_message(self, record: dict) -> str:
        return (f"run_dir: {self.run.url} is in use by another job ({_describe(record)}); "
                f"wait for it to finish, or if that job is dead delete {self.uri} (a lease not "
                f"renewed for {record.get('ttl_seconds', LEASE_TTL_SECONDS):.0f} s is taken "
                "over automatically)")


def _expired(record: dict) -> bool:
    """Whether the holder stopped renewing; an unreadable lease counts as expired."""
    renewed = record.get("renewed_at", 0)
    return time.time() > renewed + record.get("ttl_seconds", LEASE_TTL_SECONDS)


def _holder_is_gone(record: dict) -> bool:
    """Whether the lease's holder ran where this process sees its PID (same boot, same PID
    namespace) and no longer runs: no such process, a zombie, or a process that started at
    another time under a reused PID. In doubt (not readable), it runs."""
    space = _process_space()
    pid = record.get("pid")
    if not space or record.get("process_space") != space or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        pass
    state = _process_state(pid)
    return state is not None and (state[0] in ("Z", "X") or state[1] != record.get("process_start"))


def _process_space() -> str:
    """What processes that see the same PIDs share: the boot and the PID namespace (Linux);
    empty where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return f"{handle.read().strip()}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def _process_state(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks after boot)`` of process ``pid``, from
    ``/proc``; None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()  # the name may hold spaces
    except OSError:
        return None
    return fields[0], int(fields[19])


def _describe(record: dict) -> str:
    """The holder of a lease, for a message."""
    if "token" not in record:
        return "an unreadable lease file"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.get("started_at", 0)))
    return (f"pid {record.get('pid')} on {record.get('host')}, `{record.get('command', '')}`, "
            f"started {started}, renewed {time.time() - record.get('renewed_at', 0):.0f} s ago")


LEASE_FIELD_TYPES = {"renewed_at": (int, float), "started_at": (int, float),
                     "ttl_seconds": (int, float), "pid": int, "token": str}
"""Fields whose type a lease is read with; a lease with another type there is unreadable."""


def _parse_lease(data: bytes) -> dict:
    """The lease record, or ``{}`` for one that cannot be read (not JSON, not a mapping, a field
    of the wrong type): such a lease counts as expired and is taken over."""
    try:
        record = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(record, dict):
        return {}
    for name, kinds in LEASE_FIELD_TYPES.items():
        value = record.get(name)
        if name in record and (isinstance(value, bool) or not isinstance(value, kinds)
                               or (isinstance(value, float) and not math.isfinite(value))
                               or (name == "renewed_at" and value > time.time() + 86400)):
            return {}
    return record


class _LocalLeaseFile:
    """The lease file on a local (or POSIX network) filesystem; the version is the token."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> tuple[dict | None, str | None]:
        try:
            with open(self.path, "rb") as handle:
                record = _parse_lease(handle.read())
        except FileNotFoundError:
            return None, None
        except IsADirectoryError:
            raise RunInUse(f"run_dir: {self.path} is a directory, not a lease file; remove it "
                           "if no job uses this run") from None
        return record, record.get("token")

    def create(self, data: bytes) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        temporary = self._temporary(data)
        try:
            os.link(temporary, self.path)  # atomic, and fails if the name exists
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)

    def replace(self, data: bytes, version: str | None) -> bool:
        with self._locked_if(version) as unchanged:
            if unchanged:
                os.replace(self._temporary(data), self.path)
            return unchanged

    def delete(self, version: str | None) -> bool:
        with self._locked_if(version) as unchanged:
            if unchanged:
                os.unlink(self.path)
            return unchanged

    @contextlib.contextmanager
    def _locked_if(self, version: str | None) -> Iterator[bool]:
        """Hold the lease file locked; yield whether it still is the file with ``version``."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            yield False
            return
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:  # replaced while we waited for the lock: the name is another file now
                same_file = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same_file = False
            with os.fdopen(os.dup(descriptor), "rb") as handle:
                token = _parse_lease(handle.read()).get("token")
            yield same_file and token == version
        finally:
            os.close(descriptor)

    def _temporary(self, data: bytes) -> str:
        folder, name = os.path.split(self.path)
        temporary = os.path.join(folder, f"{name}.tmp-{uuid.uuid4().hex}")
        with open(temporary, "wb") as handle:
            handle.write(data)
        return temporary


class _ObjectLeaseFile:
    """The lease object on S3, changed by conditional requests; the version is the ETag."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str):
        self.fs = fs
        self.path = path

    def read(self) -> tuple[dict | None, str | None]:
        self.fs.invalidate_cache(self.path)
        try:
            # ETag first: content newer than it only makes a later If-Match fail, never succeed.
            etag = self.fs.info(self.path)["ETag"]
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        return _parse_lease(data), etag

    def create(self, data: bytes) -> bool:
        return self._conditional(self.fs.pipe_file, self.path, data, mode="create")

    def replace(self, data: bytes, version: str | None) -> bool:
        return self._conditional(self.fs.pipe_file, self.path, data, IfMatch=version)

    def delete(self, version: str | None) -> bool:
        bucket, key, _ = self.fs.split_path(self.path)
        deleted = self._conditional(self.fs.call_s3, "delete_object", Bucket=bucket, Key=key,
                                    IfMatch=version)
        self.fs.invalidate_cache(self.path)
        return deleted

    @staticmethod
    def _conditional(request, *args, **kwargs) -> bool:
        """Run a conditional request: False when its condition did not hold."""
        try:
            request(*args, **kwargs)
            return True
        except FileNotFoundError:
            return False
        except OSError as error:
            if isinstance(error, FileExistsError) or _error_code(error) in (
                    "PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise


def _error_code(error: BaseException) -> str | None:
    """The S3 error code behind an error s3fs translated into an ``OSError``."""
    response = getattr(error.__cause__, "response", None) or {}
    return response.get("Error", {}).get("Code")
