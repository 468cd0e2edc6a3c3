"""Storage faults: transient S3 errors are retried, and a run directory serves one job at a time.

S3 faults come from :class:`faulty_s3.FaultyS3`, a proxy in front of the session's moto server
that answers a share of the requests with ``503 SlowDown`` / ``500 InternalError``.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pytest
import s3fs

from faulty_s3 import FaultyS3
from raydistill.config import RunConfig, dump_yaml, from_dict
from raydistill.pipeline import stages
from raydistill.pipeline.run import run_command, run_stages
from raydistill.pipeline.shards import shard_files
from raydistill.lease import LEASE_FILE, RunInUse
from raydistill.runs import RunDir
from raydistill.video.clips import clips_from_table

TINY_TOY = {"num_classes": 2, "train_per_class": 2, "test_per_class": 1, "num_frames": 8,
            "size": 32}


def toy_config(run_dir: str) -> RunConfig:
    return from_dict(RunConfig, {"run_dir": run_dir, "ingest": {"dataset": "toy", "toy": TINY_TOY},
                                 "decode": {"num_frames": 8, "size": 32, "shard_size": 2}})


@pytest.fixture
def faulty_s3(s3_endpoint, monkeypatch):
    """Point this process's S3 clients at a proxy in front of moto; yields a function that
    starts it with the given fault settings."""
    proxies = []

    def start(**faults) -> FaultyS3:
        proxy = FaultyS3(s3_endpoint, **faults).start()
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        # s3fs caches filesystems by their arguments, not by the endpoint the environment names.
        s3fs.S3FileSystem.clear_instance_cache()
        return proxy

    yield start
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    s3fs.S3FileSystem.clear_instance_cache()
    for proxy in proxies:
        proxy.stop()


def direct_fs(s3_endpoint) -> s3fs.S3FileSystem:
    """A filesystem that talks to moto itself, bypassing the proxy."""
    return s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)


# -- transient errors ----------------------------------------------------------------------------

def test_run_dir_io_survives_30_percent_injected_5xx(s3_bucket, s3_endpoint, faulty_s3):
    proxy = faulty_s3(rate=0.3, seed=7)
    run = RunDir(f"{s3_bucket}/runs/flaky")
    table = pa.table({"video_id": [f"v{i}" for i in range(50)], "label": list(range(50))})
    blobs = {f"blobs/{i:02d}.bin": os.urandom(1000 + i) for i in range(6)}
    run.write_table("manifest.parquet", table)
    run.write_json("summary.json", {"videos": 50})
    for relpath, data in blobs.items():
        run.write_bytes(relpath, data)
    run.mark_done("ingest", {"videos": 50})
    with run.lease():
        run.write_json("inside-lease.json", [1, 2, 3])

    assert run.read_table("manifest.parquet").equals(table)
    assert run.read_json("summary.json") == {"videos": 50}
    assert {relpath: run.read_bytes(relpath) for relpath in blobs} == blobs
    assert run.list("blobs", ".bin") == sorted(blobs)
    assert run.is_done("ingest") and run.stage_summary("ingest") == {"videos": 50}
    assert run.exists("inside-lease.json") and not run.exists(LEASE_FILE)
    # What reached the server is exact too (read past the proxy).
    moto = direct_fs(s3_endpoint)
    assert moto.cat_file(f"{run.root}/blobs/05.bin") == blobs["blobs/05.bin"]
    assert proxy.injected >= 10 and set(proxy.by_code) == {"SlowDown", "InternalError"}
    print(f"\n{proxy.requests} requests, {proxy.injected} faults injected {dict(proxy.by_code)}")


def test_a_burst_of_errors_longer_than_botocores_default_is_survived(s3_bucket, faulty_s3):
    RunDir(f"{s3_bucket}/runs/burst").write_bytes("data.bin", b"payload")
    # botocore's default (legacy mode, 5 attempts) fails here; s3fs does not retry InternalError.
    proxy = faulty_s3(fail_requests={1, 2, 3, 4, 5}, errors=("InternalError",))
    assert RunDir(f"{s3_bucket}/runs/burst").read_bytes("data.bin") == b"payload"
    assert proxy.injected == 5


def test_a_lease_write_that_succeeded_behind_an_error_still_takes_the_lease(s3_bucket, s3_endpoint,
                                                                           faulty_s3):
    # The conditional PUT creating the lease reaches S3, its answer is replaced by a 500; the
    # retry then finds the object present (412): the lease must see that the object is its own.
    proxy = faulty_s3(methods={"PUT"}, rate=1.0, limit=1, errors=("InternalError",),
                      fail_after_forwarding=True)
    run = RunDir(f"{s3_bucket}/runs/ambiguous")
    lease = run.lease()
    lease.acquire()
    assert run.read_json(LEASE_FILE)["token"] == lease.token
    # Likewise the conditional DELETE releasing it (its retry finds nothing to delete).
    proxy.methods, proxy.limit = {"DELETE"}, 2
    lease.release()
    assert not direct_fs(s3_endpoint).exists(run.path(LEASE_FILE))
    assert proxy.by_method == {"PUT": 1, "DELETE": 1}


@pytest.mark.slow
def test_ingest_and_decode_on_a_faulty_s3_match_a_clean_run(s3_bucket, s3_endpoint, ray_cluster,
                                                           tmp_path):
    # The run's Ray workers open S3 through AWS_ENDPOINT_URL, which the session's Ray fixed at
    # start: the faulty run is a job of its own, with its own Ray, whose environment names the
    # proxy (as a job submitted to a cluster gets its S3 settings).
    config_path = tmp_path / "faulty.yaml"
    config_path.write_text(dump_yaml(toy_config(f"{s3_bucket}/runs/faulty")))
    with FaultyS3(s3_endpoint, rate=0.3, seed=3) as proxy:
        job = start_in_own_ray(config_path, ["ingest", "decode"], tmp_path / "job.log",
                               AWS_ENDPOINT_URL=proxy.endpoint)
        # Meanwhile, the same run without faults, in the session's Ray.
        clean = run_stages(toy_config(f"{s3_bucket}/runs/clean"), ["ingest", "decode"])
        job.wait()
    faulty = RunDir(f"{s3_bucket}/runs/faulty")

    assert manifest_rows(faulty) == manifest_rows(clean) and len(manifest_rows(clean)) == 6
    assert faulty.read_table("rejects.parquet").num_rows == 0
    assert faulty.list("clips") == clean.list("clips")
    assert len(shard_files(clean, "clips")) == 3
    for shard in shard_files(clean, "clips"):
        assert np.array_equal(clips_from_table(faulty.read_table(shard)),
                              clips_from_table(clean.read_table(shard)))
    assert faulty.is_done("decode") and not faulty.exists(LEASE_FILE)
    assert proxy.injected >= 20
    print(f"\n{proxy.requests} requests, {proxy.injected} faults injected {dict(proxy.by_code)}")


class start_in_own_ray:
    """Run ``stages`` of the config at ``config_path`` in a new process with its own local Ray,
    ``env`` added to its environment and its output in ``log_path``; :meth:`wait` for it."""

    def __init__(self, config_path, stages: list[str], log_path, **env):
        self.temp_dir = tempfile.mkdtemp(prefix="rdfault", dir="/tmp")
        self.log_path = log_path
        driver = (
            "import sys, ray\n"
            "from raydistill.config import load_yaml\n"
            "from raydistill.pipeline.run import run_stages\n"
            "ray.init(address='local', num_cpus=2, object_store_memory=300_000_000,\n"
            f"         include_dashboard=False, _temp_dir={self.temp_dir!r}, log_to_driver=False)\n"
            "run_stages(load_yaml(open(sys.argv[1]).read()), sys.argv[2].split(','))\n")
        environment = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
        environment.update(env, RAY_TMPDIR=self.temp_dir)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", driver, str(config_path), ",".join(stages)],
                env=environment, stdout=log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 400) -> None:
        """Wait for the job; fail the test with its output's tail if it failed."""
        try:
            code = self.process.wait(timeout)
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        assert code == 0, open(self.log_path).read()[-3000:]


