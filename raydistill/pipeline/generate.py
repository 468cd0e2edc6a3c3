"""Generate stage: ``generate.per_class`` synthetic videos per class, over an actor pool.

Work items (class, index) stream through Ray Data into ``generate.num_actors`` actors, each
holding one copy of the fine-tuned Latte and the VAE (one GPU each when the cluster has GPUs;
all actors start at once). Each video is sampled from its own seed (``synthesis.video_seed``), so
it does not depend on the batch it landed in. CPU tasks after the actors (the actors themselves
where no half CPU is left beside them: ``shards.writers_fit``) write each as
``synthetic/latents/{id}.npy`` then ``synthetic/videos/{class}/{id}.mp4`` (the mp4 marks it done):
a rerun generates only the missing videos. The summary's ``actors`` say what share of their time
the actors spent sampling (:mod:`raydistill.pipeline.busy`). Then ``synthetic/manifest.parquet``
(``video_id, path, label, class_name, seed, latent_path``) and one filmstrip per class in
``report/filmstrips/``.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pyarrow as pa
import torch

from raydistill.accel import compiled
from raydistill.config import SAMPLER_PRESETS, GenerateConfig, RunConfig, to_dict
from raydistill.datasets.common import folder_name
from raydistill.generation.latte import ClassConditionalLatte
from raydistill.generation.synthesis import synthesize, synthetic_id, video_seed
from raydistill.layout import (FINETUNE_MODEL_DIR, REPORT_FOLDER, SYNTHETIC_MANIFEST,
                               SYNTHETIC_VIDEOS_FOLDER, synthetic_latent_path,
                               synthetic_video_path)
from raydistill.pipeline.busy import ActorClock, idle_warning
from raydistill.pipeline.latents import open_vae
from raydistill.pipeline.resources import Cluster, Request, actor_cpus, inference_actors
from raydistill.pipeline.shards import (actor_pool, actors_outcome, gpus_per_actor,
                                        no_outcome, source, use_assigned_cpus, worker_node,
                                        writers_fit, written_by_tasks)
from raydistill.pipeline.stage import Stage
from raydistill.report.filmstrip import filmstrip, png_bytes
from raydistill.runs import RunDir
from raydistill.video import decode_clip
from raydistill.video.io import encode_video

log = logging.getLogger(__name__)

SYNTHETIC_SCHEMA = pa.schema([("video_id", pa.string()), ("path", pa.string()),
                              ("label", pa.int32()), ("class_name", pa.string()),
                              ("seed", pa.int64()), ("latent_path", pa.string())])


ITEM_FIELDS = ("video_id", "label", "class_name", "seed")


def video_relpath(item: dict) -> str:
    """Run-relative mp4 path of a work item."""
    return synthetic_video_path(folder_name(item["class_name"]), item["video_id"])


def latent_relpath(item: dict) -> str:
    """Run-relative latent path of a work item."""
    return synthetic_latent_path(item["video_id"])


def manifest_row(item: dict) -> dict:
    """The synthetic manifest's row of a work item: the item, its video's and its latent's
    run-relative paths (a copied or synced run reads its own files)."""
    return {**item, "path": video_relpath(item), "latent_path": latent_relpath(item)}


def work_items(class_names: list[str], per_class: int, run_seed: int) -> list[dict]:
    """Every (class, index) to generate, with its id and seed, class-major."""
    return [{"video_id": synthetic_id(label, index), "label": label, "class_name": name,
             "seed": video_seed(run_seed, label, index)}
            for label, name in enumerate(class_names) for index in range(per_class)]


def sampling_batches(items: list[dict], batch_size: int) -> list[list[dict]]:
    """The work items in fixed consecutive groups of ``batch_size``, each sampled together.

    Fixed because a video's last bits depend on what it was sampled with (batched kernels
    round differently): regrouping the missing videos of an interrupted run would make them
    differ from an uninterrupted run's; regenerating their whole group does not.
    """
    return [items[start:start + batch_size] for start in range(0, len(items), batch_size)]


def batch_row(group: list[dict]) -> dict:
    """One Ray Data row holding a sampling batch (column → list of the items' values)."""
    return {key: [item[key] for item in group] for key in group[0]}


class SyntheticVideoSampler:
    """Ray Data actor UDF: sample and decode sampling batches (one per row, see
    :func:`sampling_batches`); the writing is left to :func:`write_synthetic_videos` tasks, so
    the model never waits on mp4 encoding or storage, unless ``writes`` (no CPU left for them:
    :func:`~raydistill.pipeline.shards.writers_fit`).

    Loads the model and VAE once (on the actor's GPU when it has one); returns one row per
    video: its item fields, ``latent`` float32 (T, C, h, w), ``frames`` uint8 (T, H, W, 3) (with
    ``writes``: ``written`` instead of the arrays), the node that sampled it and the actor's
    clock (:mod:`raydistill.pipeline.busy`).
    """

    def __init__(self, run_url: str, model_dir: str, vae: str | None, generate: dict,
                 writes: bool = False):
        use_assigned_cpus()
        self.run, self.writes = RunDir(run_url), writes
        self.settings = GenerateConfig(**generate)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        bf16 = device == "cuda" and self.settings.mixed_precision == "bf16"
        dtype = torch.bfloat16 if bf16 else torch.float32
        # Resolved here, on the actor's node: an S3 run's files are downloaded where they are used.
        self.model = compiled(ClassConditionalLatte.from_pretrained(
            self.run.local_dir(model_dir), torch_dtype=dtype).to(device).eval(),
            self.settings.compile, device)
        self.vae = open_vae(self.run, vae).to(device).eval()
        self.clock = ActorClock()

    def __call__(self, batch: dict) -> dict:
        self.clock.start_call()
        out: dict[str, list] = {key: [] for key in (*ITEM_FIELDS, "latent", "frames")}
        for row in range(len(batch["video_id"])):
            columns = {key: list(batch[key][row]) for key in ITEM_FIELDS}
            with self.clock.model():
                latents, frames = synthesize(
                    self.model, self.vae, [int(label) for label in columns["label"]],
                    [int(seed) for seed in columns["seed"]], self.settings.scheduler,
                    self.settings.steps, self.settings.guidance)
            for key in ITEM_FIELDS:
                out[key] += columns[key]
            out["latent"] += list(latents)
            out["frames"] += list(frames)
        count = len(out["video_id"])
        sampled = {**{key: out[key] for key in ITEM_FIELDS}, "latent": np.stack(out["latent"]),
                   "frames": np.stack(out["frames"]), "node_id": [worker_node()] * count}
        if self.writes:
            sampled = write_sampled_videos(self.run, sampled, self.settings.fps)
        return {**sampled, **self.clock.columns(count)}


def write_synthetic_videos(batch: dict, run_url: str, fps: int) -> dict:
    """Ray Data task UDF: :func:`write_sampled_videos` into the run at ``run_url``."""
    return write_sampled_videos(RunDir(run_url), batch, fps)


def write_sampled_videos(run: RunDir, batch: dict, fps: int) -> dict:
    """Write the latent, then the mp4 (which marks the video done), of each sampled video of
    ``batch`` (:class:`SyntheticVideoSampler`'s rows) not written yet.

    Returns the other columns of the rows, and ``written`` (bool: written by this call)."""
    written = []
    for index, video_id in enumerate(batch["video_id"]):
        item = {"video_id": video_id, "class_name": batch["class_name"][index]}
        if run.exists(video_relpath(item)):
            written.append(False)
            continue
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(batch["latent"][index]))
        run.write_bytes(latent_relpath(item), buffer.getvalue())
        run.write_bytes(video_relpath(item),
                        encode_video(np.asarray(batch["frames"][index]), fps, "mp4"))
        written.append(True)
    return {**{key: values for key, values in batch.items() if key not in ("latent", "frames")},
            "written": written}


