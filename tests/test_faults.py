"""Issue 8, fault injection against one small quickstart run (every stage, every selector):

- dead workers: a Ray Train worker SIGKILLed in the middle of fine-tuning, VST-UNet training and
  classifier training, and a Ray Data actor SIGKILLed in the middle of VAE encoding, generation
  and embedding;
- an interrupted driver: the quickstart job (and the local Ray it started), with two of the
  selectors, SIGKILLed in the middle of four stages, rerun each time.

Each time the run finishes and equals the untouched run file by file (``fingerprint.py``), no
finished work item is written twice and no partial file is ever visible.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from raydistill.config import SELECTION_METHODS, with_overrides
from raydistill.pipeline.run import run_stages

sys.path.insert(0, os.path.dirname(__file__))
from fingerprint import differences, fingerprint, unreadable_files  # noqa: E402
from killing import KillWhen, kill_workers, run_until, session_raylet_pid  # noqa: E402
from small_quickstart import FLAGS, JOB, SIZE, load_job  # noqa: E402

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.slow]
SIZE_METHODS = SELECTION_METHODS if SIZE["methods"] == "all" else SIZE["methods"].split(",")

WORK_ITEMS = ("clips/", "latents/", "synthetic/videos/", "synthetic/latents/", "embeddings/",
              "selection/", "eval/")


def done(run: Path, stage: str) -> bool:
    return (run / "_stages" / f"{stage}.json").exists()


def exists(run: Path, pattern: str) -> bool:
    return next(run.glob(pattern), None) is not None


@pytest.fixture
def untouched(small_quickstart):
    """Fingerprint of the quickstart run nothing happened to (the session's shared run)."""
    return small_quickstart.fingerprint


# -- dead workers -------------------------------------------------------------------------------

# stage → (worker title, condition on the run directory): Ray Train workers die after their first
# checkpoint, actors once their stage has work in flight.
WORKER_KILLS = {
    "latents": ("LatentShardWriter", lambda run: exists(run, "vae/losses.json")),
    "finetune": ("RayTrainWorker", lambda run: exists(run, "finetune/ray/latte/checkpoint_*")),
    "generate": ("SyntheticVideoSampler", lambda run: exists(run, "synthetic/videos/*/*.mp4")),
    "embed": ("ShardEmbedder", lambda run: exists(run, "embed/c3d-run/*.json")),
    "select": ("RayTrainWorker",
               lambda run: exists(run, "selection/*/vst_unet/ray/*/checkpoint_*")),
    # The quickstart trains each classifier in a Ray task of its own (``parallelism: jobs``),
    # checkpointing into the run. Killed as soon as one runs: the smoke classifiers train two
    # epochs in milliseconds, and waiting for a checkpoint file missed every task once in CI.
    "evaluate": ("train_alone", lambda run: True),
}


def test_killed_workers_and_actors_are_replaced_and_the_run_ends_the_same(untouched, tmp_path):
    quickstart = load_job()
    run = tmp_path / "run"
    config = with_overrides(
        quickstart.quickstart_config(str(run), SIZE["classes"], SIZE["train_per_class"],
                                     SIZE["test_per_class"], SIZE["steps"], SIZE["per_class"],
                                     SIZE["seeds"], SIZE["eval_epochs"], smoke=True,
                                     methods=quickstart.resolve_methods(SIZE["methods"])),
        # Checkpoints every step / epoch (results do not depend on it): each kill then lands
        # in the middle of training, resumes from a checkpoint and must not change the result.
        {"finetune": {"checkpoint_every": 1}, "select": {"checkpoint_every": 1},
         "evaluate": {"checkpoint_every": 1}})
    raylet = session_raylet_pid()
    killed = {}
    for stage in ("ingest", "decode", *WORKER_KILLS, "report"):
        role, condition = WORKER_KILLS.get(stage, (None, None))
        if role is None:
            run_stages(config, [stage])
            continue
        watcher = KillWhen(lambda c=condition: c(run), lambda r=role: kill_workers(raylet, r))
        watcher.start()
        try:
            run_stages(config, [stage])
        finally:  # never leave it killing the workers of later tests
            killed[stage] = watcher.stop()
    missed = [stage for stage, pids in killed.items() if not pids]
    assert missed == [], f"no worker was killed in {missed}"
    assert differences(untouched, fingerprint(str(run))) == []


# -- an interrupted driver ---------------------------------------------------------------------

# (where, condition on the run directory): one chain, in pipeline order, one kill in the
# middle of each kind of work that resumes differently: Ray Data tasks writing shards, a Ray
# Train run resuming from its checkpoint, an actor pool writing videos, classifier tasks. (A
# kill at a stage boundary and one in the middle of select, the fan-out of tasks, were dropped
# to keep CI short: each kill costs a driver and a local Ray's start, about 25 s.)
DRIVER_KILLS = [
    ("in the middle of decode", lambda r: exists(r, "clips/*/shard-*.parquet")
     and not done(r, "decode")),
    ("in the middle of finetune", lambda r: exists(r, "finetune/ray/latte/checkpoint_*")
     and not done(r, "finetune")),
    ("in the middle of generate", lambda r: exists(r, "synthetic/videos/*/*.mp4")
     and not done(r, "generate")),
    ("in the middle of evaluate", lambda r: exists(r, "eval/*/**/metrics.json")
     and not done(r, "evaluate")),
]


def work_item_times(run: Path) -> dict[str, int]:
    """{path: mtime} of the finished work items (shards, videos, selections, metrics)."""
    return {str(path.relative_to(run)): path.stat().st_mtime_ns for path in run.rglob("*")
            if path.is_file() and not path.name.startswith(".")
            and str(path.relative_to(run)).startswith(WORK_ITEMS)
            and "/ray/" not in str(path.relative_to(run))}


@pytest.fixture
def driver_env():
    """The environment of a driver that starts its own local Ray, in a private temp dir (short:
    Ray's socket paths must fit in 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="rdk", dir="/tmp")
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = folder
    yield env
    shutil.rmtree(folder, ignore_errors=True)


DRIVER_METHODS = ("random", "tac_dt")
"""The selectors of the driver-kill runs: a selector's files do not depend on the others, so
the untouched run's files of these two are what the killed run must end with (the other six
would add a Ray Train start for the VST-UNet and six classifiers to every rerun)."""


def with_methods(flags: list[str], methods: tuple[str, ...]) -> list[str]:
    """The job's flags with ``--methods`` set to ``methods``."""
    at = flags.index("--methods")
    return [*flags[:at + 1], ",".join(methods), *flags[at + 2:]]


