"""Busy share of the generate and embed stages' Ray Data actors: how much of its time a (GPU)
actor spends in its model, and how much it waits on decode tasks, mp4 writing or storage.

    python benchmarks/actor_busy.py --tiny        # tiny models on this machine's CPUs
    python benchmarks/actor_busy.py               # the paper's shapes (for a GPU machine)

It runs the stages' own code (``generate_videos`` then ``embed_pool`` of the synthetic pool) on
a fresh run in a temporary folder, with a local Ray and untrained models of the scale's shapes
(Latte and VAE; a VideoMAE as ``embed.model``). Per stage it prints the actors' shares
(:mod:`raydistill.pipeline.busy`): ``busy`` in the model, ``other`` in the actor's calls but
outside the model, ``wait`` between calls. Issue 21: a GPU actor waiting more than 10 % of its
time is a defect. ``gpu_suite.py`` runs the same measurement as its last table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from raydistill.config import RunConfig, with_overrides  # noqa: E402
from raydistill.embedding.videomae import tiny_videomae_config  # noqa: E402
from raydistill.generation.latte import LATTE_XL_2, SMALL_LATTE  # noqa: E402
from raydistill.generation.vae import SD_VAE_ARCHITECTURE, TINY_VAE  # noqa: E402
from raydistill.layout import FINETUNE_MODEL_DIR, SYNTHETIC_MANIFEST  # noqa: E402
from raydistill.runs import RunDir  # noqa: E402

WAIT_LIMIT = 0.10
"""Issue 21: an actor that waits (or works outside its model) more than this share is a defect."""


@dataclass(frozen=True)
class BusyScale:
    """The shapes of one measurement: models, videos and batch sizes."""

    name: str
    latte: dict
    vae: dict
    classes: int
    per_class: int
    generate_batch: int
    steps: int
    videomae: dict
    shard_size: int
    embed_batch: int
    embed_repeats: int


TINY = BusyScale("tiny", SMALL_LATTE, TINY_VAE, classes=2, per_class=6, generate_batch=3,
                 steps=25, videomae={"num_frames": 8, "size": 32}, shard_size=8,
                 embed_batch=8, embed_repeats=4)
PAPER = BusyScale("paper", LATTE_XL_2, SD_VAE_ARCHITECTURE, classes=2, per_class=8,
                  generate_batch=4, steps=50, videomae={"num_frames": 16, "size": 224},
                  shard_size=64, embed_batch=32, embed_repeats=16)
"""The paper's models and settings (Latte-XL/2 and the SD VAE, DDIM 50 with guidance;
VideoMAE-base on 16×224², the default shard of 64 videos) on few videos (16 sampled in 4 calls,
embedded 16 times over in 4 shards): under two minutes on one GPU."""


def save_models(run: RunDir, scale: BusyScale, class_names: list[str]) -> tuple[str, str]:
    """Untrained Latte (into the run's fine-tuned model folder) and VAE and VideoMAE (beside
    the run); returns (VAE folder, VideoMAE folder)."""
    from diffusers import AutoencoderKL
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    from raydistill.generation.latte import ClassConditionalLatte

    torch.manual_seed(0)
    ClassConditionalLatte(num_classes=len(class_names), **scale.latte).save_pretrained(
        run.path(FINETUNE_MODEL_DIR))
    vae_dir, videomae_dir = run.path("bench", "vae"), run.path("bench", "videomae")
    AutoencoderKL(**scale.vae).save_pretrained(vae_dir)
    config = tiny_videomae_config(class_names, scale.videomae["num_frames"],
                                  scale.videomae["size"])
    if scale.name == "paper":  # VideoMAE-base
        config = VideoMAEConfig(**{**config.to_dict(), "hidden_size": 768,
                                   "num_hidden_layers": 12, "num_attention_heads": 12,
                                   "intermediate_size": 3072, "patch_size": 16})
    VideoMAEForVideoClassification(config).save_pretrained(videomae_dir)
    return vae_dir, videomae_dir


def measure(scale: BusyScale, folder: str) -> list[dict]:
    """Generate then embed on a fresh run in ``folder`` (each video embedded
    ``embed_repeats`` times); one result per stage: videos, seconds (the whole stage, actors'
    start included) and the actors' shares (:func:`raydistill.pipeline.busy.busy_summary`)."""
    from raydistill.pipeline.embed import embed_pool
    from raydistill.pipeline.generate import (SYNTHETIC_SCHEMA, generate_videos, manifest_row,
                                              sampling_batches, work_items)

    run = RunDir(folder)
    class_names = [f"class {index}" for index in range(scale.classes)]
    vae_dir, videomae_dir = save_models(run, scale, class_names)
    config = with_overrides(RunConfig(run_dir=folder), {
        "generate": {"per_class": scale.per_class, "batch_size": scale.generate_batch,
                     "scheduler": "ddim", "steps": scale.steps, "guidance": 4.0},
        "select": {"vpc": [1]},
        "embed": {"model": videomae_dir, "pools": ["synthetic"],
                  "shard_size": scale.shard_size, "batch_size": scale.embed_batch}})
    items = work_items(class_names, scale.per_class, config.seed)
    started = time.perf_counter()
    sampled = generate_videos(run, sampling_batches(items, scale.generate_batch),
                              FINETUNE_MODEL_DIR, vae_dir, config.generate)
    generate_s = time.perf_counter() - started
    # Each video listed embed_repeats times: shards of the stage's real size from few videos.
    rows = [{**manifest_row(item), "video_id": f"{item['video_id']}-{copy}"}
            for item in items for copy in range(scale.embed_repeats)]
    run.write_table(SYNTHETIC_MANIFEST, pa.Table.from_pylist(rows, SYNTHETIC_SCHEMA))
    started = time.perf_counter()
    embedded = embed_pool(run, config, "synthetic", class_names)
    embed_s = time.perf_counter() - started
    return [{"stage": "generate", "videos": sampled["written"], "seconds": generate_s,
             "actors": sampled["actors"]},
            {"stage": "embed", "videos": embedded["videos"], "seconds": embed_s,
             "actors": embedded["actors"]}]


