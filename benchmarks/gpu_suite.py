"""GPU suite: one command that measures every model of the pipeline on one GPU and writes one
Markdown table (GPU, torch, CUDA, date in its heading).

    python benchmarks/gpu_suite.py --out benchmarks/gpu_suite.md     # on a GPU: under 8 minutes
    python benchmarks/gpu_suite.py --tiny --out /tmp/x.md             # same code on CPU, < 60 s

Rows (the project's own builders and steps, random weights, nothing downloaded):

- **Latte training**: ``generation.training.train_step`` (diffusion loss, AdamW, clipping, EMA)
  of Latte-XL/2 on 16×4×32² latents at the largest batch that fits (doubling from 1 until out of
  memory, up to ``--max-batch``): samples/s and model FLOP utilisation (MFU);
- **generation DDIM 50 / DPM-Solver 25 / DDPM 250**: ``generation.synthesis.synthesize``
  (class-conditional sampling with classifier-free guidance, then the SD VAE decode):
  videos/hour/GPU and the share of it spent in the VAE;
- **VideoMAE-base / ViT-g-sized VideoMAE embedding**: the embed stage's forward (mean of
  ``VideoMAEModel``'s last hidden state) on 16×224² clips: videos/s and utilisation;
- **VST-UNet training**: ``selection.vst_selector.train_epoch`` on one class of 100×16×4×32²
  latents, and **C3D training**: ``classify.training.train_one_epoch`` on one batch of 16×112²
  clips: seconds per step.

Each in four columns: fp32, bf16 autocast, bf16 autocast + ``torch.compile``, and bf16 with SDPA
off (where the model attends). Each cell: warm-up, then timed steps between
``torch.cuda.synchronize`` calls; an out-of-memory or compile error fills its cell with the
error's first line; once ``--budget-s`` (7.5 min) has passed, the remaining cells say "skipped:
time budget". Columns run in the order bf16, fp32, SDPA off, compile, so the slow compiles come
last. ``--tiny`` runs the same code on CPU with tiny configs (bf16 autocast on CPU; the compile
column is skipped on CPU unless ``--compile-on-cpu``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROCESS_STARTED = time.perf_counter()  # the time budget counts torch's import too

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from diffusers.models.attention_processor import Attention, AttnProcessor  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from raydistill.classify.models import PAPER_CLASSIFIERS, TOY_CLASSIFIERS  # noqa: E402
from raydistill.classify.training import (PAPER_TRAINING, TOY_TRAINING,  # noqa: E402
                                          make_optimizer, train_one_epoch)
from raydistill.config import FinetuneConfig  # noqa: E402
from raydistill.embedding.videomae import tiny_videomae_config  # noqa: E402
from raydistill.embedding.videomae_v2 import (DEFAULT_FRAMES, DEFAULT_SIZE,  # noqa: E402
                                              LAYER_NORM_EPS, VIT_HEADS)
from raydistill.generation.latte import (LATTE_XL_2, TINY_LATTE,  # noqa: E402
                                         ClassConditionalLatte)
from raydistill.generation.synthesis import synthesize  # noqa: E402
from raydistill.generation.training import new_state, train_step  # noqa: E402
from raydistill.generation.vae import (SD_VAE_ARCHITECTURE, TINY_VAE,  # noqa: E402
                                       decode_latents)
from raydistill.selection import vst_selector  # noqa: E402

MODES = ("fp32", "bf16", "compile", "no_sdpa")
MODE_TITLES = {"fp32": "fp32", "bf16": "bf16 autocast", "compile": "bf16 + torch.compile",
               "no_sdpa": "bf16, SDPA off"}
RUN_ORDER = ("bf16", "fp32", "no_sdpa", "compile")
BF16_DENSE_PEAK_TFLOPS = ((r"H100", 989), (r"H200", 989), (r"A100", 312), (r"\bL4\b", 121),
                          (r"A10G", 125))
"""bf16 dense tensor-core peaks by GPU name (regular expression; H100 as SXM)."""
ACTORS_RESERVE_S = 110
"""Seconds of the budget kept for the last table, the Ray Data actors' busy share."""
COMPILE_RESERVE_S = 90
"""A GPU compile cell starts only with this much of the budget left."""
GENERATION_SETTINGS = (("DDIM 50", "ddim", 50), ("DPM-Solver 25", "dpm", 25),
                       ("DDPM 250", "ddpm", 250))
