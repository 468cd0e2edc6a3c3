"""Bad configuration, through the ``raydistill`` command: one line on stderr naming the field,
a non-zero exit code (2), and nothing written (no run directory, or an existing one unchanged).

Resources are judged as ``--dry-run`` judges them: a worker that no node (nor node type of a
known autoscaler) can ever hold stops the run before any work; a worker that nodes joining could
hold (a GPU node an autoscaler starts) is waited for when its stage starts, with a message, for
``--resource-timeout`` seconds (``$RAYDISTILL_RESOURCE_TIMEOUT_S``), then the run fails naming
the field instead of hanging.
"""

from __future__ import annotations

import time

import pytest

from raydistill.cli import main
from raydistill.config import RunConfig, from_dict
from raydistill.pipeline import resources
from raydistill.pipeline.run import RESOURCE_TIMEOUT_ENV
from raydistill.pipeline.stages import named
from raydistill.runs import RunDir
from raydistill.schema import MANIFEST_SCHEMA, table_from_rows


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, err: str, field: str) -> None:
    """Exit code 2 and exactly one stderr line, ``raydistill: error: {field}...``."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"raydistill: error: {field}:"), lines[0]


def files_under(path) -> dict[str, bytes]:
    """{relative path: bytes} of every file under ``path`` (empty if it does not exist)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("yaml_text, field", [
    ("sead: 3\n", "sead"),                                           # unknown fields
    ("decode: {frames: 8}\n", "decode.frames"),
    ("ingest: {toy: {classes: 4}}\n", "ingest.toy.classes"),
    ("evaluate: {training: {epohcs: 3}}\n", "evaluate.training"),
    ("evaluate: {classifier_options: {widht: 3}}\n", "evaluate.classifier_options"),
    ("generate: {per_class: ten}\n", "generate.per_class"),          # wrong types
    ("select: {vpc: 5}\n", "select.vpc"),
    ("select: {vpc: [1, five]}\n", "select.vpc[1]"),
    ("decode: [16, 112]\n", "decode"),
    ("ingest: {verify_decode: maybe}\n", "ingest.verify_decode"),
    ("decode: {num_cpus: one}\n", "decode.num_cpus"),
    ("run_dir: 5\n", "run_dir"),
    ("- just\n- a list\n", "config"),
    ("decode: {size: [\n", "--config"),                              # not YAML: one line too
    ("select: {vpc: [1, 20]}\ngenerate: {per_class: 10}\n", "select.vpc"),  # VPC > N_c
    ("generate: {per_class: 0}\n", "generate.per_class"),            # N_c = 0
    ("select: {methods: [random, kmeans]}\n", "select.methods"),     # methods that do not exist
    ("evaluate: {methods: [kmeans]}\n", "evaluate.methods"),
    ("select: {params: {kmeans: {k: 3}}}\n", "select.params.kmeans"),
    ("select: {params: {tac_dt: {n_component: 4}}}\n", "select.params.tac_dt.n_component"),
    ("evaluate: {classifier: resnet}\n", "evaluate.classifier"),
    ("ingest: {dataset: imagenet}\n", "ingest.dataset"),
    ("ingest: {dataset: ucf101, root: '{tmp}/no-such-dir'}\n", "ingest.root"),  # no such path
    ("ingest: {dataset: ucf101}\n", "ingest.root"),
    ("generate: {gpus_per_actor: -1}\n", "generate.gpus_per_actor"),
    ("finetune: {prediction_type: x0}\n", "finetune.prediction_type"),
    ("seed: -5\n", "seed"),                                          # out of range
    ("generate: {per_class: 1000000000000}\n", "generate.per_class"),
    ("generate: {guidance: .inf}\n", "generate.guidance"),           # not finite
    ("finetune: {learning_rate: .nan}\n", "finetune.learning_rate"),
    ("evaluate: {training: {lr: .nan}}\n", "evaluate.training"),
    ("seed: 1\nseed: 2\n", "--config"),                              # a key twice
    ("? [a, b]\n: 1\n", "--config"),                                  # a key that is a list
])
def test_a_bad_config_file_exits_2_naming_the_field_and_writes_nothing(tmp_path, capsys,
                                                                      yaml_text, field):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml_text.replace("{tmp}", str(tmp_path)))
    code, _, err = run_cli(capsys, "run", "--config", str(config_file), "--run",
                           str(tmp_path / "run"))
    assert_refused(code, err, field)
    assert not (tmp_path / "run").exists()