def measure_with_ray(scale: BusyScale) -> list[dict]:
    """:func:`measure` in a temporary folder, under a local Ray of this machine's CPUs and
    GPUs (started here unless one is already connected)."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count(),
                 include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="raydistill-busy-") as folder:
            return measure(scale, str(Path(folder) / "run"))
    finally:
        if started_here:
            ray.shutdown()


def share_text(result: dict, key: str) -> str:
    """The actors' shares of ``key`` as percentages (one per actor)."""
    return " / ".join(f"{100 * actor[key]:.0f} %" for actor in result["actors"]) or "—"


def render(results: list[dict], scale: BusyScale) -> str:
    """A Markdown table of the results, with a verdict per stage against :data:`WAIT_LIMIT`."""
    lines = [f"Ray Data actors ({scale.name} shapes; busy: in the model, other: in the call "
             "outside it, wait: between calls)", "",
             "| stage | videos | seconds | busy | other | wait | verdict |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        idle = max((a["other_share"] + a["wait_share"] for a in result["actors"]), default=0.0)
        verdict = "ok" if idle <= WAIT_LIMIT else f"over {100 * WAIT_LIMIT:.0f} % idle"
        lines.append(f"| {result['stage']} | {result['videos']} | {result['seconds']:.1f} | "
                     f"{share_text(result, 'busy_share')} | {share_text(result, 'other_share')} "
                     f"| {share_text(result, 'wait_share')} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure at the paper's shapes (or ``--tiny``) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU, about a minute)")
    args = parser.parse_args()
    scale = TINY if args.tiny else PAPER
    print(render(measure_with_ray(scale), scale))


if __name__ == "__main__":
    main()