GUIDANCE = 4.0


@dataclass(frozen=True)
class Scale:
    """Shapes and sizes of one run: the paper's (GPU) or tiny ones (``--tiny``, CPU)."""

    name: str
    latte: dict
    num_classes: int
    vae: dict
    generate_batch: int
    probe_steps: tuple[int, int]
    videomae_base: dict
    videomae_giant: dict
    embed_batch: dict
    vst_videos: int
    vst_latent: tuple[int, int, int, int]
    vst_selector: dict
    classifiers: object
    classifier_training: object
    c3d_batch: int
    warmup: int
    repeats: int
    cell_cap_s: float


def videomae_config_kwargs(width: int, depth: int, heads: int, mlp: int, patch: int,
                           frames: int, size: int, eps: float = 1e-12) -> dict:
    """``VideoMAEConfig`` keyword arguments of a mean-pooled VideoMAE encoder."""
    return dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                intermediate_size=mlp, patch_size=patch, num_frames=frames, image_size=size,
                tubelet_size=2, layer_norm_eps=eps, use_mean_pooling=True)


def tiny_videomae_kwargs(width: int, depth: int, heads: int, mlp: int) -> dict:
    """The project's tiny VideoMAE config (8 frames of 32²), at the given width and depth."""
    config = tiny_videomae_config(["a", "b"], num_frames=8, size=32)
    return videomae_config_kwargs(width, depth, heads, mlp, config.patch_size, config.num_frames,
                                  config.image_size)


PAPER = Scale(
    name="paper", latte=LATTE_XL_2, num_classes=101, vae=SD_VAE_ARCHITECTURE, generate_batch=8,
    probe_steps=(2, 6),
    videomae_base=videomae_config_kwargs(768, 12, 12, 3072, 16, 16, 224),
    videomae_giant=videomae_config_kwargs(1408, 40, VIT_HEADS[1408], 6144, 14, DEFAULT_FRAMES,
                                          DEFAULT_SIZE, LAYER_NORM_EPS),
    embed_batch={"base": 32, "giant": 8}, vst_videos=100, vst_latent=(16, 4, 32, 32),
    vst_selector={}, classifiers=PAPER_CLASSIFIERS, classifier_training=PAPER_TRAINING,
    c3d_batch=16, warmup=1, repeats=3, cell_cap_s=8.0)
TINY = Scale(
    name="tiny", latte=TINY_LATTE, num_classes=4, vae=TINY_VAE, generate_batch=2,
    probe_steps=(2, 6), videomae_base=tiny_videomae_kwargs(64, 2, 4, 128),
    videomae_giant=tiny_videomae_kwargs(96, 3, 4, 256), embed_batch={"base": 2, "giant": 2},
    vst_videos=12, vst_latent=(8, 4, 8, 8),
    vst_selector={"width": 8, "levels": 2, "feature_dim": 16, "norm_groups": 4},
    classifiers=TOY_CLASSIFIERS, classifier_training=TOY_TRAINING, c3d_batch=4, warmup=1,
    repeats=2, cell_cap_s=0.3)


@dataclass
class Result:
    """One measured cell: ``value`` in the row's unit, optional details, the model FLOP/s
    achieved (for MFU) and the peak GPU memory."""

    value: float
    details: list[str] = field(default_factory=list)
    flops_per_second: float | None = None
    peak_gib: float | None = None


