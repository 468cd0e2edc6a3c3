"""Frozen, validated configuration: one dataclass per stage plus the run config.

A config is built from a plain dict (YAML, CLI flags) with :func:`from_dict`, which rejects unknown
fields, wrong types and out-of-range values with a :class:`ConfigError` that names the field, so a
bad config stops before any work starts. :func:`to_dict` / :func:`dump_yaml` write it back.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from raydistill.dataset_info import DATASET_INFO

DATASETS = tuple(DATASET_INFO)
"""The dataset layouts ``ingest.dataset`` names: the keys of ``raydistill.dataset_info``'s
``DATASET_INFO``, in its order (the CLI's ``--dataset`` choices)."""
STAGE_NAMES = ("ingest", "decode", "latents", "finetune", "generate", "embed", "select",
               "evaluate", "report")
"""The pipeline's stages in order; each has a config section of the same name."""
PLACEMENT_FIELDS = ("num_actors", "gpus_per_actor", "cpus_per_actor", "vae_cpus", "num_cpus",
                    "cpus_per_worker", "classifier_cpus", "test_actors", "test_cpus_per_actor",
                    "max_failures")
"""Section fields that say on how much hardware a stage runs, not what it computes: they may
change after the stage finished (a run resumed on another machine or with other defaults)."""

EVALUATE_PARALLELISM = ("data", "jobs")
"""How the evaluate stage's workers share the classifiers (``EvaluateConfig.parallelism``)."""

ADDITIVE_STAGES = ("embed", "select", "evaluate", "report")
"""Stages whose outputs are keyed by their settings (pool, model, method, VPC, seed): changing
their section after they finished adds work beside the old outputs instead of invalidating them,
so it is allowed, and the stage runs again for what is missing (``report`` is redrawn from
whatever exists)."""
MIXED_PRECISION = ("bf16", "no")
"""``mixed_precision`` of a stage's model: bf16 autocast on GPUs (``raydistill.accel``), or
float32 throughout. Never applies on CPUs."""
UNFROZEN_SECTIONS = ("tracking",)
"""Sections that change no output (where metrics are logged): free to change at any time."""
CLASSIFIER_NAMES = ("c3d", "convnet3d", "transformer")
POOLS = ("synthetic", "real")
RUN_CLASSIFIERS = ("videomae", "c3d")
SCORE_RUN = "run"
"""``embed.score_model`` value naming the classifier the run trains on its real clips."""
SELECTION_METHODS = ("random", "tac_dt", "kcenter", "herding", "dm_mmd", "mae_score",
                     "attention_topk", "vst_unet")
"""The selectors' names, in the order of ``raydistill.selection.SELECTORS`` (a test keeps the two
equal; config cannot import the selectors, which import torch): the training-free ones fan out
per class; ``vst_unet`` trains one model over all classes of the pool's latents with Ray Train."""
PROPOSED_METHODS = ("tac_dt", "vst_unet")
"""The paper's own selectors (their classes' ``proposed`` flag; a test keeps the two equal), so
that the jobs order their methods without importing the selectors."""
RENAMED_METHODS = {
    "csta": ("attention_topk", "it is not the CSTA model of the paper's Table 4 (a CNN trained "
                               "for video summarisation, Son et al. CVPR 2024, whose weights do "
                               "not exist here) but a training-free attention score whose top VPC "
                               "videos are kept"),
}
"""Method names that were renamed: old name → (new name, why). A config or command line naming
the old one is refused with that reason, so no result is filed under a name it does not earn."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message starts with the dotted field name."""


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name}: {message}")


def _require_methods(methods, name: str) -> None:
    """Every entry of ``methods`` names a selector; a renamed one is refused with its new name."""
    for method in methods:
        if method in RENAMED_METHODS:
            new_name, why = RENAMED_METHODS[method]
            raise ConfigError(f"{name}: method {method!r} was renamed to {new_name!r}: {why}; "
                              f"write {new_name!r}")
    unknown = [m for m in methods if m not in SELECTION_METHODS]
    _require(not unknown, name, f"unknown method {unknown[0]!r}; choose from "
             f"{', '.join(SELECTION_METHODS)}" if unknown else "")