def only_methods(digests: dict[str, str], methods: tuple[str, ...]) -> dict[str, str]:
    """A fingerprint without the files of selectors other than ``methods``."""
    others = set(SIZE_METHODS) - set(methods)
    return {path: digest for path, digest in digests.items()
            if not others & set(Path(path).parts)}


def test_a_driver_killed_again_and_again_finishes_like_an_untouched_run(untouched, tmp_path,
                                                                         driver_env):
    run = tmp_path / "run"
    command = [sys.executable, str(JOB), "--run", str(run),
               *with_methods(FLAGS, DRIVER_METHODS)]
    log = str(tmp_path / "driver.log")
    kept: dict[str, int] = {}
    kills = []
    for where, condition in DRIVER_KILLS:
        killed, code = run_until(command, lambda c=condition: c(run), env=driver_env,
                                 log_path=log)
        if not killed:
            assert code == 0, Path(log).read_text()[-3000:]
            break
        kills.append(where)
        assert unreadable_files(str(run)) == [], f"partial files after a kill {where}"
        kept.update(work_item_times(run))
    assert len(kills) >= 3, f"the run finished before most kill points: killed {kills}"
    killed, code = run_until(command, lambda: False, env=driver_env, log_path=log)
    assert code == 0, Path(log).read_text()[-3000:]
    # The local Ray the job starts has no dashboard: no state-API warnings from Ray Train.
    assert "Failed to query Ray Train Controller actor state" not in Path(log).read_text()
    assert differences(only_methods(untouched, DRIVER_METHODS), fingerprint(str(run))) == []
    now = work_item_times(run)
    assert [path for path, mtime in kept.items() if now.get(path) != mtime] == [], \
        "finished work items were written again after a kill"
