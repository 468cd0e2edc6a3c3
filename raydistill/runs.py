"""The run directory: one folder (local path or ``s3://`` URL, through fsspec) per run.

Layout::

    RUN/config.yaml            the run's config, written once
    RUN/manifest.parquet       ingest: the videos that passed (video_id, path, label, ...)
    RUN/rejects.parquet        ingest: listed videos that did not, with a reason
    RUN/clips/{split}/shard-NNNNN.parquet   decode: clip cache, one shard per task
    RUN/clips/rejects.parquet  decode: rows that failed to decode
    RUN/_stages/{stage}.json   completion marker of a stage (written last)
    RUN/.lease.json            the lease of the job working in the run (see :class:`RunLease`)

Every write is atomic: a reader never sees a half-written file (local files are written to a
temporary name and renamed; an S3 object appears only when its upload completes). S3 requests
that fail transiently (5xx, throttling) are retried by botocore (:func:`storage_options`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from raydistill.config import (ADDITIVE_STAGES, ConfigError, RunConfig, dump_yaml, load_yaml,
                               to_dict)


S3_MAX_ATTEMPTS = 10
"""Attempts per S3 request (botocore's ``standard`` retry mode: exponential backoff with jitter,
capped at 20 s, so a 10-attempt request outlasts about a minute of errors)."""


def storage_options(url: str) -> dict:
    """fsspec options to open ``url`` with: for S3, botocore retries of transient errors
    (5xx, ``SlowDown`` and other throttling, dropped connections) in the ``standard`` mode with
    :data:`S3_MAX_ATTEMPTS` attempts; ``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS`` override both.

    botocore's own default (``legacy``, 5 attempts, uncapped backoff) gives up within seconds.
    The options travel with a pickled filesystem (Ray Train's storage), and every process that
    opens a run URL (Ray workers) gets them from here.
    """
    protocol = fsspec.core.split_protocol(url)[0]
    if protocol not in ("s3", "s3a"):
        return {}
    # botocore's ``max_attempts`` counts retries; ``total_max_attempts`` counts the first try too,
    # as AWS_MAX_ATTEMPTS does.
    retries = {"mode": os.environ.get("AWS_RETRY_MODE", "standard"),
               "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", S3_MAX_ATTEMPTS))}
    return {"config_kwargs": {"retries": retries}}


def open_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path without protocol)`` for a local path or URL such as ``s3://b/k``.

    S3 endpoints and credentials come from the usual AWS variables (``AWS_ENDPOINT_URL`` …);
    transient S3 errors are retried (:func:`storage_options`).
    """
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
    return fs, path.rstrip("/") or path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def as_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The path as other processes should open it: plain for local files, ``proto://`` otherwise."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def join(base: str, *parts: str) -> str:
    """Join URL/path parts with ``/`` (works for local paths and URLs alike)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file."""
    parent = path.rsplit("/", 1)[0]
    if is_local(fs):
        fs.makedirs(parent, exist_ok=True)
        temporary = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp-{uuid.uuid4().hex}"
        with fs.open(temporary, "wb") as handle:
            handle.write(data)
        fs.mv(temporary, path)
    else:
        # An object store makes a PUT visible only once it is complete.
        fs.pipe_file(path, data)


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    """Serialise an Arrow table as Parquet bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


class RunDir:
    """A run directory on any fsspec filesystem, with atomic writes and stage markers."""

    def __init__(self, url: str):
        self.fs, self.root = open_fs(url.rstrip("/"))
        # A local run is named by its absolute path: Ray workers (Ray Train's especially) run in
        # other working directories, and must find the same run from the URL they are given.
        self.url = self.root if is_local(self.fs) else url.rstrip("/")

    def path(self, *parts: str) -> str:
        """Filesystem path (no protocol) of a file inside the run."""
        return join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """Openable path or URL of a file inside the run (what other processes should receive)."""
        return as_url(self.fs, self.path(*parts))

    def fresh_path(self, *parts: str) -> str:
        """:meth:`path`, with any cached listing of it dropped: other processes (Ray workers)
        write into the run, and s3fs answers ``exists``/``info`` from a per-instance listing
        cache that would not show their files."""
        path = self.path(*parts)
        self.fs.invalidate_cache(path)
        return path

    def exists(self, *parts: str) -> bool:
        """Whether a file inside the run exists."""
        return self.fs.exists(self.fresh_path(*parts))

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Atomically write bytes to ``relpath``."""
        write_bytes_atomic(self.fs, self.path(relpath), data)

    def read_bytes(self, relpath: str) -> bytes:
        """Read a whole file of the run."""
        return self.fs.cat_file(self.fresh_path(relpath))

    def write_json(self, relpath: str, value: Any) -> None:
        """Atomically write a JSON document."""
        self.write_bytes(relpath, json.dumps(value, indent=2, sort_keys=True).encode())

    def read_json(self, relpath: str) -> Any:
        """Read a JSON document."""
        return json.loads(self.read_bytes(relpath))

    def write_table(self, relpath: str, table: pa.Table) -> None:
        """Atomically write an Arrow table as Parquet."""
        self.write_bytes(relpath, table_to_parquet_bytes(table))

    def read_table(self, relpath: str) -> pa.Table:
        """Read a Parquet file (or a folder of Parquet files) of the run."""
        return pq.read_table(self.fresh_path(relpath), filesystem=self.fs)

    def read_schema(self, relpath: str) -> pa.Schema:
        """The Arrow schema of a Parquet file of the run (its footer only, not its data)."""
        with self.fs.open(self.fresh_path(relpath), "rb") as handle:
            return pq.read_schema(handle)

    def list(self, relpath: str, suffix: str = "") -> list[str]:
        """Sorted paths (relative to the run) of the files under ``relpath`` ending in ``suffix``."""
        base = self.path(relpath)
        # Other processes (Ray workers) write into the run: never answer from a stale listing
        # cache (s3fs keeps one per filesystem instance).
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        prefix = self.root.rstrip("/") + "/"
        found = [p for p in self.fs.find(base) if p.endswith(suffix)]
        return sorted(p[len(prefix):] if p.startswith(prefix) else p for p in found
                      if "/." not in p)

    def put_dir(self, local_dir: str, relpath: str) -> None:
        """Copy a local folder (e.g. a ``save_pretrained`` output) into the run at ``relpath``.

        Files are copied one by one with atomic writes; write a marker after it to make the folder
        count as complete.
        """
        for folder, _, names in os.walk(local_dir):
            for name in sorted(names):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, local_dir).replace(os.sep, "/")
                with open(path, "rb") as handle:
                    self.write_bytes(f"{relpath}/{relative}", handle.read())

    def local_dir(self, relpath: str) -> str:
        """A local folder holding ``relpath``: the folder itself for a local run, else a copy
        downloaded once into a temporary cache (for ``from_pretrained``)."""
        if is_local(self.fs):
            return self.path(relpath)
        key = hashlib.sha1(self.uri(relpath).encode()).hexdigest()[:16]
        target = os.path.join(tempfile.gettempdir(), "raydistill-cache", key)
        if not os.path.isdir(target):
            staging = f"{target}.tmp-{uuid.uuid4().hex}"
            self.fs.get(self.path(relpath) + "/", staging + "/", recursive=True)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.rename(staging, target)
            except OSError:  # another process finished the same download first
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def lease(self, ttl_seconds: float | None = None,
              renew_seconds: float | None = None) -> "RunLease":
        """The lease of this run (not taken yet): ``with run.lease(): ...`` holds it."""
        return RunLease(self, ttl_seconds or LEASE_TTL_SECONDS,
                        renew_seconds or LEASE_RENEW_SECONDS)

    # -- stage markers -------------------------------------------------------------------------

    def is_done(self, stage: str) -> bool:
        """Whether ``stage`` finished in an earlier run."""
        return self.exists(f"_stages/{stage}.json")

    def mark_done(self, stage: str, summary: dict | None = None,
                  settings: dict | None = None) -> None:
        """Record that ``stage`` finished, with the ``settings`` (its config section) it ran
        with; written after every output of the stage."""
        self.write_json(f"_stages/{stage}.json",
                        {"stage": stage, "finished_at": time.time(), "summary": summary or {},
                         "settings": settings or {}})

    def is_done_with(self, stage: str, settings: dict) -> bool:
        """Whether ``stage`` finished with exactly these settings (additive stages rerun for
        new ones)."""
        if not self.is_done(stage):
            return False
        return self.read_json(f"_stages/{stage}.json").get("settings") == settings

    def stage_summary(self, stage: str) -> dict:
        """The summary saved with a finished stage."""
        return self.read_json(f"_stages/{stage}.json")["summary"]

    # -- config --------------------------------------------------------------------------------

    def save_config(self, config: RunConfig) -> None:
        """Write ``config.yaml``; refuse changes that would mix outputs of two configs.

        A section (``ingest``, ``decode``, …) may change only while its stage is unfinished;
        a top-level field (``seed``) only while no stage has finished. Raises
        :class:`ConfigError` naming the fields that may not change.
        """
        if self.exists("config.yaml"):
            saved = to_dict(self.load_config())
            # The same run may be reached by another path (relative, absolute, mounted).
            changed = [name for name in _changed_fields(saved, to_dict(config))
                       if name != "run_dir"]
            frozen = [name for name in changed if self._is_frozen(name)]
            if frozen:
                raise ConfigError(
                    f"{frozen[0]}: {self.url} already holds finished work made with a different "
                    f"value (changed: {', '.join(frozen)}); use a new run directory")
            if not changed:
                return
        self.write_bytes("config.yaml", dump_yaml(config).encode())

    def _is_frozen(self, field_name: str) -> bool:
        section = field_name.split(".")[0]
        if section in ADDITIVE_STAGES:
            return False
        if "." in field_name:
            return self.is_done(section)
        return bool(self.list("_stages", ".json"))

    def load_config(self) -> RunConfig:
        """The run's saved config."""
        if not self.exists("config.yaml"):
            raise ConfigError(f"run_dir: {self.url} has no config.yaml; run `raydistill ingest` "
                              "first")
        return load_yaml(self.read_bytes("config.yaml").decode())


# -- the lease ---------------------------------------------------------------------------------

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
        self._file = (_LocalLeaseFile(path) if is_local(run.fs)
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
                print(f"run_dir: {self.run.url}: took over {whose} ({_describe(record)})",
                      file=sys.stderr, flush=True)
                return
        raise RunInUse(f"run_dir: could not take the lease {self.uri}: other jobs keep "
                       "changing it")

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
            print(f"run_dir: could not release the lease {self.uri} ({error}); it expires "
                  f"in {self.ttl_seconds:.0f} s", file=sys.stderr, flush=True)

    def _keep_renewed(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            try:
                if not self.renew():
                    print(self._lost, file=sys.stderr, flush=True)
                    return
            except Exception as error:  # storage trouble: the next turn retries, within the TTL
                print(f"run_dir: could not renew the lease {self.uri} ({error})",
                      file=sys.stderr, flush=True)

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


def _parse_lease(data: bytes) -> dict:
    try:
        record = json.loads(data)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


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


def _changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two nested dicts."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed
