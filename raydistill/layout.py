"""The run directory's layout: the run-relative paths that stages hand to each other and the
report reads (the manifests and caches, the fine-tuned model, the synthetic pool, selections,
evaluations, embeddings, sweeps) are built here, and selection and evaluation paths are parsed
back here, so that no stage imports another to find its files. Files a stage keeps to itself
(its Ray Train storage, ``loss.csv``, ``training.json``, …) are named in that stage.

    manifest.parquet                                          the ingested videos
    clips/{split}/shard-NNNNN.parquet                         decoded clips
    {clips,latents,embeddings/{pool}}/_rejects/…/shard-NNNNN.parquet   a shard's rejects
    latents/{split}/shard-NNNNN.parquet                       VAE latents of the clips
    finetune/model/                                           the fine-tuned Latte
    synthetic/videos/{class}/{id}.mp4, synthetic/latents/{id}.npy, synthetic/manifest.parquet
    selection/{pool}/{method}/vpc={k}/seed={s}.parquet        one selection (a SelectionKey)
    selection/{pool}/{method}/vpc={k}/seed={s}.quality.json   its quality metrics
    selection/{pool}/vst_unet/vpc={k}/seed={s}.model.pt       the VST-UNet that made it
    selection/{pool}/{method}/settings.json                   what the method selected with
    eval/{pool}/{method}/vpc={k}/seed={s}/                    the classifier of a selection
    eval/{full_real|full_synthetic}/seed={s}/                 the classifier of an upper bound
        metrics.json, model.pt, checkpoint.pt (+ checkpoint.json while it trains)
    embed/{run_classifier}-run/                               the classifier trained in the run
    embeddings/{pool}/{model}/shard-NNNNN.parquet             a pool's embeddings by one model
    tune/{pool}/{method}/vpc={k}/                             one Tune sweep's outputs
    report/                                                   the report and its figures

Pure string work: no I/O, no Ray.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MANIFEST = "manifest.parquet"
CLIPS_FOLDER = "clips"
LATENTS_FOLDER = "latents"
FINETUNE_MODEL_DIR = "finetune/model"
SYNTHETIC_MANIFEST = "synthetic/manifest.parquet"
SYNTHETIC_VIDEOS_FOLDER = "synthetic/videos"
REPORT_FOLDER = "report"
SELECTION_FOLDER = "selection"
EVAL_FOLDER = "eval"
EMBEDDINGS_FOLDER = "embeddings"
RUN_MODEL_FOLDER = "embed"
TUNE_FOLDER = "tune"
BOUNDS = ("full_real", "full_synthetic")
"""The upper bounds' evaluation keys: a classifier trained on every real training clip, and
on the whole synthetic pool."""


@dataclass(frozen=True, order=True)
class SelectionKey:
    """One selection of a run: ``vpc`` videos per class of ``pool`` picked by ``method`` with
    ``seed`` (and the classifier trained on it, with the same seed)."""

    pool: str
    method: str
    vpc: int
    seed: int

    @property
    def name(self) -> str:
        """``{pool}/{method}/vpc={k}/seed={s}``: its path under ``selection/`` (without the
        suffix) and under ``eval/``, and the evaluate stage's job key."""
        return f"{self.pool}/{self.method}/vpc={self.vpc}/seed={self.seed}"


@dataclass(frozen=True, order=True)
class BoundKey:
    """One upper bound's classifier: ``bound`` (one of :data:`BOUNDS`) trained with ``seed``."""

    bound: str
    seed: int

    @property
    def name(self) -> str:
        """``{bound}/seed={s}``: its path under ``eval/`` and the evaluate stage's job key."""
        return f"{self.bound}/seed={self.seed}"


REJECTS_FOLDER = "_rejects"
"""Where the rows a shard could not take go, under its stage's folder (``clips/_rejects/train/
shard-NNNNN.parquet``), not beside the shards: ``pandas.read_parquet("RUN/clips/train")`` and Ray
Data read clips only, and pyarrow skips ``_`` folders when it reads ``RUN/clips`` whole."""


def is_rejects_file(path: str) -> bool:
    """Whether a run path holds a shard's rejects, not the shard (runs made before
    :data:`REJECTS_FOLDER` kept them beside the shard as ``shard-NNNNN.rejects.parquet``)."""
    return f"/{REJECTS_FOLDER}/" in path or path.endswith(".rejects.parquet")


def pool_manifest(pool: str) -> str:
    """The manifest listing a pool's videos: ``manifest.parquet`` for ``real`` (its training
    split), ``synthetic/manifest.parquet`` for ``synthetic``."""
    return MANIFEST if pool == "real" else SYNTHETIC_MANIFEST


def clips_folder(split: str) -> str:
    """Run-relative folder of a split's decoded clips (``train``, ``test``, ``synthetic``, …)."""
    return f"{CLIPS_FOLDER}/{split}"


def latents_folder(split: str) -> str:
    """Run-relative folder of a split's VAE latents."""
    return f"{LATENTS_FOLDER}/{split}"


def synthetic_video_path(class_folder: str, video_id: str) -> str:
    """Run-relative path of one generated video, in its class's folder."""
    return f"{SYNTHETIC_VIDEOS_FOLDER}/{class_folder}/{video_id}.mp4"


def synthetic_latent_path(video_id: str) -> str:
    """Run-relative path of one generated video's latent (``.npy``)."""
    return f"synthetic/latents/{video_id}.npy"


