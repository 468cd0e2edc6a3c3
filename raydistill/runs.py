"""The run directory: one folder (local path or ``s3://`` URL, through fsspec) per run.

Layout::

    RUN/config.yaml            the run's config, written once
    RUN/manifest.parquet       ingest: the videos that passed (video_id, path, label, ...)
    RUN/rejects.parquet        ingest: listed videos that did not, with a reason
    RUN/clips/{split}/shard-NNNNN.parquet   decode: clip cache, one shard per task
    RUN/clips/rejects.parquet  decode: rows that failed to decode
    RUN/_stages/{stage}.json   completion marker of a stage (written last)
    RUN/.lease.json            the lease of the job working in the run (:mod:`raydistill.lease`)

Every write is atomic: a reader never sees a half-written file (local files are written to a
temporary name and renamed; an S3 object appears only when its upload completes). S3 requests
that fail transiently (5xx, throttling) are retried by botocore (:func:`storage_options`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from raydistill.config import (ADDITIVE_STAGES, PLACEMENT_FIELDS, UNFROZEN_SECTIONS, ConfigError,
                               RunConfig, dump_yaml, load_yaml, to_dict)

if TYPE_CHECKING:  # the lease module imports this one
    from raydistill.lease import RunLease


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
        try:
            with fs.open(temporary, "wb") as handle:
                handle.write(data)
            fs.mv(temporary, path)
        except BaseException as error:  # a full disk, a kill: leave nothing half written behind
            if os.path.lexists(temporary):
                os.remove(temporary)
            if isinstance(error, OSError) and error.errno and not error.filename:
                raise OSError(error.errno, error.strerror, path) from error  # name the file
            raise
    else:
        # An object store makes a PUT visible only once it is complete.
        fs.pipe_file(path, data)


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    """Serialise an Arrow table as Parquet bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


MANIFEST_PATH_COLUMNS = ("path", "latent_path")
"""Manifest columns holding file paths, stored run-relative for files inside the run."""