def write_filmstrips(run: RunDir, items: list[dict], per_class: int = 4) -> list[str]:
    """One PNG per class of its first ``per_class`` synthetic videos; returns their paths."""
    written = []
    for name in sorted({item["class_name"] for item in items}):
        chosen = [item for item in items if item["class_name"] == name][:per_class]
        videos = [decode_clip(run.uri(video_relpath(item)), num_frames=8, size=64)
                  for item in chosen]
        path = f"{REPORT_FOLDER}/filmstrips/{folder_name(name)}.png"
        run.write_bytes(path, png_bytes(filmstrip(videos), scale=2))
        written.append(path)
    return written


def generate_videos(run: RunDir, groups: list[list[dict]], model_dir: str, vae: str,
                    generate: GenerateConfig) -> dict:
    """Sample the sampling batches ``groups`` (:func:`sampling_batches`) over
    ``generate.num_actors`` actors (all started at once, one GPU each when the cluster has
    GPUs) and write them in CPU tasks (in the actors where none fits beside them:
    :func:`~raydistill.pipeline.shards.writers_fit`). ``model_dir`` is the model's
    folder inside the run; ``vae`` a VAE source, or None for the run's own ``vae/``.

    Returns ``nodes`` (the ids of the nodes whose actors sampled), ``written`` (videos written
    now) and the actors' shares of time (:func:`~raydistill.pipeline.busy.busy_summary`)."""
    if not groups:
        return {**no_outcome(), "written": 0}
    gpus = gpus_per_actor(generate.gpus_per_actor)
    actors = min(generate.num_actors, len(groups))
    cpus = actor_cpus(generate.cpus_per_actor, gpus)
    actors_write = not writers_fit(actors * cpus)
    sampled = source([batch_row(group) for group in groups]).map_batches(
        SyntheticVideoSampler,
        fn_constructor_kwargs={"run_url": run.url, "model_dir": model_dir, "vae": vae,
                               "generate": to_dict(generate), "writes": actors_write},
        batch_size=1, num_gpus=gpus, num_cpus=cpus, compute=actor_pool(actors))
    rows, outcome = actors_outcome(written_by_tasks(
        sampled, actors_write, write_synthetic_videos, {"run_url": run.url, "fps": generate.fps},
        len(groups)))
    message = idle_warning(outcome, "generate", (
        "their other work is writing, done by the actors where no CPU is left beside them for "
        "writer tasks (lower generate.cpus_per_actor to leave half a CPU); their wait is Ray "
        "Data's hand-over between calls, sampling batches being all ready from the start: a "
        "larger generate.batch_size, chosen before a run's first video, makes calls longer"))
    if message:
        log.warning(message)
    return {**outcome, "written": sum(bool(row["written"]) for row in rows)}


