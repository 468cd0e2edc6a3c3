"""Run directory: atomic writes, tables, stage markers, config guard and lease, on local disk and
S3."""

import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
import uuid
from unittest import mock

import pyarrow as pa
import pytest

from raydistill.config import ConfigError, RunConfig, to_dict, with_overrides
from raydistill.lease import LEASE_FILE, RunInUse, _process_space
from raydistill.runs import RunDir, storage_options


def test_write_leaves_no_temporary_file_and_reads_back(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.write_json("a/b.json", {"x": 1})
    run.write_table("t.parquet", pa.table({"v": [1, 2, 3]}))
    assert run.read_json("a/b.json") == {"x": 1}
    assert run.read_table("t.parquet").column("v").to_pylist() == [1, 2, 3]
    names = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    assert names == ["a", "b.json", "t.parquet"]


def test_stage_marker_records_summary(tmp_path):
    run = RunDir(str(tmp_path))
    assert not run.is_done("ingest")
    run.mark_done("ingest", {"videos": 3})
    assert run.is_done("ingest")
    assert run.stage_summary("ingest") == {"videos": 3}


def test_config_of_an_unfinished_stage_may_change(tmp_path):
    run = RunDir(str(tmp_path))
    config = RunConfig(run_dir=str(tmp_path))
    run.save_config(config)
    run.mark_done("ingest")
    changed = with_overrides(config, {"decode": {"size": 64}})
    run.save_config(changed)
    assert run.load_config().decode.size == 64


def test_placement_fields_of_a_finished_stage_may_change_and_the_rest_may_not(tmp_path):
    run = RunDir(str(tmp_path))
    config = RunConfig(run_dir=str(tmp_path))
    run.save_config(config)
    for stage in ("ingest", "decode", "latents", "finetune", "generate"):
        run.mark_done(stage)
    moved = with_overrides(config, {"latents": {"vae_cpus": 2, "num_actors": 4},
                                    "generate": {"cpus_per_actor": 2, "gpus_per_actor": 1},
                                    "finetune": {"cpus_per_worker": 8}})
    run.save_config(moved)
    assert run.load_config().generate.cpus_per_actor == 2
    with pytest.raises(ConfigError, match=r"^generate\.steps:"):
        run.save_config(with_overrides(moved, {"generate": {"steps": 10}}))


def test_an_additive_stage_finished_before_a_new_field_existed_stays_finished(tmp_path):
    # embed.score_model came later (default None: the old behaviour): a run embedded before it
    # must not embed again, while setting the new field is new work.
    run = RunDir(str(tmp_path))
    config = RunConfig(run_dir=str(tmp_path))
    old_settings = {key: value for key, value in to_dict(config.embed).items()
                    if key != "score_model"}
    run.mark_done("embed", settings=old_settings)
    assert run.is_done_with("embed", to_dict(config.embed))
    scored = with_overrides(config, {"embed": {"model": "/m", "score_model": "/s"}})
    assert not run.is_done_with("embed", to_dict(scored.embed))
    assert not run.is_done_with("embed", {**to_dict(config.embed), "features": "mean"})


def test_config_of_a_finished_stage_is_refused_naming_the_field(tmp_path):
    run = RunDir(str(tmp_path))
    config = RunConfig(run_dir=str(tmp_path))
    run.save_config(config)
    run.mark_done("ingest")
    with pytest.raises(ConfigError, match=r"^ingest\.split:"):
        run.save_config(with_overrides(config, {"ingest": {"split": 2}}))
    with pytest.raises(ConfigError, match=r"^seed:"):
        run.save_config(with_overrides(config, {"seed": 3}))
    assert run.load_config() == config


def test_same_run_reached_by_another_path_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    RunDir("run").save_config(RunConfig(run_dir="run"))
    RunDir(str(tmp_path / "run")).mark_done("ingest")
    RunDir(str(tmp_path / "run")).save_config(RunConfig(run_dir=str(tmp_path / "run")))


def test_loading_a_run_without_config_names_the_run(tmp_path):
    with pytest.raises(ConfigError, match="has no config.yaml"):
        RunDir(str(tmp_path)).load_config()


def test_s3_round_trip_of_tables_json_and_markers(s3_bucket):
    run = RunDir(f"{s3_bucket}/runs/one")
    run.write_table("manifest.parquet", pa.table({"video_id": ["a", "b"]}))
    run.mark_done("ingest", {"videos": 2})
    again = RunDir(f"{s3_bucket}/runs/one")
    assert again.read_table("manifest.parquet").column("video_id").to_pylist() == ["a", "b"]
    assert again.is_done("ingest") and again.stage_summary("ingest") == {"videos": 2}
    assert again.list("", ".parquet") == ["manifest.parquet"]
    assert again.uri("manifest.parquet") == f"{s3_bucket}/runs/one/manifest.parquet"


def test_s3_requests_retry_in_botocores_standard_mode_also_in_unpickled_filesystems(
        s3_bucket, monkeypatch):
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    assert storage_options(str(s3_bucket)) == {
        "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 10}}}
    assert storage_options("/tmp/run") == {}
    run = RunDir(f"{s3_bucket}/runs/retrying")
    run.write_json("x.json", 1)  # connects the client
    assert run.fs.s3.meta.config.retries == {"mode": "standard", "total_max_attempts": 10}
    # Ray Train receives the run's filesystem pickled.
    assert pickle.loads(pickle.dumps(run.fs)).config_kwargs == run.fs.config_kwargs
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    assert storage_options(str(s3_bucket))["config_kwargs"]["retries"] == {
        "mode": "adaptive", "total_max_attempts": 3}


def test_a_relative_local_run_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunDir("runs/quick/")
    assert run.url == str(tmp_path / "runs" / "quick") == run.root
    assert RunDir("s3://bucket/runs/quick/").url == "s3://bucket/runs/quick"


# -- the lease -----------------------------------------------------------------------------------

@pytest.fixture(params=["local", "s3"])
def run_url(request, tmp_path):
    """A run directory on local disk, then on the moto S3 server."""
    if request.param == "local":
        return str(tmp_path / "run")
    # Parametrised tests share a bucket (named after the test): each gets its own run.
    return f"{request.getfixturevalue('s3_bucket')}/runs/{uuid.uuid4().hex[:8]}"


def write_lease(run, **fields):
    """A lease file as another job (on another host) would have left it."""
    record = {"token": "other-job", "host": "node-7", "pid": 4242, "process_start": 99,
              "process_space": "another-boot/pid:[1]", "command": "quickstart.py",
              "started_at": time.time() - 60, "renewed_at": time.time() - 5,
              "ttl_seconds": 300.0, **fields}
    run.write_json(LEASE_FILE, record)


def test_a_held_lease_refuses_a_second_job_naming_the_holder(run_url):
    run = RunDir(run_url)
    first = run.lease()
    first.acquire()
    with pytest.raises(RunInUse) as refused:
        run.lease().acquire()
    message = str(refused.value)
    assert message.startswith(f"run_dir: {run.url} is in use by another job (pid {os.getpid()} on")
    assert f"delete {run.uri(LEASE_FILE)}" in message and "\n" not in message
    first.release()
    assert not run.exists(LEASE_FILE)
    second = run.lease()
    second.acquire()
    assert run.read_json(LEASE_FILE)["token"] == second.token


def test_another_hosts_live_lease_is_refused_and_left_alone(run_url):
    run = RunDir(run_url)
    write_lease(run)
    with pytest.raises(RunInUse, match=r"pid 4242 on node-7, `quickstart.py`, started .* "
                                       r"renewed \d+ s ago"):
        run.lease().acquire()
    assert run.read_json(LEASE_FILE)["token"] == "other-job"


def test_an_expired_lease_is_taken_over_with_a_warning(run_url, capsys):
    run = RunDir(run_url)
    write_lease(run, renewed_at=time.time() - 301)
    lease = run.lease()
    lease.acquire()
    assert run.read_json(LEASE_FILE)["token"] == lease.token
    assert capsys.readouterr().err.startswith(
        f"run_dir: {run.url}: took over the expired lease (pid 4242 on node-7")


@pytest.mark.parametrize("reaped", [True, False], ids=["exited", "zombie"])
def test_the_fresh_lease_of_a_killed_job_on_this_machine_is_taken_over_at_once(run_url, capsys,
                                                                                 reaped):
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with mock.patch("os.getpid", return_value=job.pid):  # the lease the job would write
            RunDir(run_url).lease().acquire()
    finally:
        job.kill()
        if reaped:
            job.wait()
        else:  # wait until it has exited, but leave it unreaped: a zombie
            os.waitid(os.P_PID, job.pid, os.WEXITED | os.WNOWAIT)
    run = RunDir(run_url)
    lease = run.lease()
    lease.acquire()
    assert run.read_json(LEASE_FILE)["token"] == lease.token
    assert capsys.readouterr().err.startswith(
        f"run_dir: {run.url}: took over the lease of a job that is gone (pid {job.pid} on")
    job.wait()


def test_a_lease_whose_pid_now_names_another_process_is_taken_over(run_url):
    run = RunDir(run_url)
    write_lease(run, pid=os.getpid(), process_start=1, process_space=_process_space())
    lease = run.lease()
    lease.acquire()
    assert run.read_json(LEASE_FILE)["token"] == lease.token


def test_an_unreadable_lease_file_is_taken_over(run_url):
    run = RunDir(run_url)
    run.write_bytes(LEASE_FILE, b"{not json")
    lease = run.lease()
    lease.acquire()
    assert run.read_json(LEASE_FILE)["token"] == lease.token


def test_jobs_racing_for_an_expired_lease_leave_exactly_one_holder(run_url):
    run = RunDir(run_url)
    write_lease(run, renewed_at=time.time() - 400)
    leases = [RunDir(run_url).lease() for _ in range(6)]
    start = threading.Barrier(len(leases))
    outcomes = {}

    def contend(lease):
        start.wait()
        try:
            lease.acquire()
            outcomes[lease.token] = "holder"
        except RunInUse:
            outcomes[lease.token] = "refused"

    threads = [threading.Thread(target=contend, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holders = [token for token, outcome in outcomes.items() if outcome == "holder"]
    assert len(outcomes) == 6 and len(holders) == 1
    assert run.read_json(LEASE_FILE)["token"] == holders[0]


def test_the_renewer_keeps_a_short_lease_alive_and_release_stops_it(run_url):
    run = RunDir(run_url)
    with run.lease(ttl_seconds=1.0, renew_seconds=0.2) as lease:
        taken = run.read_json(LEASE_FILE)
        time.sleep(2.0)  # twice the TTL: only renewals keep it alive
        renewed = run.read_json(LEASE_FILE)
        assert renewed["token"] == lease.token and renewed["renewed_at"] > taken["renewed_at"] + 1
        with pytest.raises(RunInUse):
            run.lease().acquire()
        lease.check()
    assert not run.exists(LEASE_FILE)


def test_a_lease_taken_over_is_lost_and_its_release_leaves_the_new_holder(run_url):
    run = RunDir(run_url)
    stalled = run.lease(ttl_seconds=0.5)
    stalled.acquire()  # no renewer: as if the job hung for longer than the TTL
    time.sleep(0.7)
    successor = run.lease()
    successor.acquire()
    assert not stalled.renew()
    with pytest.raises(RunInUse, match=rf"^run_dir: lost the lease of {run.url}: taken over by "
                                       rf"pid {os.getpid()}"):
        stalled.check()
    stalled.release()
    assert run.read_json(LEASE_FILE)["token"] == successor.token


def test_a_busy_run_is_refused_before_ray_starts(tmp_path, monkeypatch):
    from raydistill.config import from_dict
    from raydistill.pipeline import run as run_module

    started = []  # a spy: the refusal must come before Ray's start-up, whose cost it saves
    monkeypatch.setattr(run_module, "init_ray", lambda *args, **kwargs: started.append(args))
    run = RunDir(str(tmp_path / "run"))
    holder = run.lease()
    holder.acquire()
    with pytest.raises(RunInUse, match="is in use by another job"):
        run_module.run_stages(from_dict(RunConfig, {"run_dir": run.url}), ["ingest"])
    assert started == []
    holder.release()


def test_a_copied_runs_config_names_the_copy(tmp_path):
    original = RunDir(str(tmp_path / "a"))
    original.save_config(RunConfig(run_dir=str(tmp_path / "a")))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert RunDir(str(tmp_path / "b")).load_config().run_dir == str(tmp_path / "b")


def test_paths_inside_the_run_are_stored_relative_and_resolved_where_the_run_is(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    inside = str(tmp_path / "run" / "source" / "toy" / "a.mp4")
    assert run.relative(inside) == "source/toy/a.mp4"
    assert run.relative(str(tmp_path / "runner" / "a.mp4")) == str(tmp_path / "runner" / "a.mp4")
    assert run.relative("s3://bucket/data/a.mp4") == "s3://bucket/data/a.mp4"
    moved = RunDir(str(tmp_path / "moved"))
    assert moved.resolve("source/toy/a.mp4") == str(tmp_path / "moved" / "source/toy/a.mp4")
    assert moved.resolve("/data/a.mp4") == "/data/a.mp4"
    assert moved.resolve("s3://bucket/a.mp4") == "s3://bucket/a.mp4"
    moved.write_table("manifest.parquet", pa.table({"video_id": ["a", "b"],
                                                   "path": ["source/a.mp4", "/data/b.mp4"],
                                                   "label": [0, 1]}))
    table = moved.read_manifest("manifest.parquet")
    assert table.column("path").to_pylist() == [moved.uri("source/a.mp4"), "/data/b.mp4"]
    assert table.column("label").to_pylist() == [0, 1]


def test_a_run_on_s3_stores_its_own_paths_relative(s3_bucket):
    run = RunDir(f"{s3_bucket}/runs/r")
    assert run.relative(f"{s3_bucket}/runs/r/synthetic/videos/a/x.mp4") == \
        "synthetic/videos/a/x.mp4"
    assert run.relative(f"{s3_bucket}/runs/rr/x.mp4") == f"{s3_bucket}/runs/rr/x.mp4"
    assert run.resolve("synthetic/x.mp4") == f"{s3_bucket}/runs/r/synthetic/x.mp4"