class RunDir:
    """A run directory on any fsspec filesystem, with atomic writes and stage markers."""

    def __init__(self, url: str):
        self.fs, self.root = open_fs(url.rstrip("/"))
        # A local run is named by its absolute path: Ray workers (Ray Train's especially) run in
        # other working directories, and must find the same run from the URL they are given.
        self.url = self.root if is_local(self.fs) else url.rstrip("/")

    @property
    def on_local_disk(self) -> bool:
        """Whether the run lives on the local filesystem (not in an object store)."""
        return is_local(self.fs)

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

    def read_table(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        """Read a Parquet file (or a folder of Parquet files) of the run (only ``columns``)."""
        return pq.read_table(self.fresh_path(relpath), filesystem=self.fs, columns=columns)

    def read_manifest(self, relpath: str) -> pa.Table:
        """Read a manifest of the run (``manifest.parquet``, ``synthetic/manifest.parquet``) with
        its ``path`` and ``latent_path`` columns openable (:meth:`resolve`)."""
        table = self.read_table(relpath)
        for index, name in enumerate(table.column_names):
            if name in MANIFEST_PATH_COLUMNS:
                paths = [self.resolve(path) for path in table.column(name).to_pylist()]
                table = table.set_column(index, name, pa.array(paths, pa.string()))
        return table

    def relative(self, url: str) -> str:
        """``url`` as a run-relative path when it lies inside the run, else unchanged.
        Manifests store these, so that a run copied, moved or synced (local disk ↔ S3) still
        finds its own files (the toy dataset, the synthetic videos)."""
        local = self.on_local_disk and "://" not in url
        candidate = os.path.abspath(url) if local else url
        prefix = f"{self.url}/"
        return candidate[len(prefix):] if candidate.startswith(prefix) else url

    def resolve(self, path: str) -> str:
        """The openable path or URL of a path a manifest stores: a run-relative one lies in
        this run (:meth:`relative`); an absolute path or a URL is returned as it is."""
        if "://" in path or os.path.isabs(path):
            return path
        return self.uri(path)

    def read_schema(self, relpath: str) -> pa.Schema:
        """The Arrow schema of a Parquet file of the run (its footer only, not its data)."""
        with self.fs.open(self.fresh_path(relpath), "rb") as handle:
            return pq.read_schema(handle)

    def list(self, relpath: str, suffix: str = "") -> list[str]:
        """Sorted run-relative paths of the files under ``relpath`` ending in ``suffix``."""
        base = self.path(relpath)
        # Other processes (Ray workers) write into the run: never answer from a stale listing
        # cache (s3fs keeps one per filesystem instance).
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        prefix = self.root.rstrip("/") + "/"
        under = base.rstrip("/") + "/"
        # Hidden names (temporaries of atomic writes) are skipped below ``relpath`` only: the run
        # itself may live under a dot-folder (~/.cache/…).
        found = [p for p in self.fs.find(base) if p.endswith(suffix)
                 and not has_hidden_part(p[len(under):] if p.startswith(under) else "")]
        return sorted(p[len(prefix):] if p.startswith(prefix) else p for p in found)

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
        from raydistill.lease import LEASE_RENEW_SECONDS, LEASE_TTL_SECONDS, RunLease

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
        new ones). A field added to the section since it finished, at None (a new field's
        default keeps the old behaviour), counts as the same settings."""
        if not self.is_done(stage):
            return False
        saved = self.read_json(f"_stages/{stage}.json").get("settings")
        if not isinstance(saved, dict):
            return saved == settings
        return saved == {key: value for key, value in settings.items()
                         if key in saved or value is not None}

    def stage_summary(self, stage: str) -> dict:
        """The summary saved with a finished stage."""
        return self.read_json(f"_stages/{stage}.json")["summary"]

    # -- config --------------------------------------------------------------------------------

    def save_config(self, config: RunConfig) -> None:
        """Write ``config.yaml`` (unchanged: not rewritten); first refuse, as
        :meth:`check_unfrozen` does, changes that would mix outputs of two configs."""
        if self.exists("config.yaml"):
            if not self.check_unfrozen(config):
                return
        self.write_bytes("config.yaml", dump_yaml(config).encode())

    def check_unfrozen(self, config: RunConfig) -> list[str]:
        """The fields in which ``config`` differs from the saved ``config.yaml`` (none without
        one), after refusing a change that would mix outputs of two configs.

        The rule, in this one place: a section (``ingest``, ``decode``, …) may change only while
        its stage is unfinished, except its placement fields (``config.PLACEMENT_FIELDS``:
        CPUs, GPUs, actors), the sections of additive stages (``config.ADDITIVE_STAGES``:
        new settings add outputs) and ``tracking`` (``config.UNFROZEN_SECTIONS``); a top-level
        field (``seed``) only while no stage has finished. Raises :class:`ConfigError` naming the fields that may not change.
        """
        if not self.exists("config.yaml"):
            return []
        wanted = to_dict(config)
        # The same run may be reached by another path (relative, absolute, mounted).
        changed = [name for name in _changed_fields(to_dict(self.load_config()), wanted)
                   if name != "run_dir"]
        frozen = sorted((name for name in changed if self._is_frozen(name)),
                        key=_field_order(wanted))
        if frozen:
            section = frozen[0].split(".")[0] if "." in frozen[0] else None
            what = f"a finished {section} stage" if section else "finished work"
            also = f" (changed: {', '.join(frozen)})" if len(frozen) > 1 else ""
            raise ConfigError(f"{frozen[0]}: {self.url} already holds {what} made with a "
                              f"different value{also}; use a new run directory")
        return changed

    def _is_frozen(self, field_name: str) -> bool:
        section = field_name.split(".")[0]
        if (section in ADDITIVE_STAGES + UNFROZEN_SECTIONS
                or field_name.split(".")[-1] in PLACEMENT_FIELDS):
            return False
        if "." in field_name:
            return self.is_done(section)
        return bool(self.list("_stages", ".json"))

    def load_config(self) -> RunConfig:
        """The run's saved config, its ``run_dir`` this run's URL: a run copied or moved
        elsewhere still names the old place in its ``config.yaml``, and every stage must work
        where the config was read from."""
        if not self.exists("config.yaml"):
            raise ConfigError(f"run_dir: {self.url} has no config.yaml; run `raydistill ingest` "
                              "first")
        return dataclasses.replace(load_yaml(self.read_bytes("config.yaml").decode(),
                                             source=self.uri("config.yaml"), saved=True),
                                   run_dir=self.url)


def has_hidden_part(relative: str) -> bool:
    """Whether a slash-separated path has a component starting with a dot."""
    return any(part.startswith(".") for part in relative.split("/"))


def _field_order(config: dict):
    """A sort key putting dotted field names in the config's own order (top-level fields, then
    the sections in stage order, each in its declaration order); unknown names last."""
    def leaves(values: dict, prefix: str = "") -> list[str]:
        return [name for key, value in values.items()
                for name in ([f"{prefix}{key}"] + (leaves(value, f"{prefix}{key}.")
                                                    if isinstance(value, dict) else []))]

    order = {name: index for index, name in enumerate(leaves(config))}
    return lambda name: (order.get(name, len(order)), name)


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