@dataclass
class Bench:
    """What every cell needs: device, scale, peak, budget, and models shared between cells."""

    device: torch.device
    scale: Scale
    peak_flops: float | None
    budget_s: float
    compile_on_cpu: bool
    max_batch: int
    started: float = PROCESS_STARTED
    shared: dict = field(default_factory=dict)
    found_batch: dict = field(default_factory=dict)

    def seconds_left(self) -> float:
        """Budget seconds not yet spent."""
        return self.budget_s - (time.perf_counter() - self.started)

    def synchronize(self) -> None:
        """Wait for the device's queued work (no-op on CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def timed(self, step: Callable[[], object], warmup: int | None = None) -> float:
        """Median seconds of ``step()`` after ``warmup`` untimed calls (the scale's by default):
        up to ``repeats`` timed calls, fewer once ``cell_cap_s`` seconds of them have passed."""
        for _ in range(self.scale.warmup if warmup is None else warmup):
            step()
        self.synchronize()
        times: list[float] = []
        while len(times) < self.scale.repeats and sum(times) < self.scale.cell_cap_s:
            started = time.perf_counter()
            step()
            self.synchronize()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def peak_memory_gib(self) -> float | None:
        """``torch.cuda.max_memory_allocated`` since the cell started, GiB (None on CPU)."""
        return torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else None

    def build(self, constructor: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """``constructor()`` with its tensors made on the device (fast init of large models)."""
        with torch.device(self.device):
            model = constructor()
        return model.to(self.device)


@dataclass
class Row:
    """One table row: ``measure(mode, bench) -> Result`` per column."""

    name: str
    workload: str
    unit: str
    measure: Callable[[str, Bench], Result]
    attends: bool = True
    has_flops: bool = False
    shares_models: bool = False
    cells: dict = field(default_factory=dict)


@contextlib.contextmanager
def precision(mode: str, device: torch.device):
    """bf16 autocast on ``device`` unless ``mode`` is fp32; in ``no_sdpa`` mode SDPA itself is
    limited to its unfused math backend (for modules with no other attention path)."""
    with contextlib.ExitStack() as stack:
        if mode != "fp32":
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        if mode == "no_sdpa":
            stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        yield


def prepared(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``model`` as ``mode`` runs it: compiled for ``compile``, diffusers' plain (non-SDPA)
    ``AttnProcessor`` in every ``Attention`` for ``no_sdpa``, else unchanged."""
    if mode == "no_sdpa":
        for module in model.modules():
            if isinstance(module, Attention):
                module.set_processor(AttnProcessor())
    return torch.compile(model) if mode == "compile" else model


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device running out of memory."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def release_memory() -> None:
    """Free what the last attempt left on the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def largest_batch(step_at: Callable[[int], object], limit: int) -> int:
    """The largest batch ``step_at(batch)`` runs at without running out of memory, doubling
    from 1 up to ``limit`` (each try is one untimed step). Raises when batch 1 does not fit."""
    fitted, batch = 0, 1
    while batch <= limit:
        try:
            step_at(batch)
        except Exception as error:
            if not fitted or not is_out_of_memory(error):
                raise
            break
        fitted, batch = batch, batch * 2
    release_memory()
    return fitted


def halved_batch(step_at: Callable[[int], object], start: int) -> int:
    """``start``, halved until ``step_at(batch)`` runs without running out of memory (each try
    is one untimed step). Raises when batch 1 does not fit."""
    batch = start
    while True:
        try:
            step_at(batch)
            return batch
        except Exception as error:
            if batch == 1 or not is_out_of_memory(error):
                raise
        release_memory()  # outside the except block: its traceback holds the failed tensors
        batch //= 2


# --- Latte ---------------------------------------------------------------------------------

def latte_shape(latte: dict) -> tuple[int, int, int]:
    """(frames F, patches per frame N, width D) of a Latte config."""
    patches = (latte["sample_size"] // latte["patch_size"]) ** 2
    return latte["num_frames"], patches, latte["hidden_size"]


def latte_training_flops(model: ClassConditionalLatte) -> float:
    """Model FLOPs of one training sample (forward + backward = 3 × forward).

    6·(P_token·F·N + P_adaLN,spatial·F + P_adaLN,temporal·N + P_out1·F)
    + 12·D·(L/2)·(F·N² + N·F²): per-token parameters (attention, MLP, patch embedding, output
    projection) see all F·N tokens; the adaLN modulations see one row per frame (spatial
    blocks, final layer) or per patch position (temporal blocks); attention scores and their
    weighted sum cost 4·D·S² per sequence of length S forward, over F sequences of N (spatial)
    and N of F (temporal).
    """
    config = model.config
    frames, patches, width = latte_shape(dict(config))

    def count(modules) -> int:
        return sum(p.numel() for module in modules for p in module.parameters())

    blocks = [*model.transformer_blocks, *model.temporal_transformer_blocks]
    per_token = count([b.attn1 for b in blocks] + [b.ff for b in blocks]
                      + [model.pos_embed, model.proj_out_2])
    spatial_ada = count([b.norm1 for b in model.transformer_blocks])
    temporal_ada = count([b.norm1 for b in model.temporal_transformer_blocks])
    linear = (per_token * frames * patches + spatial_ada * frames + temporal_ada * patches
              + count([model.proj_out_1]) * frames)
    attention = 12 * width * (config.depth // 2) * (frames * patches**2 + patches * frames**2)
    return 6 * linear + attention


def latte_model(bench: Bench) -> ClassConditionalLatte:
    """An untrained class-conditional Latte of the scale's config, on the device."""
    torch.manual_seed(0)
    return bench.build(lambda: ClassConditionalLatte(num_classes=bench.scale.num_classes,
                                                     **bench.scale.latte))


def latte_training(mode: str, bench: Bench) -> Result:
    """Samples/s of ``train_step`` on random latents (B, F, 4, h, w) at the largest batch."""
    model = latte_model(bench)
    flops = latte_training_flops(model)
    finetune = FinetuneConfig()
    state = new_state(prepared(model, mode), finetune)
    latte = bench.scale.latte
    shape = (latte["num_frames"], latte["in_channels"], latte["sample_size"],
             latte["sample_size"])
    inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def step_at(batch: int) -> None:
        if batch not in inputs:
            inputs.clear()
            inputs[batch] = (torch.randn(batch, *shape, device=bench.device),
                             torch.randint(bench.scale.num_classes, (batch,), device=bench.device))
        latents, labels = inputs[batch]
        with precision(mode, bench.device):
            train_step(state, latents, labels, finetune, seed=0)

    known = bench.found_batch.get("latte") if mode == "compile" else None
    batch = halved_batch(step_at, known) if known else largest_batch(step_at, bench.max_batch)
    if mode == "bf16":
        bench.found_batch["latte"] = batch
    seconds = bench.timed(lambda: step_at(batch))
    return Result(batch / seconds, [f"batch {batch}"], flops * batch / seconds,
                  bench.peak_memory_gib())


# --- generation ----------------------------------------------------------------------------

def generation_models(mode: str, bench: Bench):
    """(Latte, VAE) for sampling in ``mode``, built (and compiled) once per mode and shared by
    the generation rows."""
    key = ("generation", mode)
    if key not in bench.shared:
        bench.shared.clear()
        model = prepared(latte_model(bench).eval(), mode)
        vae = bench.build(lambda: AutoencoderKL(**bench.scale.vae)).eval()
        if mode == "no_sdpa":
            prepared(vae, mode)
        if mode == "compile":
            vae.decoder = torch.compile(vae.decoder)
        bench.shared[key] = (model, vae)
    return bench.shared[key]


def generation(scheduler: str, steps: int) -> Callable[[str, Bench], Result]:
    """The measurement of videos/hour with ``scheduler`` at ``steps`` steps (see the notes)."""

    def measure(mode: str, bench: Bench) -> Result:
        model, vae = generation_models(mode, bench)
        batch = bench.scale.generate_batch
        labels = [index % bench.scale.num_classes for index in range(batch)]
        seeds = list(range(batch))

        def sample(count: int):
            with precision(mode, bench.device):
                return synthesize(model, vae, labels, seeds, scheduler, count, GUIDANCE)

        low, high = bench.scale.probe_steps
        seconds_low = bench.timed(lambda: sample(low))
        seconds_high = bench.timed(lambda: sample(high), warmup=0)
        per_step = max(seconds_high - seconds_low, 0.0) / (high - low)
        latents = torch.randn(batch, *latte_shape_tensor(bench.scale.latte), device=bench.device)
        with precision(mode, bench.device):
            decode_seconds = bench.timed(lambda: decode_latents(vae, latents), warmup=0)
        fixed = max(seconds_low - low * per_step, decode_seconds)
        per_batch = fixed + steps * per_step
        return Result(3600 * batch / per_batch, [f"VAE {100 * decode_seconds / per_batch:.0f} %"],
                      None, bench.peak_memory_gib())

    return measure


def latte_shape_tensor(latte: dict) -> tuple[int, int, int, int]:
    """(F, C, h, w) of a Latte config's latents."""
    return (latte["num_frames"], latte["in_channels"], latte["sample_size"],
            latte["sample_size"])


# --- VideoMAE ------------------------------------------------------------------------------

def videomae_tokens(kwargs: dict) -> int:
    """Tokens T of one clip: (frames / tubelet) · (size / patch)²."""
    return (kwargs["num_frames"] // kwargs["tubelet_size"]) * (
        kwargs["image_size"] // kwargs["patch_size"]) ** 2


def videomae_forward_flops(model, kwargs: dict) -> float:
    """Model FLOPs of one clip's forward: 2·P·T + 4·D·L·T² (P: encoder and patch-embedding
    parameters, T tokens, D width, L layers)."""
    parameters = sum(p.numel() for p in model.parameters())
    tokens = videomae_tokens(kwargs)
    return (2 * parameters * tokens
            + 4 * kwargs["hidden_size"] * kwargs["num_hidden_layers"] * tokens**2)


def videomae_embedding(size: str) -> Callable[[str, Bench], Result]:
    """The measurement of videos/s of the embed stage's forward for VideoMAE ``size``."""

    def measure(mode: str, bench: Bench) -> Result:
        from transformers import VideoMAEConfig, VideoMAEModel

        kwargs = getattr(bench.scale, f"videomae_{size}")
        config = VideoMAEConfig(**kwargs, attn_implementation=(
            "eager" if mode == "no_sdpa" else "sdpa"))
        torch.manual_seed(0)
        model = bench.build(lambda: VideoMAEModel(config)).eval()
        flops = videomae_forward_flops(model, kwargs)
        forward = prepared(model, mode)
        clip = (kwargs["num_frames"], 3, kwargs["image_size"], kwargs["image_size"])
        inputs: dict[int, torch.Tensor] = {}

        @torch.no_grad()
        def embed(batch: int) -> torch.Tensor:
            if batch not in inputs:
                inputs.clear()
                inputs[batch] = torch.randn(batch, *clip, device=bench.device)
            with precision(mode, bench.device):
                return forward(inputs[batch]).last_hidden_state.mean(1)

        batch = halved_batch(embed, bench.scale.embed_batch[size])
        seconds = bench.timed(lambda: embed(batch))
        return Result(batch / seconds, [f"batch {batch}"], flops * batch / seconds,
                      bench.peak_memory_gib())

    return measure


# --- VST-UNet and C3D ----------------------------------------------------------------------

def vst_unet_training(mode: str, bench: Bench) -> Result:
    """Seconds of one ``train_epoch`` over one class of (N, T, 4, h, w) latents (VPC 5)."""
    scale = bench.scale
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(scale.vst_videos, *scale.vst_latent, generator=generator)
    batches, _ = vst_selector.make_class_batches(latents, np.zeros(scale.vst_videos, np.int64))
    selector = vst_selector.VSTUNetSelector(n_per_class=5, **scale.vst_selector)
    lambda_div, lambda_rep = selector.lambdas()
    model = vst_selector.build_model(selector.model_config(scale.vst_latent[1], 101), 0)
    model = model.to(bench.device)
    optimizer = vst_selector.make_optimizer(model, selector.lr, selector.score_lr_scale)
    trained = prepared(model, mode)
    epochs = itertools.count()

    def step() -> None:
        with precision(mode, bench.device):
            vst_selector.train_epoch(
                trained, optimizer, batches, n_select=5, lambda_div=lambda_div,
                lambda_rep=lambda_rep, generator=vst_selector.epoch_generator(0, next(epochs)),
                n_samples=selector.n_samples, reward_space=selector.reward_space,
                rep_distance=selector.rep_distance, device=bench.device)

    return Result(bench.timed(step), [], None, bench.peak_memory_gib())


def c3d_training(mode: str, bench: Bench) -> Result:
    """Seconds of one ``train_one_epoch`` step of C3D on a batch of uint8 clips (B, T, S, S, 3)
    already on the device (augmented there, as the evaluate stage's GPU workers do)."""
    scale = bench.scale
    torch.manual_seed(0)
    model = bench.build(lambda: scale.classifiers.build("c3d", 101))
    optimizer = make_optimizer(model, scale.classifier_training)
    frames, size = scale.classifiers.frames, scale.classifiers.size
    clips = torch.randint(0, 256, (scale.c3d_batch, frames, size, size, 3), dtype=torch.uint8,
                          device=bench.device)
    labels = torch.randint(101, (scale.c3d_batch,), device=bench.device)
    generator = torch.Generator().manual_seed(0)
    trained = prepared(model, mode)

    def step() -> None:
        with precision(mode, bench.device):
            train_one_epoch(trained, optimizer, [(clips, labels)], generator,
                            scale.classifier_training.augmentation)

    return Result(bench.timed(step), [], None, bench.peak_memory_gib())


# --- the suite -----------------------------------------------------------------------------

def suite_rows(scale: Scale) -> list[Row]:
    """The rows measured, with their workloads described at ``scale``."""
    latte, vae_side = scale.latte, scale.latte["sample_size"] * (
        2 ** (len(scale.vae["block_out_channels"]) - 1))
    frames, _, _ = latte_shape(latte)
    latents = "×".join(str(n) for n in latte_shape_tensor(latte))
    name = "Latte-XL/2" if scale.name == "paper" else "tiny Latte"
    rows = [Row("Latte training", f"{name}, {latents} latents, largest batch that fits",
                "samples/s", latte_training, has_flops=True)]
    for title, scheduler, steps in GENERATION_SETTINGS:
        rows.append(Row(f"generation {title}",
                        f"{name} + {'SD' if scale.name == 'paper' else 'tiny'} VAE decode, CFG "
                        f"{GUIDANCE:g}, batch {scale.generate_batch}, {frames}×{vae_side}²",
                        "videos/h", generation(scheduler, steps), shares_models=True))
    for size, title in (("base", "VideoMAE-base embedding"),
                        ("giant", "ViT-g-sized VideoMAE embedding")):
        kwargs = getattr(scale, f"videomae_{size}")
        rows.append(Row(title, f"width {kwargs['hidden_size']}, {kwargs['num_hidden_layers']} "
                        f"layers, {kwargs['num_frames']}×{kwargs['image_size']}², patch "
                        f"{kwargs['patch_size']}", "videos/s", videomae_embedding(size),
                        has_flops=True))
    vst = "×".join(str(n) for n in (scale.vst_videos, *scale.vst_latent))
    rows.append(Row("VST-UNet training", f"one class {vst}, VPC 5", "s/step", vst_unet_training))
    c3d = scale.classifiers
    rows.append(Row("C3D training", f"{c3d.frames}×{c3d.size}², batch {scale.c3d_batch}",
                    "s/step", c3d_training, attends=False))
    return rows


def first_line(error: BaseException, limit: int = 90) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters, table-safe."""
    message = (str(error).strip().splitlines() or [""])[0]
    text = f"{type(error).__name__}: {message}".replace("|", "/")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def skip_reason(row: Row, mode: str, bench: Bench) -> str | None:
    """Why a cell is not measured, or None."""
    if mode == "no_sdpa" and not row.attends:
        return "n/a: no attention"
    if mode == "compile" and bench.device.type == "cpu" and not bench.compile_on_cpu:
        return "skipped: torch.compile on CPU under --tiny (too slow for 60 s; --compile-on-cpu)"
    reserve = COMPILE_RESERVE_S if mode == "compile" and bench.device.type == "cuda" else 0
    if bench.seconds_left() <= reserve:
        return "skipped: time budget"
    return None


def forget_models(bench: Bench) -> None:
    """Drop the shared models and torch.compile's caches."""
    bench.shared.clear()
    torch._dynamo.reset()
    release_memory()


def run_cell(row: Row, mode: str, bench: Bench) -> Result | str:
    """Measure one cell; an error (out of memory, compile) becomes its first line."""
    if not row.shares_models and bench.shared:
        forget_models(bench)
    reason = skip_reason(row, mode, bench)
    if reason:
        return reason
    release_memory()
    if bench.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        return row.measure(mode, bench)
    except Exception as error:  # one cell's failure must not stop the suite
        bench.shared.clear()
        return ("OOM: " if is_out_of_memory(error) else "") + first_line(error)
    finally:
        if mode == "compile" and not row.shares_models:
            torch._dynamo.reset()
        release_memory()


def run_suite(rows: list[Row], bench: Bench, modes: tuple[str, ...] = MODES) -> None:
    """Fill every row's cells of ``modes``, column by column in :data:`RUN_ORDER`."""
    for mode in (mode for mode in RUN_ORDER if mode in modes):
        for row in rows:
            started = time.perf_counter()
            row.cells[mode] = run_cell(row, mode, bench)
            print(f"[{time.perf_counter() - bench.started:6.1f} s] {row.name}, "
                  f"{MODE_TITLES[mode]}: {cell_text(row.cells[mode])} "
                  f"({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)
        forget_models(bench)


def number(value: float) -> str:
    """A measured value with 3 significant digits (whole numbers from 100 up)."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def cell_text(cell: Result | str) -> str:
    """A table cell: the value first, then its details and the peak memory."""
    if isinstance(cell, str):
        return cell
    parts = [number(cell.value), *cell.details]
    if cell.peak_gib is not None:
        parts.append(f"{cell.peak_gib:.1f} GiB")
    return " · ".join(parts)


def utilisation_text(row: Row, bench: Bench) -> str:
    """The MFU column: bf16 autocast and compiled MFU against the bf16 dense peak."""
    if not row.has_flops:
        return "n/a"
    if bench.device.type == "cpu":
        return "—"
    if bench.peak_flops is None:
        return ""
    parts = [f"{title} {100 * cell.flops_per_second / bench.peak_flops:.0f} %"
             for mode, title in (("bf16", "bf16"), ("compile", "compile"), ("fp32", "fp32"))
             if isinstance(cell := row.cells.get(mode), Result)]
    return " · ".join(parts) or "—"


def machine_heading(bench: Bench) -> str:
    """``device · torch · CUDA · date`` for the table's heading."""
    if bench.device.type == "cuda":
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU, {os.cpu_count()} cores ({platform.machine()}), no GPU"
    return (f"{device} · torch {torch.__version__} · CUDA {torch.version.cuda or 'none'} · "
            f"{time.strftime('%Y-%m-%d')}")


def peak_text(bench: Bench) -> str:
    """The peak the MFU is measured against, in words."""
    if bench.device.type == "cpu":
        return "no GPU: MFU is not measured (—)"
    if bench.peak_flops is None:
        return "peak unknown for this GPU: MFU left blank"
    return f"bf16 dense peak {bench.peak_flops / 1e12:.0f} TFLOPS"


def render(rows: list[Row], bench: Bench, wall_s: float) -> str:
    """The Markdown report: heading, table, notes."""
    columns = ["measurement", "workload", "unit", *(MODE_TITLES[m] for m in MODES),
               "MFU (bf16 dense peak)"]
    lines = [f"## GPU suite{' (--tiny)' if bench.scale.name == 'tiny' else ''}: "
             f"{machine_heading(bench)}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row.name, row.workload, row.unit,
                 *(cell_text(row.cells.get(mode, "not run")) for mode in MODES),
                 utilisation_text(row, bench)]
        lines.append("| " + " | ".join(cells) + " |")
    low, high = bench.scale.probe_steps
    lines += ["", "Notes:",
              f"- {peak_text(bench)}; MFU = model FLOPs per second / peak.",
              "- Latte training FLOPs per sample: 6·(P_token·F·N + P_adaLN,spatial·F + "
              "P_adaLN,temporal·N + P_out1·F) + 12·D·(L/2)·(F·N² + N·F²) (F frames, N patches "
              "per frame, D width, L blocks; P_token: attention, MLP, patch in/out parameters); "
              "i.e. 6 × parameters × tokens where each parameter sees tokens, plus attention. "
              "VideoMAE forward FLOPs per clip: 2·P·T + 4·D·L·T² (T tokens).",
              "- Columns: fp32 = torch defaults (TF32 off for matmuls, cuDNN convolutions may "
              "use TF32); bf16 = torch.autocast(bfloat16) over fp32 weights (the generate "
              "stage instead casts the Latte's weights to bf16); compile = the same with the "
              "model (and the VAE decoder) through torch.compile, compile time excluded; SDPA "
              "off = bf16 with diffusers' AttnProcessor (Latte, SD VAE) or VideoMAE's eager "
              "attention, and SDPA limited to its math backend elsewhere (VST-UNet's "
              "nn.MultiheadAttention).",
              f"- Generation: `synthesize` timed at {low} and {high} sampling steps gives the "
              "time per step (one forward of the class and null-class halves as one batch, "
              "plus the scheduler step) and the fixed part (noise, VAE decode, copy to host); "
              "videos/h = 3600·batch / (fixed + steps · per step). VAE share: "
              "`decode_latents` timed alone / that total.",
              f"- Each cell: {bench.scale.warmup} warm-up step(s), then the median of up to "
              f"{bench.scale.repeats} steps timed with torch.cuda.synchronize (fewer once "
              f"{bench.scale.cell_cap_s:g} s are spent); batches that do not fit are halved; "
              "GiB = torch.cuda.max_memory_allocated in the cell.",
              f"- Suite wall time {wall_s:.0f} s (budget {bench.budget_s:.0f} s)"
              + ("; --tiny: tiny configs on one CPU thread, timings only prove the code runs."
                 if bench.scale.name == "tiny" else ".")]
    return "\n".join(lines) + "\n"


def actors_table(tiny: bool, bench: Bench) -> str:
    """The Ray Data actors' busy share (:mod:`actor_busy`) at the suite's scale, as Markdown;
    its failure is one line in its place (the other tables stand)."""
    import actor_busy

    forget_models(bench)
    scale = actor_busy.TINY if tiny else actor_busy.PAPER
    started = time.perf_counter()
    try:
        table = actor_busy.render(actor_busy.measure_with_ray(scale), scale)
    except Exception as error:  # noqa: BLE001 - reported in the table's place
        return f"Ray Data actors: failed: {first_line(error)}\n"
    return table + f"\n({time.perf_counter() - started:.0f} s, local Ray started included)\n"


def bf16_peak_flops(device: torch.device) -> float | None:
    """The GPU's bf16 dense peak FLOP/s from :data:`BF16_DENSE_PEAK_TFLOPS`, None if unknown."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    for pattern, tflops in BF16_DENSE_PEAK_TFLOPS:
        if re.search(pattern, name):
            return tflops * 1e12
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_suite.md"))
    parser.add_argument("--tiny", action="store_true",
                        help="tiny configs on CPU (the same code paths), under a minute")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="skip the remaining cells once this many seconds are spent")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="largest Latte training batch tried (default 256; 4 with --tiny)")
    parser.add_argument("--compile-on-cpu", action="store_true",
                        help="run the torch.compile column on CPU too")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated columns to measure, of {','.join(MODES)}")
    parser.add_argument("--rows", default="",
                        help="comma-separated parts of the row names to measure (default all)")
    parser.add_argument("--no-actors", action="store_true",
                        help="leave out the last table (the generate and embed stages' actors "
                             "under a local Ray, benchmarks/actor_busy.py)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        print("no CUDA GPU: running the paper shapes on CPU would take hours; use --tiny",
              file=sys.stderr)
        sys.exit(2)
    if args.tiny:  # tiny ops on a shared machine: one thread, no OpenMP barrier stalls
        torch.set_num_threads(1)
    reserve = 0.0 if args.no_actors else ACTORS_RESERVE_S
    bench = Bench(device, TINY if args.tiny else PAPER, bf16_peak_flops(device),
                  args.budget_s - reserve, args.compile_on_cpu,
                  args.max_batch or (4 if args.tiny else 256))
    wanted = [part.lower() for part in args.rows.split(",") if part]
    rows = [row for row in suite_rows(bench.scale)
            if not wanted or any(part in row.name.lower() for part in wanted)]
    run_suite(rows, bench, tuple(args.modes.split(",")))
    report = render(rows, bench, time.perf_counter() - bench.started)
    if not args.no_actors:
        report += "\n" + actors_table(args.tiny, bench)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
