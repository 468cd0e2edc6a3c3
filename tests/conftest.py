"""Session-wide fixtures: offline Hugging Face, one moto S3 server, one small local Ray, one
small finished quickstart run."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from types import MappingProxyType

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

sys.path.insert(0, os.path.dirname(__file__))
from fingerprint import fingerprint  # noqa: E402
from raydistill.logs import setup_console  # noqa: E402

# As every command does (raydistill.logs): the tests of library functions that warn read stderr.
setup_console()
from small_quickstart import FLAGS, RUN_NAME, TRACKER, load_job  # noqa: E402


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback; AWS_* variables point every client (and Ray worker) at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    yield endpoint
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh, empty bucket on the moto server; yields its ``s3://name`` URL."""
    import boto3

    name = "rd-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=name)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield f"s3://{name}"


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint):
    """One local Ray for the whole session (2 CPUs, 1 GB object store, private temp dir)."""
    import ray

    from raydistill.pipeline.cluster import LOCAL_TRAIN_POLL_S, TRAIN_POLL_ENV

    temp_dir = tempfile.mkdtemp(prefix="rdray", dir="/tmp")
    os.environ["RAY_TMPDIR"] = temp_dir
    os.environ.setdefault(TRAIN_POLL_ENV, LOCAL_TRAIN_POLL_S)  # as a job's local Ray polls
    ray.init(address="local", num_cpus=2, object_store_memory=1_000_000_000,
             include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass(frozen=True)
class FinishedRun:
    """A finished run: its folder, where the job ran, what it printed, and its fingerprint
    taken right after it finished (before any test touched it)."""

    path: str
    cwd: str
    printed: str
    fingerprint: MappingProxyType


@pytest.fixture(scope="session")
def small_quickstart(ray_cluster, tmp_path_factory):
    """The quickstart job (``small_quickstart.FLAGS``) run once, in-process on the session's Ray,
    with a relative ``--run`` as the README's command uses. Tests may rerun stages on it but must
    leave it finished."""
    folder = tmp_path_factory.mktemp("small-quickstart")
    printed = io.StringIO()
    previous = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(printed):
            code = load_job().main(["--run", RUN_NAME, *FLAGS, *TRACKER])
    except BaseException:
        print(printed.getvalue()[-3000:])  # what the job said before it raised
        raise
    finally:
        os.chdir(previous)
    assert code == 0, printed.getvalue()[-3000:]
    path = str(folder / RUN_NAME)
    return FinishedRun(path, str(folder), printed.getvalue(),
                       MappingProxyType(fingerprint(path)))


SLOW_FIXTURES = {"ray_cluster", "small_quickstart"}
"""A test that needs the session's Ray (or the finished run made on it) is slow: starting Ray
alone takes seconds, and such tests run stages."""


def pytest_collection_modifyitems(config, items):
    """Mark the tests that use :data:`SLOW_FIXTURES` ``slow``: ``pytest -m "not slow"`` is the
    fast tier, Ray-free."""
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