def test_a_later_stages_bad_setting_stops_a_run_of_earlier_stages(tmp_path, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("evaluate: {training: {lr: .nan}}\n")
    code, _, err = run_cli(capsys, "run", "--config", str(config_file), "--run",
                           str(tmp_path / "run"), "--stages", "ingest")
    assert_refused(code, err, "evaluate.training")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, field", [
    (["run", "--config", "{tmp}/missing.yaml"], "--config"),
    (["run", "--config", "{tmp}"], "--config"),                     # a folder, not a file
    (["decode", "--run", "{tmp}/run"], "run_dir"),                  # no such run
    (["ingest", "--dataset", "hmdb51", "--root", "{tmp}/nowhere", "--out", "{tmp}/run"],
     "ingest.root"),
    (["ingest", "--dataset", "toy", "--out", "{tmp}/run", "--resource-timeout", "-5"],
     "--resource-timeout"),
])
def test_a_bad_command_line_exits_2_naming_the_flag_or_field(tmp_path, capsys, argv, field):
    code, _, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert_refused(code, err, field)
    assert not (tmp_path / "run").exists()


def test_a_bad_resource_timeout_variable_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(RESOURCE_TIMEOUT_ENV, "soon")
    code, _, err = run_cli(capsys, "ingest", "--dataset", "toy", "--out", str(tmp_path / "run"))
    assert_refused(code, err, f"${RESOURCE_TIMEOUT_ENV}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where, field", [("run", "run_dir"), ("root", "ingest.root")])
def test_a_bucket_that_does_not_exist_is_named_and_nothing_is_created(tmp_path, capsys,
                                                                      monkeypatch, s3_endpoint,
                                                                      where, field):
    import logging

    import s3fs

    # moto's HTTP server logs each request (404s here) on this process's stderr: mute it.
    monkeypatch.setattr(logging.getLogger("werkzeug"), "disabled", True)
    bucket = "s3://no-such-bucket-rd"
    run_dir = f"{bucket}/runs/k400" if where == "run" else str(tmp_path / "run")
    root = f"{bucket}/kinetics400" if where == "root" else str(tmp_path)
    code, _, err = run_cli(capsys, "ingest", "--dataset", "kinetics400", "--root", root,
                           "--out", run_dir)
    assert_refused(code, err, field)
    assert "no-such-bucket-rd" in err
    assert not s3fs.S3FileSystem().exists(bucket[5:]) and not (tmp_path / "run").exists()


def real_pool_run(tmp_path, train_per_class: int) -> RunDir:
    """A run whose ingest, decode and embed stages are done (coreset selection from the real
    pool), with a manifest of two classes of ``train_per_class`` training videos each."""
    run = RunDir(str(tmp_path / "run"))
    run.save_config(from_dict(RunConfig, {
        "run_dir": run.url, "embed": {"pools": ["real"]},
        "select": {"pool": "real", "methods": ["random"], "vpc": [1], "seeds": 1}}))
    rows = [{"video_id": f"{name}_{i}", "path": f"/data/{name}_{i}.mp4", "label": label,
             "class_name": name, "split": "train", "num_frames": 8, "fps": 8.0, "width": 32,
             "height": 32} for label, name in enumerate(["jump", "wave"])
            for i in range(train_per_class + label)]
    run.write_table("manifest.parquet", table_from_rows(rows, MANIFEST_SCHEMA))
    for stage in ("ingest", "decode", "embed"):
        run.mark_done(stage)
    return run


def test_a_vpc_larger_than_the_real_pool_is_refused_before_selecting(tmp_path, capsys):
    run = real_pool_run(tmp_path, train_per_class=3)
    before = files_under(tmp_path / "run")
    code, _, err = run_cli(capsys, "select", "--run", run.url, "--vpc", "1", "4")
    assert_refused(code, err, "select.vpc")
    assert "4 videos per class is more than the 3 training videos of class 'jump'" in err
    assert files_under(tmp_path / "run") == before  # config.yaml kept, no selection


RENAMED = "method 'csta' was renamed to 'attention_topk': it is not the CSTA model"


@pytest.mark.parametrize("yaml_text, field", [
    ("select: {methods: [random, csta]}\n", "select.methods"),
    ("evaluate: {methods: [csta]}\n", "evaluate.methods"),
    ("select: {params: {csta: {temperature: 0.2}}}\n", "select.params.csta"),
])
def test_the_old_csta_name_in_a_config_is_refused_saying_it_was_renamed_and_why(
        tmp_path, capsys, yaml_text, field):
    (tmp_path / "run.yaml").write_text(yaml_text)
    code, _, err = run_cli(capsys, "run", "--config", str(tmp_path / "run.yaml"), "--run",
                           str(tmp_path / "run"))
    assert_refused(code, err, field)
    assert RENAMED in err and "write 'attention_topk'" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["select", "evaluate"])
def test_the_old_csta_name_on_the_command_line_is_refused_the_same_way(tmp_path, capsys,
                                                                        command):
    run = RunDir(str(tmp_path / "run"))
    run.save_config(RunConfig(run_dir=run.url))
    before = files_under(tmp_path / "run")
    code, _, err = run_cli(capsys, command, "--run", run.url, "--method", "random", "csta")
    assert_refused(code, err, f"{command}.methods")
    assert RENAMED in err
    assert files_under(tmp_path / "run") == before


