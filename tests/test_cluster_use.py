"""The pipeline as users run it on a cluster: a job submitted to a running Ray head with
``ray job submit``, and the GPU stages on a cluster whose GPU is on a worker node.

Both tests start Ray processes of their own, each with a private temp dir and free ports, and
stop only those (never ``ray stop``, which stops every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fingerprint import differences, fingerprint  # noqa: E402
from raydistill.pipeline.cluster import LOCAL_TRAIN_POLL_S, TRAIN_POLL_ENV  # noqa: E402
from small_quickstart import FLAGS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # this venv's bin: its `ray`, and the job's `python`
CLUSTER_SCRIPT = REPO / "tests" / "cluster_scripts" / "gpu_stages_on_fake_cluster.py"


@pytest.fixture
def ray_temp_dir():
    """A private Ray temp dir with a short path (Ray's socket paths under it must stay within
    107 bytes, which pytest's tmp_path is too deep for); removed afterwards."""
    folder = tempfile.mkdtemp(prefix="rdcl", dir="/tmp")
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nobody listens on now."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def ray_env(temp_dir: Path, token: str) -> dict[str, str]:
    """Environment of the Ray processes a test starts (the head, ``ray job`` commands, the
    fake-cluster script) and, through the head, of a submitted job: this venv first on PATH, a
    private Ray temp dir, token authentication with a token of its own (Ray 2.60 turns token
    auth on for a new head when ~/.ray/auth_token exists; that file is shared by every Ray of
    the user, so the test gives its cluster and its clients a token by ``RAY_AUTH_TOKEN``
    instead), no inherited ``RAY_*`` setting (``RAY_ADDRESS`` would point elsewhere)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "RAY_TMPDIR": str(temp_dir), "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": token, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
                "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                # SIGTERM stops `ray start --block` at once (Ray 2.60 drains the node for up
                # to 30 s first by default)
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                # Ray Train's worker checks as often as on a job's local Ray (speed only)
                TRAIN_POLL_ENV: LOCAL_TRAIN_POLL_S})
    return env


def wait_for_dashboard(url: str, head: subprocess.Popen, head_log: Path,
                       timeout: float = 120) -> None:
    """Wait until the dashboard at ``url`` answers HTTP (401 counts: it is up, and wants the
    token); fail early, with the head's log, if the head process exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}; log:\n"
                        f"{head_log.read_text()[-5000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"no dashboard at {url} after {timeout} s")


def job_info(url: str, job_id: str, token: str) -> dict:
    """The job's record from the dashboard's REST API (``GET /api/jobs/{id}``), with the token."""
    request = urllib.request.Request(f"{url}/api/jobs/{job_id}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def stop_process_group(process: subprocess.Popen, grace: float = 30) -> None:
    """Stop a process started in a session of its own: SIGTERM it and wait, then SIGKILL
    whatever of its process group is still alive (Ray's workers, raylet, GCS)."""
    group = process.pid  # start_new_session=True: its pid is its process group id
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(group, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_logged(command: list[str], log: Path, timeout: float, **kwargs) -> subprocess.Popen:
    """Run ``command`` in a session of its own, stdout and stderr into ``log``; on timeout kill
    its process group and fail. Returns the finished process."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, **kwargs)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process_group(process, grace=5)
            pytest.fail(f"{command[:3]} ran past {timeout} s; log:\n{log.read_text()[-5000:]}")
    return process


UNDONE_STAGES = ("select", "evaluate", "report")
"""The stages the submitted job computes again on its copy of the shared run."""


def undo_stages(run_dir: Path, stages: tuple[str, ...]) -> None:
    """Remove the markers and outputs of ``stages`` (select, evaluate, report) from a finished
    run, as if the job had stopped before them."""
    for stage in stages:
        (run_dir / "_stages" / f"{stage}.json").unlink()
    for folder in ("selection", "eval"):
        shutil.rmtree(run_dir / folder)
    (run_dir / "report" / "report.md").unlink()


@pytest.mark.slow
def test_quickstart_submitted_with_ray_job_submit_to_a_local_head(tmp_path, ray_temp_dir,
                                                                   small_quickstart):
    temp_dir = ray_temp_dir / "ray"  # Ray's own root under RAY_TMPDIR: sessions, address file
    temp_dir.mkdir()
    token = secrets.token_hex(32)
    env = ray_env(ray_temp_dir, token)
    (gcs, dashboard, client, node_manager, object_manager, agent_listen, agent_grpc,
     runtime_env_agent, metrics) = free_ports(9)
    head_log = tmp_path / "head.log"
    with open(head_log, "w") as out:
        head = subprocess.Popen(
            [str(VENV_BIN / "ray"), "start", "--head", "--block", "--temp-dir", str(temp_dir),
             "--num-cpus", "2", "--object-store-memory", str(500 * 1024 ** 2),
             "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
             "--port", str(gcs), "--dashboard-port", str(dashboard),
             "--ray-client-server-port", str(client), "--node-manager-port", str(node_manager),
             "--object-manager-port", str(object_manager),
             "--dashboard-agent-listen-port", str(agent_listen),
             "--dashboard-agent-grpc-port", str(agent_grpc),
             "--runtime-env-agent-port", str(runtime_env_agent),
             "--metrics-export-port", str(metrics), "--disable-usage-stats"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{dashboard}"
        wait_for_dashboard(url, head, head_log)
        # The shared run, copied, its last stages undone: the submitted job (its code shipped
        # with --working-dir) skips the finished stages and computes select (VST-UNet on Ray
        # Train), evaluate (classifiers in Ray tasks) and the report again, as the in-process
        # run did. A whole run here would cost 100 s more and prove the same of the job.
        run_dir = tmp_path / "quick"
        shutil.copytree(small_quickstart.path, run_dir)
        undo_stages(run_dir, UNDONE_STAGES)
        submit_log = tmp_path / "submit.log"
        submit = run_logged(
            [str(VENV_BIN / "ray"), "job", "submit", "--address", url, "--working-dir", ".",
             "--", "python", "jobs/quickstart.py", "--run", str(run_dir), *FLAGS],
            submit_log, timeout=900, cwd=REPO, env=env)
        output = submit_log.read_text()
        assert submit.returncode == 0, output[-5000:]
        job_id = re.search(r"Job '(raysubmit_\w+)' submitted successfully", output).group(1)
        assert job_info(url, job_id, token)["status"] == "SUCCEEDED"
        with pytest.raises(urllib.error.HTTPError) as refused:  # the API wants the token
            urllib.request.urlopen(f"{url}/api/jobs/{job_id}", timeout=30)
        assert refused.value.code == 401
        report = run_dir / "report" / "report.md"
        assert f"report: {report}" in output  # the job's logs stream back to `ray job submit`
        text = report.read_text()
        assert "| VPC | Method | Top-1 (%) |" in text and "| all | Full real |" in text
        assert "| 1 | TAC-DT |" in text
        for stage in ("ingest", "decode", "latents", "finetune", "generate", "embed"):
            assert f"{stage}: already done, skipped" in output
        assert not any(f"{stage}: already done" in output for stage in UNDONE_STAGES)
        # the job, its code shipped with --working-dir, computed what the in-process run did
        # (the copy's tables still name the files the original run wrote: its path is an alias)
        copied = fingerprint(str(run_dir), aliases=(os.path.abspath(small_quickstart.path),))
        assert differences(small_quickstart.fingerprint, copied) == []
    finally:
        stop_process_group(head)


@pytest.mark.slow
def test_gpu_stages_run_their_actors_on_the_gpu_node_of_a_fake_cluster(tmp_path, ray_temp_dir):
    env = ray_env(ray_temp_dir, secrets.token_hex(32))
    log = tmp_path / "cluster.log"
    script = run_logged([sys.executable, str(CLUSTER_SCRIPT), str(tmp_path / "run"),
                         str(ray_temp_dir)], log, timeout=400, cwd=REPO, env=env)
    output = log.read_text()
    assert script.returncode == 0, output[-5000:]
    # The script's last line of its own; Ray Data's background threads may still log to the
    # same stream while the interpreter exits (seen: a Prometheus query's logging error).
    placed = json.loads([line for line in output.splitlines()
                         if line.startswith('{"head_node"')][-1])
    gpu_node = placed["gpu_node"]
    assert placed["gpu_node_resources"]["GPU"] == 1 and placed["head_node"] != gpu_node
    assert placed["latents_nodes"] == [gpu_node]
    assert placed["generate_nodes"] == [gpu_node]
    assert placed["embed_nodes"] == {"real": [gpu_node], "synthetic": [gpu_node]}
    assert placed["latents"] == 4 and placed["videos"] == 2