def _require_fast_paths(section) -> None:
    """``mixed_precision`` one of :data:`MIXED_PRECISION` (a section may lack ``compile``)."""
    _require(section.mixed_precision in MIXED_PRECISION, "mixed_precision",
             f"must be one of {', '.join(MIXED_PRECISION)}")


def _require_cpus(value: float | None, name: str) -> None:
    """A CPU count field: None (the stage decides) or in (0, 256]."""
    _require(value is None or 0 < value <= 256, name, "must be in (0, 256]")


@dataclass(frozen=True)
class ToyConfig:
    """Size of the procedurally generated toy action dataset (see ``datasets/toy.py``)."""

    num_classes: int = 8
    train_per_class: int = 40
    test_per_class: int = 10
    num_frames: int = 16
    size: int = 64
    fps: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        _require(2 <= self.num_classes <= 8, "num_classes", "must be between 2 and 8")
        _require(self.train_per_class >= 1, "train_per_class", "must be >= 1")
        _require(self.test_per_class >= 1, "test_per_class", "must be >= 1")
        _require(self.num_frames >= 2, "num_frames", "must be >= 2")
        _require(16 <= self.size <= 512 and self.size % 2 == 0, "size",
                 "must be an even number between 16 and 512")
        _require(1 <= self.fps <= 120, "fps", "must be between 1 and 120")