@pytest.mark.usefixtures("ray_cluster")
def test_a_worker_larger_than_any_node_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("decode: {num_cpus: 4}\n")
    code, _, err = run_cli(capsys, "run", "--config", str(tmp_path / "run.yaml"), "--run",
                           str(tmp_path / "run"))
    assert_refused(code, err, "decode.num_cpus")
    assert "one decode task asks 4 CPU, no node has more than 2" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("timeout_from", ["flag", "environment"])
def test_a_gpu_ask_on_a_cluster_without_gpus_waits_then_fails_naming_the_field(
        tmp_path, capsys, monkeypatch, timeout_from):
    run = RunDir(str(tmp_path / "run"))
    run.save_config(from_dict(RunConfig, {"run_dir": run.url,
                                          "latents": {"gpus_per_actor": 1}}))
    for stage in ("ingest", "decode"):
        run.mark_done(stage)
    argv = ["run", "--run", run.url, "--stages", "latents"]
    if timeout_from == "flag":
        argv += ["--resource-timeout", "0.5"]
    else:
        monkeypatch.setenv(RESOURCE_TIMEOUT_ENV, "0.5")
    started = time.monotonic()
    code, out, err = run_cli(capsys, *argv)
    assert time.monotonic() - started < 30  # waited its half second, did not hang
    assert ("latents: waiting up to 0.5 s for a node that can hold it: latents.gpus_per_actor: "
            "one VAE actor asks 1 GPU, no node has a GPU") in out
    assert_refused(code, err, "latents.gpus_per_actor")
    assert err.strip().endswith("no node that can hold it joined within 0.5 s")
    assert not run.exists("latents") and not run.is_done("latents")


def fake_cluster(monkeypatch, node_lists: list[list[dict]], **view) -> list[list[dict]]:
    """Make :mod:`plan` see the nodes of ``node_lists`` in turn (the last one stays) and a
    cluster view of ``view``; returns the list the autoscaler asks are recorded in."""
    polls = iter(node_lists)
    current = {"nodes": node_lists[0]}

    def alive_nodes():
        current["nodes"] = next(polls, current["nodes"])
        return current["nodes"]

    asks = []
    monkeypatch.setattr(resources, "alive_nodes", alive_nodes)
    monkeypatch.setattr(resources, "cluster_view", lambda: resources.Cluster(**{
        "cpus": 0, "gpus": 0, "largest_cpus": 8, "largest_gpus": 0, "autoscaler": True,
        "node_types_known": False, **view}))
    monkeypatch.setattr(resources, "ask_autoscaler",
                        lambda requests: asks.append([r.size() for r in requests]))
    monkeypatch.setattr(resources.time, "sleep", lambda seconds: None)
    return asks


def test_a_stage_waits_for_the_autoscaler_to_add_a_gpu_node_then_runs(monkeypatch, capsys):
    config = from_dict(RunConfig, {"generate": {"gpus_per_actor": 1, "num_actors": 2}})
    asks = fake_cluster(monkeypatch, [[{"CPU": 0}], [{"CPU": 0}],
                                      [{"CPU": 0}, {"CPU": 8, "GPU": 1}]])
    resources.wait_for_resources(named(["generate"])[0], config, timeout_s=600)
    out = capsys.readouterr().out
    assert ("generate: waiting up to 600 s for a node that can hold it: generate.gpus_per_actor:"
            " one Latte actor asks 1 GPU, no node has a GPU; the autoscaler must add them") in out
    assert "generate: the cluster can hold it now" in out
    assert asks == [["1 CPU + 1 GPU"], []]  # asked for the node, then withdrew the ask


def test_a_gpu_ask_larger_than_every_known_node_type_fails_at_once(monkeypatch):
    config = from_dict(RunConfig, {"generate": {"gpus_per_actor": 8}})
    asks = fake_cluster(monkeypatch, [[{"CPU": 0}]], largest_gpus=4, node_types_known=True)
    with pytest.raises(resources.ResourceError, match="^generate.gpus_per_actor: one Latte actor "
                                                 "asks 8 GPU, no node has more than 4$"):
        resources.check_resources(named(["ingest", "decode", "generate"]), config)
    with pytest.raises(resources.ResourceError, match="^generate.gpus_per_actor"):
        resources.wait_for_resources(named(["generate"])[0], config, timeout_s=600)
    assert asks == []  # nothing to wait for: no node is asked for


