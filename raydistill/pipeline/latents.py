"""Latents stage: the real training clips, decoded once and VAE-encoded into a latent cache.

``latents/train/shard-NNNNN.parquet`` (``video_id, label, latent`` float32 (T, C, h, w)). Clips
are decoded in CPU tasks and encoded by an actor pool that holds the VAE (one GPU per actor when
the cluster has GPUs); shards are resumable like the clip cache. Without a pretrained VAE
(``latents.vae`` None, the toy runs) a tiny one is first trained on the training clips and saved
to ``vae/``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch

from raydistill.config import RunConfig, frame_sampling
from raydistill.generation.vae import encode_clips, load_vae, train_tiny_vae
from raydistill.layout import LATENTS_FOLDER, MANIFEST
from raydistill.pipeline.resources import Cluster, Request, actor_cpus, inference_actors
from raydistill.pipeline.shards import (actor_pool, collect_rejects, decode_shard_isolated,
                                        decode_shards, gpus_per_actor, missing_shards,
                                        prepare_output, shard_path, shard_plan, source, task_pool,
                                        use_assigned_cpus, worker_node, worker_nodes,
                                        write_rejects_then)
from raydistill.pipeline.stage import Stage, frames_said, missing_model, model_source
from raydistill.runs import RunDir
from raydistill.schema import tensor_array
from raydistill.video.clips import decode_batch

log = logging.getLogger(__name__)

VAE_DIR = "vae"


def open_vae(run: RunDir, source: str | None):
    """The run's VAE: ``source`` (``latents.vae``), or the tiny VAE trained into ``RUN/vae``.

    Called where the VAE is used (an actor on any node), so an S3 run's VAE is downloaded there.
    """
    return load_vae(source or run.local_dir(VAE_DIR))


def latent_shape(run: RunDir) -> list[int]:
    """(T, C, h, w) of the cached latents, from the first shard's schema; [] if none."""
    first = shard_path(LATENTS_FOLDER, "train", 0)
    if not run.exists(first):
        return []
    return list(run.read_schema(first).field("latent").type.shape)


def latent_table(ids: list[str], labels: list[int], latents: np.ndarray) -> pa.Table:
    """A latent-cache table: ``video_id``, ``label``, ``latent`` float32 (T, C, h, w) tensors."""
    return pa.table({"video_id": pa.array(ids, pa.string()),
                     "label": pa.array(labels, pa.int32()),
                     "latent": tensor_array(latents.astype(np.float32), pa.float32())})


class LatentShardWriter:
    """Ray Data actor UDF: VAE-encode each decoded shard row and write its latent shard; returns
    the shards done and the node that did them."""

    def __init__(self, run_url: str, vae: str | None):
        use_assigned_cpus()
        self.run = RunDir(run_url)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.vae = open_vae(self.run, vae).to(device).eval()

    def __call__(self, batch: dict) -> dict:
        for split, index, ids, labels, clips, rejects in zip(
                batch["split"], batch["index"], batch["video_ids"], batch["labels"],
                batch["clips"], batch["rejects"]):
            ids, labels = json.loads(ids), json.loads(labels)
            clips = np.asarray(clips)
            if ids:
                latents = encode_clips(self.vae, clips)
            else:  # every row failed: an empty shard, with the latent shape of the others
                latents = encode_clips(self.vae, np.zeros((1, *clips.shape[1:]), np.uint8))[:0]
            write_rejects_then(self.run, shard_path(LATENTS_FOLDER, split, int(index)), rejects,
                               latent_table(ids, labels, latents))
        return {"split": batch["split"], "index": batch["index"],
                "node_id": [worker_node()] * len(batch["index"])}


@ray.remote(max_retries=1)
def _train_and_save_vae(run_url: str, frames: np.ndarray, steps: int, seed: int) -> list[float]:
    """Train the tiny VAE in a Ray task and save it into the run; ``losses.json`` marks it done."""
    use_assigned_cpus()
    vae, losses = train_tiny_vae(frames, steps=steps, seed=seed)
    run = RunDir(run_url)
    with tempfile.TemporaryDirectory(prefix="raydistill-vae-") as folder:
        vae.save_pretrained(folder)
        run.put_dir(folder, VAE_DIR)
    run.write_json(f"{VAE_DIR}/losses.json", losses)
    return losses


