"""C3D embeddings: an action classifier trained on the run's own real training clips.

The paper embeds videos with an action classifier trained on Kinetics (VideoMAE V2). Offline, on
a toy run, no such model exists; the nearest stand-in is an action classifier trained on the run's
real training clips. A small C3D (the toy preset the evaluate stage trains) learns motion from a
few hundred clips far better than a tiny VideoMAE does (benchmarks/BENCHMARKS.md, "The toy that
shows the effect"), so ``embed.run_classifier: c3d`` trains one and embeds every video with its
penultimate features (fc7, 4096 × width wide). Its softmax also gives each video's own-class
probability (``mae_score``) and the class it files the video under (the report's class
fidelity of the synthetic pool).

Saved as one ``model.pt`` (state dict, geometry, class names) read back with
``weights_only=True``: a run directory may be shared, and a planted file must not run code.
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import torch

from raydistill.accel import autocast, compiled
from raydistill.classify.augment import clips_on, to_model_input
from raydistill.classify.models import TOY_CLASSIFIERS, build_classifier
from raydistill.classify.training import TOY_TRAINING, TrainSettings, fit_classifier

MODEL_FILE = "model.pt"
TOY_C3D_SPEC = TOY_CLASSIFIERS.spec("c3d")
"""The embedding C3D's spec: the toy evaluation preset's C3D (``classify.training_recipe``)."""


def train_c3d_classifier(clips: np.ndarray, labels: np.ndarray, num_classes: int,
                         settings: TrainSettings = TOY_TRAINING, seed: int = 0
                         ) -> tuple[torch.nn.Module, list[dict]]:
    """A toy-preset C3D trained on uint8 clips (N, T, H, W, 3) with labels (N,) in
    ``0..num_classes-1``; returns the model (eval mode) and its per-epoch history."""
    torch.manual_seed(seed)
    model = build_classifier("c3d", num_classes, TOY_C3D_SPEC["frames"], TOY_C3D_SPEC["size"],
                             **TOY_C3D_SPEC["options"])
    history = fit_classifier(model, clips, labels, dataclasses.replace(settings, seed=seed))
    return model.eval(), history


def save_c3d(model: torch.nn.Module, folder: str, class_names: list[str],
             history: list[dict] | None = None) -> None:
    """Write ``folder/model.pt``: the weights, the geometry to rebuild it, the class names and
    the training ``history`` (per-epoch ``epoch, loss, lr``)."""
    os.makedirs(folder, exist_ok=True)
    torch.save({"model": model.state_dict(), "class_names": list(class_names),
                "frames": model.frames, "size": model.size,
                "options": dict(TOY_C3D_SPEC["options"]),
                "history": list(history or [])},
               os.path.join(folder, MODEL_FILE))


def read_c3d_state(data: bytes) -> dict:
    """What :func:`save_c3d` wrote, from the file's bytes (weights only: no code runs)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _read_saved(folder: str) -> dict:
    with open(os.path.join(folder, MODEL_FILE), "rb") as file:
        return read_c3d_state(file.read())


def load_c3d(folder: str) -> tuple[torch.nn.Module, list[str]]:
    """The C3D saved by :func:`save_c3d` (eval mode) and its class names."""
    saved = _read_saved(folder)
    model = build_classifier("c3d", len(saved["class_names"]), int(saved["frames"]),
                             int(saved["size"]), **saved["options"])
    model.load_state_dict(saved["model"])
    return model.eval(), list(saved["class_names"])


def c3d_input_shape(folder: str) -> tuple[int, int]:
    """(frames, size) the saved C3D takes."""
    saved = _read_saved(folder)
    return int(saved["frames"]), int(saved["size"])


class C3DEmbedder:
    """Embeds uint8 clips with a saved C3D; the same interface (bf16 autocast and compile
    included) as :class:`~raydistill.embedding.videomae.VideoMAEEmbedder`."""

    def __init__(self, source: str, class_names: list[str], batch_size: int = 16,
                 device: str | None = None, mixed_precision: str = "bf16",
                 compile: bool = False):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, model_classes = load_c3d(source)
        self.model.to(self.device)
        self.mixed_precision = mixed_precision
        self.features = compiled(self.model.features, compile, self.device)
        if list(model_classes) != list(class_names):
            raise ValueError(f"{source}: the C3D was trained on classes {model_classes}, not the "
                             f"run's {class_names}")
        self.batch_size = batch_size

    @property
    def num_frames(self) -> int:
        """Frames per clip the model takes."""
        return int(self.model.frames)

    @property
    def size(self) -> int:
        """Side of the square frames the model takes."""
        return int(self.model.size)

    @property
    def dim(self) -> int:
        """Embedding size D (the fc7 width)."""
        return int(self.model.classifier[-1].in_features)

    @torch.no_grad()
    def __call__(self, clips: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Embed clips (B, T, H, W, 3) uint8 of classes ``labels`` (B,).

        Returns ``embedding`` float32 (B, D): the fc7 activations; ``score`` float32 (B,): the
        probability of each video's own class; ``predicted`` int32 (B,): the class it ranks first.
        """
        embeddings, probabilities = [], []
        for start in range(0, len(clips), self.batch_size):
            batch = to_model_input(clips_on(clips[start:start + self.batch_size], self.device),
                                   self.num_frames, self.size)
            with autocast(self.device, self.mixed_precision):
                features = self.model.classifier[:-1](self.features(batch)).float()
            embeddings.append(features.float().cpu().numpy())
            probabilities.append(self.model.classifier[-1](features).softmax(-1).float()
                                 .cpu().numpy())
        if not embeddings:
            return {"embedding": np.zeros((0, self.dim), np.float32),
                    "score": np.zeros(0, np.float32), "predicted": np.zeros(0, np.int32)}
        probs = np.concatenate(probabilities)
        own = probs[np.arange(len(probs)), np.asarray(labels, np.int64)]
        return {"embedding": np.concatenate(embeddings).astype(np.float32),
                "score": own.astype(np.float32),
                "predicted": probs.argmax(axis=1).astype(np.int32)}