@dataclass(frozen=True)
class IngestConfig:
    """Which dataset to read, from where, and how to probe its files.

    ``root`` is the dataset's official on-disk layout (local path or ``s3://`` URL); for ``toy`` it
    is where the generated videos are written (default: ``<run>/source/toy``). ``split`` picks the
    official train/test split of UCF101 / MiniUCF (1-3) and HMDB51 (1-3). A video whose frames
    hold more than ``max_frame_pixels`` pixels is rejected (``too_large``) before any frame is
    decoded: a tiny file can announce 8192² frames and take gigabytes per decode task. The default
    (4096², 16.8 M) keeps every real dataset's videos, 4K included.
    """

    dataset: str = "toy"
    root: Optional[str] = None
    split: int = 1
    probe_batch_size: int = 32
    verify_decode: bool = True
    max_frame_pixels: int = 4096 * 4096
    toy: ToyConfig = field(default_factory=ToyConfig)

    def __post_init__(self) -> None:
        _require(self.dataset in DATASETS, "dataset",
                 f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        _require(self.dataset == "toy" or bool(self.root), "root",
                 f"is required for dataset {self.dataset!r}")
        _require(self.split in (1, 2, 3), "split", "must be 1, 2 or 3")
        _require(self.probe_batch_size >= 1, "probe_batch_size", "must be >= 1")
        _require(self.max_frame_pixels >= 1, "max_frame_pixels", "must be >= 1")


@dataclass(frozen=True)
class DecodeConfig:
    """Fixed-length clip sampling: ``num_frames`` frames of ``size``² pixels, spread uniformly
    over the video, or (``frame_interval`` k) consecutive frames k apart, the span centred in the
    video or at a random start drawn from the file's name (``frame_start``;
    ``video.decode.sample_indices``).

    ``shard_size`` manifest rows become one clip-cache shard (one Ray task); ``num_cpus`` is what
    each decode task asks Ray for.
    """

    num_frames: int = 16
    size: int = 112
    shard_size: int = 64
    num_cpus: float = 1.0
    frame_interval: Optional[int] = None
    frame_start: str = "center"

    def __post_init__(self) -> None:
        _require_frame_sampling(self)
        _require(1 <= self.num_frames <= 512, "num_frames", "must be between 1 and 512")
        _require(8 <= self.size <= 1024, "size", "must be between 8 and 1024")
        _require(self.shard_size >= 1, "shard_size", "must be >= 1")
        _require(0 < self.num_cpus <= 64, "num_cpus", "must be in (0, 64]")


FRAME_STARTS = ("center", "random")
"""Where a strided clip (``frame_interval``) starts: in the middle of the video, or at an offset
drawn from the file's name (training clips of a diffusion model, as Latte's loader draws one)."""


def _require_frame_sampling(section) -> None:
    _require(section.frame_interval is None or 1 <= section.frame_interval <= 64,
             "frame_interval", "must be None (spread over the video) or between 1 and 64")
    _require(section.frame_start in FRAME_STARTS, "frame_start",
             f"must be one of {', '.join(FRAME_STARTS)}")
    _require(section.frame_start == "center" or section.frame_interval is not None,
             "frame_start", "a random start needs frame_interval (frames spread over the "
             "whole video have no start to draw)")


def frame_sampling(section) -> dict:
    """The frame-sampling keywords of a ``decode`` or ``latents`` section for the decoders
    (``frame_interval``, ``frame_start``); {} for frames spread over the whole video, so the
    caches and stage settings of such runs stay as they were."""
    if section.frame_interval is None:
        return {}
    return {"frame_interval": section.frame_interval, "frame_start": section.frame_start}


ARCHITECTURES = ("tiny", "small", "xl")
SCHEDULER_NAMES = ("ddpm", "ddim", "dpm")
SAMPLER_PRESETS = {
    "latte": {"scheduler": "ddpm", "steps": 250, "guidance": 7.0},
    "fast": {"scheduler": "ddim", "steps": 50, "guidance": 4.0},
}
"""Named ``generate`` settings: ``latte`` is the sampling of Latte's own UCF101 sample script
(DDPM, 250 steps, classifier-free guidance 7), what the paper's authors most likely used (the
paper does not say); ``fast`` is DDIM in 50 steps at guidance 4, 5 × fewer model calls, not
measured against it (that needs the public weights and a GPU)."""
PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class LatentsConfig:
    """The latent cache of the real training clips (stage ``latents``).

    ``vae`` is an AutoencoderKL path or hub id (paper: SD's VAE at 256²); None trains the tiny
    VAE on the run's training clips first (toy runs). Clips are decoded at ``num_frames`` ×
    ``size``² for the VAE, sampled as in :class:`DecodeConfig` (``frame_interval``: Latte's UCF101
    model was trained on frames 3 apart). ``gpus_per_actor`` None means 1 when the cluster has
    GPUs, else 0.
    The tiny VAE trains in one task of ``vae_cpus`` CPUs (and as many torch threads).
    """

    vae: Optional[str] = None
    vae_steps: int = 2000
    vae_cpus: float = 1.0
    num_frames: int = 16
    size: int = 256
    shard_size: int = 16
    num_actors: int = 1
    gpus_per_actor: Optional[float] = None
    frame_interval: Optional[int] = None
    frame_start: str = "center"

    def __post_init__(self) -> None:
        _require_frame_sampling(self)
        _require(self.vae_steps >= 1, "vae_steps", "must be >= 1")
        _require_cpus(self.vae_cpus, "vae_cpus")
        _require(1 <= self.num_frames <= 512, "num_frames", "must be between 1 and 512")
        _require(8 <= self.size <= 1024 and self.size % 8 == 0, "size",
                 "must be a multiple of 8 between 8 and 1024")
        _require(self.shard_size >= 1, "shard_size", "must be >= 1")
        _require(self.num_actors >= 1, "num_actors", "must be >= 1")
        _require(self.gpus_per_actor is None or self.gpus_per_actor >= 0, "gpus_per_actor",
                 "must be >= 0")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning the class-conditional Latte with Ray Train (stage ``finetune``).

    ``model`` is a local source of public weights (see ``generation/convert.py``) or None for a
    fresh model; ``architecture`` picks the shape when the source carries none (``tiny`` for
    the quickstart and tests, ``small`` for toy runs that should generate their classes better,
    ``xl`` = Latte-XL/2). ``batch_size`` is per worker.
    ``use_gpu`` None means: when the cluster has GPUs. ``cpus_per_worker`` is what a CPU worker
    asks Ray for, and so its torch threads (``pipeline.shards.use_assigned_cpus``): on a laptop
    one worker may take every core. ``mixed_precision`` (``bf16`` or ``no``) applies on GPU only;
    ``compile`` runs the training step's model through ``torch.compile`` (off until measured).
    ``cache_latents`` keeps each worker's share of the latent cache in memory across epochs
    (turn it off when the cache is larger than the workers' memory, e.g. Kinetics-400).
    ``prediction_type``: what the model learns to predict, ``epsilon`` (the noise, as the public
    Latte weights do) or ``v_prediction`` (for small models trained from scratch; see
    ``generation/diffusion.py``). ``model_classes`` names the rows of ``model``'s label table so
    they are matched to the run's classes by name: ``ucf101`` (Latte's public UCF101 model, also
    assumed for any original checkpoint of 101 classes) or a text file of class names, one per
    line in row order (None: a model saved by this project names its own rows). ``steps: 0``
    uses ``model`` as it is (the paper's UCF101 and MiniUCF runs, Table 7): no training; every
    tensor and every run class's label row must come from it.
    """

    model: Optional[str] = None
    model_classes: Optional[str] = None
    architecture: str = "xl"
    steps: int = 20000
    batch_size: int = 5
    learning_rate: float = 1e-4
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    class_dropout_prob: float = 0.1
    prediction_type: str = "epsilon"
    checkpoint_every: int = 1000
    log_every: int = 10
    num_workers: int = 1
    use_gpu: Optional[bool] = None
    cpus_per_worker: float = 1.0
    mixed_precision: str = "bf16"
    compile: bool = False
    max_failures: int = 3
    cache_latents: bool = True

    def __post_init__(self) -> None:
        _require_cpus(self.cpus_per_worker, "cpus_per_worker")
        _require(self.architecture in ARCHITECTURES, "architecture",
                 f"must be one of {', '.join(ARCHITECTURES)}")
        for name in ("batch_size", "checkpoint_every", "log_every", "num_workers"):
            _require(getattr(self, name) >= 1, name, "must be >= 1")
        _require(self.steps >= 0, "steps", "must be >= 0")
        _require(self.steps > 0 or self.model is not None, "steps",
                 "0 uses finetune.model as it is, without training; set finetune.model (a "
                 "pretrained Latte) or train steps > 0")
        _require(self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1)")
        _require(self.grad_clip > 0, "grad_clip", "must be > 0")
        _require(0 <= self.class_dropout_prob < 1, "class_dropout_prob", "must be in [0, 1)")
        _require(self.prediction_type in PREDICTION_TYPES, "prediction_type",
                 f"must be one of {', '.join(PREDICTION_TYPES)}")
        _require_fast_paths(self)
        _require(self.max_failures >= 0, "max_failures", "must be >= 0")
        _require(self.model_classes is None or self.model is not None, "model_classes",
                 "names the rows of finetune.model's label table; set finetune.model too")


MAX_PER_CLASS = 100_000
"""The most synthetic videos per class a run may ask for (the paper generates 100)."""


@dataclass(frozen=True)
class GenerateConfig:
    """Sampling ``per_class`` synthetic videos per class (stage ``generate``; paper: 100).

    ``num_actors`` model replicas sample in parallel, ``gpus_per_actor`` each (None: 1 when the
    cluster has GPUs, else 0) and ``cpus_per_actor`` CPUs (None: 1 beside a GPU, else 0.5; its
    torch threads follow, at least 1); ``batch_size`` videos per sampling call. On a GPU the Latte
    samples with bf16 weights (``mixed_precision: no``: float32) and, with ``compile``, through
    ``torch.compile``; the VAE decodes in float32 either way.
    """

    per_class: int = 100
    guidance: float = 4.0
    steps: int = 50
    scheduler: str = "ddim"
    batch_size: int = 8
    num_actors: int = 1
    gpus_per_actor: Optional[float] = None
    cpus_per_actor: Optional[float] = None
    fps: int = 8
    mixed_precision: str = "bf16"
    compile: bool = False

    def __post_init__(self) -> None:
        _require_fast_paths(self)
        _require(1 <= self.per_class <= MAX_PER_CLASS, "per_class",
                 f"must be in [1, {MAX_PER_CLASS}]")
        _require(self.guidance >= 1, "guidance", "must be >= 1 (1 disables guidance)")
        _require(1 <= self.steps <= 1000, "steps", "must be between 1 and 1000")
        _require(self.scheduler in SCHEDULER_NAMES, "scheduler",
                 f"must be one of {', '.join(SCHEDULER_NAMES)}")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self.num_actors >= 1, "num_actors", "must be >= 1")
        _require(self.gpus_per_actor is None or self.gpus_per_actor >= 0, "gpus_per_actor",
                 "must be >= 0")
        _require(1 <= self.fps <= 120, "fps", "must be between 1 and 120")
        _require_cpus(self.cpus_per_actor, "cpus_per_actor")


@dataclass(frozen=True)
class EmbedConfig:
    """VideoMAE embeddings of the pools to select from (stage ``embed``).

    ``model`` is a transformers VideoMAE folder or hub id (``VideoMAEModel`` or a
    ``VideoMAEForVideoClassification`` action classifier; the paper uses one fine-tuned on
    Kinetics), or an original VideoMAE V2 checkpoint file (``.pth``, e.g. the paper's ViT-g;
    ``raydistill/embedding/videomae_v2.py``); None trains a tiny VideoMAE classifier on the
    run's real training clips first (``classifier_steps`` steps; toy runs, where no pretrained
    weights exist offline), or, with ``run_classifier: c3d``, a small C3D (the toy evaluation
    preset, ``classifier_epochs`` epochs), whose features separate motions far better on the
    toy; the task training it asks Ray for ``classifier_cpus`` CPUs (its torch threads). Clips are
    decoded at the model's own frame count and image size. ``features``: ``mean`` (mean-pooled
    last hidden state), ``fc_norm`` (a classifier's normalised pooled features) or ``auto``
    (``fc_norm`` for a classifier, else ``mean``).

    ``score_model`` gives each video's own-class probability (``score``: what ``mae_score`` ranks
    by and TAC-DT's ``min_score`` filters on) and the class it is filed under, while ``model``
    still gives the features: a ``VideoMAEForVideoClassification`` folder or hub id whose labels
    name the run's classes (e.g. VideoMAE fine-tuned on UCF101 or HMDB51, whose classes a
    Kinetics head does not name), or ``run`` for the classifier trained on the run's real
    clips (``run_classifier``). None: ``model``'s own head, when it names the run's classes;
    else ``mae_score`` falls back to an out-of-fold logistic regression on the embeddings.
    On GPUs the models embed under bf16 autocast (``mixed_precision: no``: float32) and, with
    ``compile``, through ``torch.compile``.
    """

    model: Optional[str] = None
    score_model: Optional[str] = None
    pools: tuple[str, ...] = ("synthetic",)
    features: str = "auto"
    shard_size: int = 64
    batch_size: int = 16
    num_actors: int = 1
    gpus_per_actor: Optional[float] = None
    classifier_steps: int = 400
    run_classifier: str = "videomae"
    classifier_epochs: int = 30
    classifier_cpus: float = 1.0
    mixed_precision: str = "bf16"
    compile: bool = False

    def __post_init__(self) -> None:
        _require_fast_paths(self)
        _require(self.run_classifier in RUN_CLASSIFIERS, "run_classifier",
                 f"must be one of {', '.join(RUN_CLASSIFIERS)}")
        _require(self.score_model is None or bool(self.score_model.strip()), "score_model",
                 "must name a classifier, or be unset")
        _require(not (self.score_model == SCORE_RUN and self.model is None), "score_model",
                 f"{SCORE_RUN!r} is the run's own classifier, which already scores when "
                 "embed.model is unset; leave score_model unset")
        _require(len(self.pools) >= 1 and all(p in POOLS for p in self.pools), "pools",
                 f"must list pools out of {', '.join(POOLS)}")
        _require(self.features in ("auto", "mean", "fc_norm"), "features",
                 "must be auto, mean or fc_norm")
        for name in ("shard_size", "batch_size", "num_actors", "classifier_steps",
                     "classifier_epochs"):
            _require(getattr(self, name) >= 1, name, "must be >= 1")
        _require(self.gpus_per_actor is None or self.gpus_per_actor >= 0, "gpus_per_actor",
                 "must be >= 0")
        _require_cpus(self.classifier_cpus, "classifier_cpus")


@dataclass(frozen=True)
class SelectConfig:
    """Which videos to keep per class (stage ``select``): every (method, VPC, seed) of ``methods``
    × ``vpc`` × ``range(seeds)`` on the ``pool``'s embeddings from model ``embedding`` (None: the
    embed stage's model). ``params`` maps a method to its selector parameters (e.g.
    ``{tac_dt: {n_components: 16}}``). Classes fan out as Ray tasks of ``classes_per_task``
    classes (None: about four tasks per CPU). ``vst_unet`` selects from the pool's VAE latents and
    trains with Ray Train on ``train_workers`` workers (data-parallel over classes; GPUs when
    ``use_gpu``, None = when the cluster has them; bf16 autocast there unless ``mixed_precision``
    is ``no``), checkpointing every ``checkpoint_every`` epochs and surviving ``max_failures``
    worker failures.
    """

    pool: str = "synthetic"
    methods: tuple[str, ...] = ("random", "tac_dt")
    vpc: tuple[int, ...] = (1, 5, 10)
    seeds: int = 5
    embedding: Optional[str] = None
    params: dict = field(default_factory=dict)
    classes_per_task: Optional[int] = None
    train_workers: int = 1
    use_gpu: Optional[bool] = None
    checkpoint_every: int = 10
    max_failures: int = 3
    mixed_precision: str = "bf16"

    def __post_init__(self) -> None:
        _require_fast_paths(self)
        _require(self.pool in POOLS, "pool", f"must be one of {', '.join(POOLS)}")
        _require(len(self.methods) >= 1, "methods", "must name at least one method")
        _require_methods(self.methods, "methods")
        _require(len(self.vpc) >= 1 and all(k >= 1 for k in self.vpc), "vpc",
                 "must list videos-per-class counts >= 1")
        _require(self.seeds >= 1, "seeds", "must be >= 1")
        for method, params in self.params.items():
            if method in RENAMED_METHODS:
                _require_methods([method], f"params.{method}")
            _require(method in SELECTION_METHODS, f"params.{method}", "is not a method")
            _require(isinstance(params, dict), f"params.{method}", "must be a mapping")
        _require(self.classes_per_task is None or self.classes_per_task >= 1,
                 "classes_per_task", "must be >= 1")
        for name in ("train_workers", "checkpoint_every"):
            _require(getattr(self, name) >= 1, name, "must be >= 1")
        _require(self.max_failures >= 0, "max_failures", "must be >= 0")


@dataclass(frozen=True)
class EvaluateConfig:
    """Train a classifier on each selection and test it on the real test split (``evaluate``).

    Every (method, VPC, seed) of ``methods`` × ``vpc`` × ``range(seeds)`` (None: the select
    stage's) on each of ``pools`` (None: the select stage's pool; ``[real, synthetic]``
    evaluates the coreset and the distilled selections of one run side by side), plus the upper
    bounds ``full_real`` (every real training video) and ``full_synthetic`` (the whole synthetic
    pool), each over ``upper_bound_seeds`` seeds (None: ``seeds``). ``preset`` picks the
    classifier geometry and training defaults (``paper``: C3D on 16×112², SGD 500 epochs;
    ``toy``: 8×32², Adam 30 epochs; see ``classify/``);
    ``classifier_options`` and ``training`` override single fields (e.g.
    ``training: {epochs: 100, lr: 0.01}``). Training uses ``num_workers`` workers (GPUs when
    ``use_gpu``, None = when the cluster has them; on CPU ``cpus_per_worker`` CPUs and as many
    torch threads each), checkpointing every ``checkpoint_every`` epochs. ``parallelism``:
    ``data`` trains each classifier on all the workers at once (DDP, for large classifiers);
    ``jobs`` trains each classifier in a Ray task of its own, alone as one worker would, at most
    ``num_workers`` at a time with the same resources each (many small classifiers: no gradient
    exchange, no Ray Train start, and each task's threads stay busy). The test
    split (``test``, or ``val`` when the dataset has no test split, as Kinetics-400 and SSv2)
    is predicted with Ray Data by ``test_actors`` actors
    (one GPU each on a cluster with GPUs, else ``test_cpus_per_actor`` CPUs, None: 0.5; torch
    threads follow), ``models_per_pass`` models per pass over it. On GPUs training and testing
    run under bf16 autocast (``mixed_precision: no``: float32), the model through
    ``torch.compile`` with ``compile`` and in channels-last 3-D memory order with
    ``channels_last`` (both off until measured).
    """

    classifier: str = "c3d"
    preset: str = "paper"
    classifier_options: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    methods: Optional[tuple[str, ...]] = None
    vpc: Optional[tuple[int, ...]] = None
    seeds: Optional[int] = None
    pools: Optional[tuple[str, ...]] = None
    full_real: bool = True
    full_synthetic: bool = True
    upper_bound_seeds: Optional[int] = None
    num_workers: int = 1
    parallelism: str = "data"
    use_gpu: Optional[bool] = None
    cpus_per_worker: float = 1.0
    checkpoint_every: int = 10
    max_failures: int = 3
    test_actors: int = 1
    test_cpus_per_actor: Optional[float] = None
    models_per_pass: int = 8
    mixed_precision: str = "bf16"
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        _require_fast_paths(self)
        _require_cpus(self.cpus_per_worker, "cpus_per_worker")
        _require_cpus(self.test_cpus_per_actor, "test_cpus_per_actor")
        _require(self.classifier in CLASSIFIER_NAMES, "classifier",
                 f"must be one of {', '.join(CLASSIFIER_NAMES)}")
        _require(self.preset in ("paper", "toy"), "preset", "must be paper or toy")
        _require(self.parallelism in EVALUATE_PARALLELISM, "parallelism",
                 f"must be one of {', '.join(EVALUATE_PARALLELISM)}")
        _require_methods(self.methods or (), "methods")
        _require(self.pools is None or (len(self.pools) >= 1
                                        and all(pool in POOLS for pool in self.pools)),
                 "pools", f"must list pools out of {', '.join(POOLS)}")
        _require(self.vpc is None or (len(self.vpc) >= 1 and min(self.vpc) >= 1), "vpc",
                 "must list videos-per-class counts >= 1")
        for name in ("seeds", "upper_bound_seeds"):
            _require(getattr(self, name) is None or getattr(self, name) >= 1, name,
                     "must be >= 1")
        for name in ("num_workers", "checkpoint_every", "test_actors", "models_per_pass"):
            _require(getattr(self, name) >= 1, name, "must be >= 1")
        _require(self.max_failures >= 0, "max_failures", "must be >= 0")


@dataclass(frozen=True)
class ReportConfig:
    """The run's ``report/report.md`` (stage ``report``): which VPC the plots of selected videos
    use (None: the smallest evaluated) and how many classes the filmstrips show."""

    vpc_for_plots: Optional[int] = None
    max_filmstrip_classes: int = 8

    def __post_init__(self) -> None:
        _require(self.vpc_for_plots is None or self.vpc_for_plots >= 1, "vpc_for_plots",
                 "must be >= 1")
        _require(self.max_filmstrip_classes >= 1, "max_filmstrip_classes", "must be >= 1")


SWEEP_SEARCHES = ("grid", "random", "optuna", "hyperopt")
"""How a Tune sweep draws its trials (``jobs/tune_lambdas.py --search``)."""
TRACKERS = ("none", "tensorboard", "mlflow", "wandb")
"""Experiment trackers the training loops can log to (``tracking.tracker``)."""


@dataclass(frozen=True)
class TrackingConfig:
    """Where the training loops log their metrics as they train (fine-tuning, VST-UNet, the
    evaluation classifiers) and Tune sweeps their trials: ``tracker`` one of :data:`TRACKERS`.
    ``uri``: TensorBoard's log folder, MLflow's tracking URI (``http://…``, ``file:…`` or a
    folder) or W&B's local folder; None: ``RUN/tracking/{tensorboard,mlruns,wandb}`` (a run on
    S3 must name one every node reaches). ``experiment``: the MLflow experiment or W&B project
    (None: the run folder's name). Never frozen: tracking changes no result."""

    tracker: str = "none"
    uri: Optional[str] = None
    experiment: Optional[str] = None

    def __post_init__(self) -> None:
        _require(self.tracker in TRACKERS, "tracker", f"choose one of {', '.join(TRACKERS)}")
        _require(self.uri is None or bool(self.uri.strip()), "uri", "must not be empty")
        _require(self.experiment is None or bool(self.experiment.strip()), "experiment",
                 "must not be empty")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: where it lives and every stage's settings."""

    run_dir: str = "runs/quickstart"
    seed: int = 0
    ingest: IngestConfig = field(default_factory=IngestConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    latents: LatentsConfig = field(default_factory=LatentsConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        _require(bool(self.run_dir), "run_dir", "must not be empty")
        _require(0 <= self.seed < 2 ** 32, "seed", "must be in [0, 2**32)")
        if self.select.pool == "synthetic":
            _require(max(self.select.vpc) <= self.generate.per_class, "select.vpc",
                     f"{max(self.select.vpc)} videos per class is more than the "
                     f"{self.generate.per_class} generated per class (generate.per_class)")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Check ``value`` against a field annotation; return it (ints widen to floats)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [a for a in options if a is not type(None)]
        return _coerce(value, inner[0], name)
    if origin is tuple:
        _require(isinstance(value, (list, tuple)), name, f"expected a list, got {value!r}")
        item_type = typing.get_args(annotation)[0]
        return tuple(_coerce(v, item_type, f"{name}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        _require(isinstance(value, dict), name, f"expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{name}.")
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _require(ok, name, f"expected a number, got {value!r}")
        _require(math.isfinite(value), name, f"must be a finite number, got {value!r}")
        return float(value)
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        _require(ok, name, f"expected an integer, got {value!r}")
        return value
    _require(isinstance(value, annotation), name,
             f"expected {_type_name(annotation)}, got {value!r}")
    return value


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build the frozen dataclass ``cls`` from a (possibly partial) dict.

    Missing fields take their defaults. Raises :class:`ConfigError` naming the first unknown field,
    wrong type or invalid value.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown field (known: {', '.join(sorted(known))})")
    kwargs = {key: _coerce(value, hints[key], f"{prefix}{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as error:
        # __post_init__ names the bare field; the prefix makes it the dotted path.
        raise ConfigError(f"{prefix}{error}") from None


def to_dict(config: Any) -> dict:
    """Plain-dict form of a config dataclass (tuples become lists, for YAML)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def dump_yaml(config: Any) -> str:
    """YAML text of a config, loadable by :func:`load_yaml`."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML parse error in one line: ``line 2, column 1: expected the node content, ...``."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return " ".join(f"{where}{problem}".split())


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names a key twice (PyYAML keeps the last
    silently, so a setting written twice would be half ignored)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, not a {key_node.id}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, cls: type = RunConfig, source: str = "config",
              saved: bool = False) -> Any:
    """Parse YAML text into the config dataclass ``cls`` (validated); ``source`` names the text
    in the one-line :class:`ConfigError` of a file that is not YAML or names a key twice.
    ``saved``: a run's own ``config.yaml``, written before some methods were renamed, so they
    are read under their new names (:func:`with_renamed_methods`) instead of refused."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({yaml_problem(error)})") from None
    return from_dict(cls, with_renamed_methods(data) if saved else data)


def with_renamed_methods(data: dict) -> dict:
    """Config values (as parsed) with every method of :data:`RENAMED_METHODS` in
    ``select.methods``, ``select.params`` and ``evaluate.methods`` under its new name."""
    def rename(method):
        return RENAMED_METHODS[method][0] if method in RENAMED_METHODS else method

    data = dict(data)
    for section in ("select", "evaluate"):
        values = data.get(section)
        if not isinstance(values, dict):
            continue
        values = dict(values)
        if isinstance(values.get("methods"), list):
            values["methods"] = [rename(method) for method in values["methods"]]
        if isinstance(values.get("params"), dict):
            values["params"] = {rename(method): params
                                for method, params in values["params"].items()}
        data[section] = values
    return data


def with_overrides(config: Any, overrides: dict) -> Any:
    """A copy of ``config`` with nested ``overrides`` applied, validated like :func:`from_dict`."""

    def merge(base: dict, extra: dict) -> dict:
        merged = dict(base)
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = value
        return merged

    return from_dict(type(config), merge(to_dict(config), overrides))