def manifest_rows(run: RunDir) -> list[dict]:
    """The manifest's rows, with paths relative to the run (two runs are in two folders)."""
    rows = run.read_manifest("manifest.parquet").to_pylist()
    for row in rows:
        row["path"] = row["path"].removeprefix(run.url + "/")
    return sorted(rows, key=lambda row: row["video_id"])


# -- one job per run directory -------------------------------------------------------------------

def test_a_second_job_on_a_leased_run_is_refused_and_writes_nothing(tmp_path, capsys,
                                                                   ray_cluster):
    run = RunDir(str(tmp_path / "run"))
    holder = run.lease()
    holder.acquire()
    with pytest.raises(RunInUse, match=rf"^run_dir: {run.url} is in use by another job \(pid "):
        run_stages(toy_config(run.url), ["ingest"])
    code, refused = run_command("raydistill", lambda: (toy_config(run.url), ["ingest"]))
    error = capsys.readouterr().err
    assert code == 2 and refused is None
    assert error.startswith(f"raydistill: error: run_dir: {run.url} is in use by another job")
    assert error.count("\n") == 1 and f"delete {run.uri(LEASE_FILE)}" in error
    assert sorted(os.listdir(run.root)) == [LEASE_FILE]
    assert run.read_json(LEASE_FILE)["token"] == holder.token
    holder.release()


def test_an_expired_lease_is_taken_over_and_released_after_the_run(tmp_path, capsys, ray_cluster):
    run = RunDir(str(tmp_path / "run"))
    run.write_json(LEASE_FILE, {"token": "dead-job", "host": "node-3", "pid": 99,
                                "started_at": 0.0, "renewed_at": 1.0, "ttl_seconds": 300.0})
    run_stages(toy_config(run.url), ["ingest"])
    assert "took over the expired lease" in capsys.readouterr().err
    assert run.is_done("ingest") and not run.exists(LEASE_FILE)


def test_the_lease_is_released_when_a_stage_fails(s3_bucket, ray_cluster, monkeypatch):
    def failing_ingest(run, config):
        assert run.read_json(LEASE_FILE)["pid"] == os.getpid()  # held while the stage runs
        raise RuntimeError("disk on fire")

    failing = dataclasses.replace(stages.STAGES[0], run=failing_ingest)
    monkeypatch.setattr(stages, "STAGES", (failing,) + stages.STAGES[1:])
    run = RunDir(f"{s3_bucket}/runs/failing")
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_stages(toy_config(run.url), ["ingest"])
    assert not run.exists(LEASE_FILE) and run.exists("config.yaml")