def test_a_class_without_training_videos_stops_real_pool_selection_naming_it(tmp_path):
    import pyarrow as pa

    from raydistill.config import ConfigError
    from raydistill.pipeline.select import validate_real_pool_size

    run = RunDir(str(tmp_path / "run"))
    run.write_table("manifest.parquet", pa.table({"class_name": ["a", "a", "b", "b"],
                                                  "split": ["train"] * 4}))
    run.mark_done("ingest", {"class_names": ["a", "b", "c"]})
    config = from_dict(RunConfig, {"run_dir": run.url, "select": {"pool": "real", "vpc": [1]}})
    with pytest.raises(ConfigError, match=r"^select.vpc: 1 videos per class is more than the 0 "
                                          r"training videos of class 'c'"):
        validate_real_pool_size(run, config)


# -- storage that fails: one line naming the path and the cause (issue 18 item 8) ---------------

def test_an_out_that_is_a_file_is_refused_and_left_alone(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("someone's notes")
    code, _, err = run_cli(capsys, "ingest", "--dataset", "toy", "--out", str(taken))
    assert_refused(code, err, "run_dir")
    assert f"{taken} is a file, not a directory" in err
    assert taken.read_text() == "someone's notes"


def test_an_s3_endpoint_that_does_not_answer_is_named_in_one_line(tmp_path, capsys, monkeypatch,
                                                                  s3_endpoint):
    import socket

    import s3fs

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        code, _, err = run_cli(capsys, "ingest", "--dataset", "toy", "--out", "s3://rd-away/run")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("raydistill: error: storage: EndpointConnectionError: ")
    assert f"127.0.0.1:{closed}/rd-away/run" in lines[0]


WRITE_PAST_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a kill
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))  # the disk is "full" at 64 KiB
from raydistill.runs import RunDir
try:
    RunDir(sys.argv[1]).write_bytes("shards/big.parquet", b"x" * 1_000_000)
except OSError as error:
    print("errno", error.errno)
"""


def test_a_write_that_fails_for_space_leaves_no_temporary_behind(tmp_path):
    import errno
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", WRITE_PAST_A_FILE_SIZE_LIMIT,
                             str(tmp_path / "run")], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["errno", str(errno.EFBIG)]
    assert files_under(tmp_path / "run") == {}


def test_an_os_error_in_a_stage_is_one_line_with_the_path_and_cause(capsys):
    from raydistill.pipeline.run import run_command

    def build():
        raise OSError(28, "No space left on device", "/runs/k400/clips/shard-00003.parquet")

    code, run = run_command("raydistill", build)
    assert (code, run) == (1, None)
    assert capsys.readouterr().err == ("raydistill: error: /runs/k400/clips/shard-00003.parquet: "
                                       "No space left on device\n")


def test_a_damaged_lease_is_taken_over_and_a_directory_in_its_place_is_named(tmp_path):
    from raydistill.lease import LEASE_FILE, RunInUse

    run = RunDir(str(tmp_path / "run"))
    for damaged in ({"renewed_at": "soon", "pid": "1234", "token": 5},
                    {"renewed_at": float("nan"), "started_at": "x", "token": "t"},
                    {"renewed_at": 1e308, "token": "t"}):
        run.write_json(LEASE_FILE, damaged)
        with run.lease() as lease:  # a lease with fields it cannot mean cannot be honoured
            assert run.read_json(LEASE_FILE)["token"] == lease.token
    (tmp_path / "run" / LEASE_FILE).mkdir()
    with pytest.raises(RunInUse, match=r"\.lease\.json is a directory, not a lease file"):
        run.lease().acquire()


@pytest.mark.parametrize("where", ["task", "dataset"])
def test_a_write_failure_inside_ray_is_one_line_with_the_path(tmp_path, capsys, ray_cluster,
                                                              where):
    import ray

    from raydistill.pipeline.run import run_command

    run = RunDir(str(tmp_path / "run"))
    shard = "clips/train/shard-00003.parquet"

    # Defined here, so that Ray ships it by value (workers cannot import the test module).
    def write_past_a_size_limit(relpath: str) -> None:
        """Write 1 MB into the run under a 64 KiB file-size limit: a real failure (EFBIG)."""
        import resource
        import signal

        previous_signal = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, previous_limit[1]))
        try:
            RunDir(run.url).write_bytes(relpath, b"x" * 1_000_000)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
            signal.signal(signal.SIGXFSZ, previous_signal)

    def build():
        if where == "task":
            ray.get(ray.remote(write_past_a_size_limit).remote(shard))
        else:  # as the decode stage writes clip shards: inside a Ray Data operator
            ray.data.range(1).map_batches(
                lambda batch: write_past_a_size_limit(shard) or batch).materialize()

    assert run_command("raydistill", build) == (1, None)
    assert capsys.readouterr().err == f"raydistill: error: {run.path(shard)}: File too large\n"
    assert files_under(tmp_path / "run") == {}  # no temporary left
