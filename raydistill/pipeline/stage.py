"""What makes up a stage of a run: one plain :class:`Stage` record per stage module.

Each ``pipeline/<stage>.py`` ends with ``STAGE = Stage(...)``; :mod:`raydistill.pipeline.stages`
holds them in order, and the run (:mod:`~raydistill.pipeline.run`), the dry run
(:mod:`~raydistill.pipeline.plan`) and the cluster checks (:mod:`~raydistill.pipeline.resources`)
loop over them. The record holds data and functions only, no logic of its own; the helpers below
are the words stages describe themselves with in the plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from raydistill.config import ConfigError
from raydistill.embedding.videomae_v2 import CHECKPOINT_SUFFIXES
from raydistill.runs import open_fs

if TYPE_CHECKING:
    from raydistill.config import RunConfig
    from raydistill.pipeline.resources import Cluster, Request
    from raydistill.runs import RunDir


def no_workers(config: RunConfig, cluster: Cluster) -> list[Request]:
    """The ``requests`` of a stage that runs on the driver alone: none."""
    return []


@dataclass(frozen=True)
class Stage:
    """One stage: its name (also its config section and its ``_stages/{name}.json`` marker) and
    what the run, the plan and the cluster checks ask of it."""

    name: str
    run: Callable[[RunDir, RunConfig], dict]
    """Run the stage's unfinished work in the run directory; returns its summary (JSON)."""
    describe: Callable[[RunConfig], str]
    """The stage's main settings in one line, for the dry run's plan."""
    requests: Callable[[RunConfig, Cluster], list[Request]] = no_workers
    """The kinds of Ray workers it starts, sized as the stage sizes them."""
    needs: Callable[[RunConfig], tuple[str, ...]] | None = None
    """The stages it reads the outputs of (their own needs follow); None: the stage before."""
    validate: Callable[[RunConfig], None] | None = None
    """Checks of its config section that need more than the config's own types (building a
    model or a selector once): ConfigError naming the field, before any stage runs."""
    check_inputs: Callable[[RunDir, RunConfig], None] | None = None
    """Checks of its settings against what the run holds (ConfigError naming the field): before
    the run starts, and again as the stage starts (earlier stages may have added to the run)."""
    warnings: Callable[[RunConfig], list[str]] | None = None
    """The dry run's warnings about its settings on this node (a model path this node lacks:
    the workers that load it may still see it), each starting with the field."""
    settings: Callable[[RunConfig], dict] | None = None
    """What its completion marker records and an additive stage is finished with (None: its
    config section): settings that default to another stage's are filled in."""
    redrawn: bool = False
    """Never finished: rerun on every run (the report, drawn from whatever the run holds)."""
    plan_check: Callable[[RunConfig], str | None] | None = None
    """The dry run's look at the stage's inputs beyond the run's own checks (listing a dataset
    takes seconds to minutes): a line of what it found for the plan, or ConfigError naming the
    field; asked only of a stage the run would run."""


def missing_model(field: str, value: str | None, local_only: bool = False) -> list[str]:
    """A warning when model ``value`` of config ``field`` is a path this node lacks: a local
    path (``/``, ``.``, ``~``), a checkpoint file (``.pth``, ``.pt``) or a ``local_only`` model
    (the Latte weights load from a file or folder only); or, under ``HF_HUB_OFFLINE=1``, a hub
    id that is not in this node's Hugging Face cache (it could not be downloaded)."""
    if not value or os.path.exists(os.path.expanduser(value)):
        return []
    if (local_only or value.startswith(("/", ".", "~"))
            or value.lower().endswith(CHECKPOINT_SUFFIXES)):
        return [f"{field}: {value} does not exist on this node"]
    if hub_offline() and not in_hub_cache(value):
        return [f"{field}: {value} is a hub id that is not in this node's Hugging Face cache "
                f"({hub_cache()}) and HF_HUB_OFFLINE=1 forbids downloading it; run "
                f"`huggingface-cli download {value}` where the cache is, or give a local folder"]
    return []


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads (read now: a test or job may set it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_cache() -> str:
    """This node's Hugging Face hub cache folder (``HF_HUB_CACHE``, ``HF_HOME``/hub, …)."""
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def in_hub_cache(repo_id: str) -> bool:
    """Whether some snapshot of model ``repo_id`` is in this node's hub cache."""
    snapshots = os.path.join(hub_cache(), "models--" + repo_id.replace("/", "--"), "snapshots")
    return os.path.isdir(snapshots) and bool(os.listdir(snapshots))


def open_url(url: str, field: str):
    """``(filesystem, path)`` of ``url``; ConfigError naming ``field`` when it cannot be
    opened (an unknown protocol, a missing filesystem package)."""
    try:
        return open_fs(url)
    except (ValueError, ImportError) as error:
        raise ConfigError(f"{field}: cannot open {url} ({error})") from None


def url_exists(fs, path: str, field: str, url: str) -> bool:
    """``fs.exists(path)``; ConfigError naming ``field`` when the storage cannot be asked
    (wrong credentials, an endpoint that does not answer)."""
    try:
        return fs.exists(path)
    except Exception as error:  # s3fs / botocore raise many types; each means "cannot reach"
        raise ConfigError(f"{field}: cannot reach {url}: {type(error).__name__}: "
                          f"{error}") from None


def frames_said(section) -> str:
    """How a ``decode`` or ``latents`` section samples a clip's frames, in words."""
    if section.frame_interval is None:
        return "frames spread over the video"
    start = "centred" if section.frame_start == "center" else "random start"
    return f"frames {section.frame_interval} apart, {start}"


def model_source(value: str | None, when_none: str, local_only: bool = False) -> str:
    """How a model path or hub id will be found: ``when_none``, a local path, or a hub id (a
    ``local_only`` model, as the Latte, or a checkpoint file such as an original VideoMAE V2
    ``.pth``, is never a hub id: a path this node lacks)."""
    if value is None:
        return when_none
    if os.path.exists(os.path.expanduser(value)):
        return f"{value} (local)"
    if local_only or value.lower().endswith(CHECKPOINT_SUFFIXES):
        return f"{value} (a local path, not on this node)"
    if in_hub_cache(value):
        return f"{value} (hub id, in this node's HF cache)"
    return f"{value} (hub id: downloaded on first use, or read from the HF cache)"