def selection_folder(pool: str) -> str:
    """Run-relative folder of every selection of ``pool``."""
    return f"{SELECTION_FOLDER}/{pool}"


def selection_path(pool: str, method: str, vpc: int, seed: int) -> str:
    """Run-relative path of one selection (Parquet: ``video_id, label, rank, score``)."""
    return f"{SELECTION_FOLDER}/{SelectionKey(pool, method, vpc, seed).name}.parquet"


def quality_path(pool: str, method: str, vpc: int, seed: int) -> str:
    """Run-relative path of a selection's quality metrics."""
    return f"{SELECTION_FOLDER}/{SelectionKey(pool, method, vpc, seed).name}.quality.json"


def vst_model_path(pool: str, vpc: int, seed: int) -> str:
    """Run-relative path of the final state of the VST-UNet that made a selection."""
    return f"{SELECTION_FOLDER}/{SelectionKey(pool, 'vst_unet', vpc, seed).name}.model.pt"


def method_settings_path(pool: str, method: str) -> str:
    """Run-relative path of what a method's selections of ``pool`` were made with."""
    return f"{SELECTION_FOLDER}/{pool}/{method}/settings.json"


def eval_metrics_path(key: str) -> str:
    """Run-relative path of the test metrics of evaluation job ``key`` (a :class:`SelectionKey`
    or :class:`BoundKey` ``name``)."""
    return f"{EVAL_FOLDER}/{key}/metrics.json"


def eval_predictions_path(key: str) -> str:
    """Run-relative path of evaluation job ``key``'s test predictions (one row per test video:
    ``video_id``, ``label``, ``predicted``, ``top5``)."""
    return f"{EVAL_FOLDER}/{key}/predictions.parquet"


def eval_model_path(key: str) -> str:
    """Run-relative path of evaluation job ``key``'s trained classifier."""
    return f"{EVAL_FOLDER}/{key}/model.pt"


def eval_checkpoint_path(key: str) -> str:
    """Where evaluation job ``key`` keeps its last checkpoint until it is done (the evaluate
    stage's ``parallelism: jobs``)."""
    return f"{EVAL_FOLDER}/{key}/checkpoint.pt"


def run_model_name(run_classifier: str) -> str:
    """``{run_classifier}-run`` (``videomae-run``, ``c3d-run``): the name of the classifier the
    embed stage trains inside the run, its folder under ``embed/`` and its embeddings'."""
    return f"{run_classifier}-run"


def run_model_dir(run_classifier: str) -> str:
    """Run-relative folder of the classifier trained inside the run (``embed/c3d-run``)."""
    return f"{RUN_MODEL_FOLDER}/{run_model_name(run_classifier)}"


def embeddings_folder(pool: str, model_name: str | None = None) -> str:
    """Run-relative folder of a pool's embeddings, by one model when ``model_name`` is given."""
    folder = f"{EMBEDDINGS_FOLDER}/{pool}"
    return folder if model_name is None else f"{folder}/{model_name}"


def sweep_folder(pool: str, method: str, vpc: int) -> str:
    """Run-relative folder of one Tune sweep's outputs."""
    return f"{TUNE_FOLDER}/{pool}/{method}/vpc={vpc}"


_KEY = r"(?P<pool>[^/]+)/(?P<method>[^/]+)/vpc=(?P<vpc>\d+)/seed=(?P<seed>\d+)"
_SELECTION_FILE = re.compile(rf"^{SELECTION_FOLDER}/{_KEY}"
                             r"(?P<suffix>\.parquet|\.quality\.json|\.model\.pt)$")
_EVAL_FILE = re.compile(rf"^{EVAL_FOLDER}/{_KEY}/(?P<file>[^/]+)$")
_BOUND_FILE = re.compile(rf"^{EVAL_FOLDER}/(?P<bound>{'|'.join(BOUNDS)})/seed=(?P<seed>\d+)/"
                         r"(?P<file>[^/]+)$")
SELECTION_SUFFIXES = {".parquet": "selection", ".quality.json": "quality",
                      ".model.pt": "vst_model"}
"""What a file under ``selection/`` is, by its suffix (see :func:`parse_selection_path`)."""


def _selection_key(match: re.Match) -> SelectionKey:
    return SelectionKey(match["pool"], match["method"], int(match["vpc"]), int(match["seed"]))


def parse_selection_path(path: str) -> tuple[SelectionKey, str] | None:
    """``(key, kind)`` of a run-relative path built by :func:`selection_path` (kind
    ``selection``), :func:`quality_path` (``quality``) or :func:`vst_model_path`
    (``vst_model``); None for any other path."""
    match = _SELECTION_FILE.match(path)
    if not match:
        return None
    return _selection_key(match), SELECTION_SUFFIXES[match["suffix"]]


def parse_eval_path(path: str) -> tuple[SelectionKey | BoundKey, str] | None:
    """``(key, file name)`` of a file in an evaluation job's folder (:func:`eval_metrics_path`,
    :func:`eval_model_path`, …) of a selection or an upper bound; None for any other path."""
    match = _BOUND_FILE.match(path)
    if match:
        return BoundKey(match["bound"], int(match["seed"])), match["file"]
    match = _EVAL_FILE.match(path)
    if match:
        return _selection_key(match), match["file"]
    return None