def train_run_vae(run: RunDir, config: RunConfig, max_videos: int = 256) -> dict:
    """Train the tiny VAE on (up to ``max_videos``) training clips and save it to ``RUN/vae``."""
    latents = config.latents
    manifest = run.read_manifest(MANIFEST)
    train = manifest.filter(pc.equal(manifest["split"], "train")).slice(0, max_videos)
    decoded = decode_batch(train.to_pydict(), latents.num_frames, latents.size,
                           **frame_sampling(latents))
    clips = decoded["clip"][[not error for error in decoded["error"]]]
    frames = clips.reshape(-1, *clips.shape[2:])
    losses = ray.get(_train_and_save_vae.options(num_cpus=latents.vae_cpus).remote(
        run.url, frames, latents.vae_steps, config.seed))
    return {"vae_steps": latents.vae_steps, "vae_loss_first": round(losses[0], 5),
            "vae_loss_last": round(losses[-1], 5), "vae_frames": int(len(frames))}


def run_latents(run: RunDir, config: RunConfig) -> dict:
    """Write the latent cache of the training split; returns counts. Resumes per shard."""
    started = time.time()
    latents = config.latents
    summary = {}
    if latents.vae is None and not run.exists(f"{VAE_DIR}/losses.json"):
        summary.update(train_run_vae(run, config))
    manifest = run.read_manifest(MANIFEST)
    prepare_output(run, LATENTS_FOLDER, {"num_frames": latents.num_frames,
                                         "size": latents.size,
                                         "shard_size": latents.shard_size, "vae": latents.vae,
                                         **frame_sampling(latents)})
    plan = shard_plan(manifest, latents.shard_size, splits=("train",))
    todo = missing_shards(run, plan, LATENTS_FOLDER)
    writer_kwargs = {"run_url": run.url, "vae": latents.vae}
    nodes: list[str] = []  # the nodes that encoded shards now (the driver's after a failure)
    if todo:
        gpus = gpus_per_actor(latents.gpus_per_actor)
        actors = min(latents.num_actors, len(todo))
        try:
            done = source(todo).map_batches(
                decode_shards, fn_kwargs={"num_frames": latents.num_frames,
                                          "size": latents.size, **frame_sampling(latents)},
                batch_size=1, compute=task_pool(1.0, len(todo)), num_cpus=1, max_retries=0,
            ).map_batches(
                LatentShardWriter, fn_constructor_kwargs=writer_kwargs,
                batch_size=1, num_gpus=gpus, num_cpus=actor_cpus(None, gpus),
                compute=actor_pool(actors),
            ).materialize()
            nodes = worker_nodes(done)
        except Exception as error:  # a decode task died: isolate the file that killed it
            log.warning(f"latents: a task failed ({type(error).__name__}); decoding the remaining "
                        "shards one file per task")
            writer = LatentShardWriter(**writer_kwargs)
            for item in missing_shards(run, plan, LATENTS_FOLDER):
                writer(decode_shard_isolated(item, latents.num_frames, latents.size,
                                             sampling=frame_sampling(latents)))
            nodes = [worker_node()]
    rejects = collect_rejects(run, plan, LATENTS_FOLDER)
    listed = sum(len(json.loads(item["rows"])) for item in plan)
    summary.update({
        "shards": len(plan), "shards_encoded_now": len(todo),
        "latents": listed - rejects.num_rows,
        "latent_shape": latent_shape(run), "nodes": nodes,
        "decode_errors": rejects.num_rows, "seconds": round(time.time() - started, 2)})
    log.info(f"latents: {summary['latents']} training clips encoded to "
             f"{'×'.join(map(str, summary['latent_shape']))} latents ({len(todo)} shards now)")
    return summary


def describe(config: RunConfig) -> str:
    """The plan's line: the VAE's clips, the latent shape and the VAE."""
    latents = config.latents
    side = latents.size // 8  # the SD VAE downsamples 8×
    return (f"{latents.num_frames}×{latents.size}² clips ({frames_said(latents)}) → "
            f"{latents.num_frames}×4×{side}×{side} latents, VAE "
            f"{model_source(latents.vae, 'tiny, trained on the run first')}")


def requests(config: RunConfig, cluster: Cluster) -> list[Request]:
    """The VAE actors, and the task that trains the run's tiny VAE when none is given."""
    latents = config.latents
    asks = [inference_actors("VAE actor", "latents", latents, cluster)]
    if latents.vae is None:
        asks.append(Request("VAE training task", 1, latents.vae_cpus, 0.0, "latents.vae",
                            "latents.vae_cpus"))
    return asks


def warnings(config: RunConfig) -> list[str]:
    """A VAE path this node lacks."""
    return missing_model("latents.vae", config.latents.vae)


STAGE = Stage("latents", run_latents, describe, requests, warnings=warnings)