def run_generate(run: RunDir, config: RunConfig) -> dict:
    """Generate every missing synthetic video, then the synthetic manifest and filmstrips."""
    started = time.time()
    generate = config.generate
    class_names = run.stage_summary("ingest")["class_names"]
    items = work_items(class_names, generate.per_class, config.seed)
    # One listing, not a request per video.
    written = set(run.list(SYNTHETIC_VIDEOS_FOLDER, ".mp4"))
    todo = [item for item in items if video_relpath(item) not in written]
    groups = [group for group in sampling_batches(items, generate.batch_size)
              if any(video_relpath(item) not in written for item in group)]
    sampled = generate_videos(run, groups, FINETUNE_MODEL_DIR, config.latents.vae, generate)
    run.write_table(SYNTHETIC_MANIFEST, pa.Table.from_pylist(
        [manifest_row(item) for item in items], SYNTHETIC_SCHEMA))
    strips = write_filmstrips(run, items)
    seconds = time.time() - started
    log.info(f"generate: {len(items)} synthetic videos ({len(todo)} generated now) in "
             f"{seconds:.1f} s; filmstrips in {run.uri(REPORT_FOLDER, 'filmstrips')}")
    return {"videos": len(items), "generated_now": len(todo), "per_class": generate.per_class,
            "filmstrips": strips, "nodes": sampled["nodes"],
            "actors": sampled["actors"], "busy_share_min": sampled["busy_share_min"],
            "seconds": round(seconds, 2),
            "videos_per_minute": round(60 * len(todo) / seconds, 1) if todo else None}


def describe(config: RunConfig) -> str:
    """The plan's line: videos per class and the sampler (named when it is a preset)."""
    g = config.generate
    named = [f" ({name} sampler)" for name, preset in SAMPLER_PRESETS.items()
             if preset == {"scheduler": g.scheduler, "steps": g.steps, "guidance": g.guidance}]
    return (f"{g.per_class} videos per class, {g.scheduler} {g.steps} steps, "
            f"guidance {g.guidance:g}{''.join(named)}")


def requests(config: RunConfig, cluster: Cluster) -> list[Request]:
    """The Latte actors that sample the videos."""
    return [inference_actors("Latte actor", "generate", config.generate, cluster)]


STAGE = Stage("generate", run_generate, describe, requests)
