"""VideoMAE embeddings of whole videos, for the training-free selectors.

A video becomes one vector: the mean-pooled last hidden state of ``VideoMAEModel`` (VideoMAE has
no pooled output), or, for a ``VideoMAEForVideoClassification`` action classifier (the paper's
choice: VideoMAE fine-tuned on Kinetics), its ``fc_norm`` features — the normalised mean that its
classifier head reads. A classifier whose labels name the run's classes also gives each video's
probability for its own class (``mae_score`` ranks by it).

No weights can be downloaded here: toy runs train a tiny VideoMAE classifier on their real
training clips (:func:`train_videomae_classifier`) and embed with it.

transformers is imported where a model is built or loaded, not with this module: selection and
evaluation workers import this module without building a model, and transformers adds seconds to
every worker's start.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import torch

from raydistill.accel import autocast, compiled
from raydistill.classify.augment import clips_on
from raydistill.layout import run_model_name

if TYPE_CHECKING:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEModel

FEATURES = ("auto", "mean", "fc_norm")


def embedding_name(model_source: str | None, run_classifier: str = "videomae") -> str:
    """The folder name of a model's embeddings: the last part of its path or hub id, or
    ``{run_classifier}-run`` (``videomae-run``, ``c3d-run``) for the classifier trained inside
    the run (``model_source`` None)."""
    if model_source is None:
        return run_model_name(run_classifier)
    last = model_source.rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last) or "model"


def tiny_videomae_config(class_names: list[str], num_frames: int, size: int) -> VideoMAEConfig:
    """A VideoMAE classifier config small enough to train on CPU in seconds: 2 layers of width
    64, 8² patches (``size // 4`` when smaller), tubelets of 2 frames, mean pooling."""
    from transformers import VideoMAEConfig

    patch = min(8, max(1, size // 4))
    return VideoMAEConfig(
        image_size=size, patch_size=patch, num_frames=num_frames,
        tubelet_size=2 if num_frames % 2 == 0 else 1, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128, use_mean_pooling=True,
        num_labels=len(class_names), id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)})


def _normalised_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def class_index_map(id2label: dict, class_names: list[str]) -> np.ndarray | None:
    """For each run class, the index of the classifier output naming it; None unless every class
    is found (names compared case- and punctuation-insensitively)."""
    by_name = {_normalised_name(str(name)): int(index) for index, name in id2label.items()}
    found = [by_name.get(_normalised_name(name)) for name in class_names]
    if any(index is None for index in found):
        return None
    return np.asarray(found, dtype=np.int64)


def pixel_values(clips: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) → normalised float (B, T, 3, H, W) on ``device``, VideoMAE's
    input (the uint8 clips are copied to the device, the conversion runs there)."""
    frames = clips_on(clips, device).to(torch.float32).div_(255.0)
    frames.sub_(torch.as_tensor(mean, dtype=torch.float32, device=frames.device))
    frames.div_(torch.as_tensor(std, dtype=torch.float32, device=frames.device))
    return frames.permute(0, 1, 4, 2, 3).contiguous()


def _normalisation(source: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std from the model's ``preprocessor_config.json``, ImageNet's when it has none
    (VideoMAE checkpoints use ImageNet's, as does VideoMAE V2's fine-tuning data pipeline)."""
    from transformers.image_processing_base import ImageProcessingMixin
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from raydistill.embedding.videomae_v2 import is_original_checkpoint

    try:
        settings = ({} if is_original_checkpoint(source)
                    else ImageProcessingMixin.get_image_processor_dict(source)[0])
    except (OSError, ValueError):
        settings = {}
    return (np.asarray(settings.get("image_mean", IMAGENET_DEFAULT_MEAN)),
            np.asarray(settings.get("image_std", IMAGENET_DEFAULT_STD)))


def load_videomae(source: str) -> VideoMAEModel | VideoMAEForVideoClassification:
    """A VideoMAE from a folder or hub id (the classifier when the checkpoint is one), or from an
    original VideoMAE V2 checkpoint file (:mod:`raydistill.embedding.videomae_v2`: a classifier
    of 16×224² clips whose head names no classes)."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEModel

    from raydistill.embedding.videomae_v2 import (is_original_checkpoint, load_original_videomae,
                                                  set_fc_norm_eps)

    if is_original_checkpoint(source):
        return load_original_videomae(source)
    config = VideoMAEConfig.from_pretrained(source)
    is_classifier = any("ForVideoClassification" in name for name in config.architectures or [])
    if not is_classifier:
        return VideoMAEModel.from_pretrained(source)
    return set_fc_norm_eps(VideoMAEForVideoClassification.from_pretrained(source))


def videomae_input_shape(source: str) -> tuple[int, int]:
    """(frames, size) of the clips a VideoMAE takes, from its saved config alone (an original
    V2 checkpoint: 16×224², as :func:`load_videomae` builds it)."""
    from raydistill.embedding.videomae_v2 import (DEFAULT_FRAMES, DEFAULT_SIZE,
                                                  is_original_checkpoint)

    if is_original_checkpoint(source):
        return DEFAULT_FRAMES, DEFAULT_SIZE
    from transformers import VideoMAEConfig

    config = VideoMAEConfig.from_pretrained(source)
    return int(config.num_frames), int(config.image_size)


class VideoMAEEmbedder:
    """Embeds uint8 clips with a VideoMAE; usable alone or as the model of a Ray Data actor.
    On a GPU it runs under bf16 autocast unless ``mixed_precision`` is ``no``, and through
    ``torch.compile`` with ``compile``.

    ``features`` is ``mean``, ``fc_norm`` or ``auto``; ``class_names`` are the run's classes, used
    to read each video's own-class probability from a classifier whose labels name them.
    """

    def __init__(self, source: str, class_names: list[str], features: str = "auto",
                 batch_size: int = 16, device: str | None = None,
                 mixed_precision: str = "bf16", compile: bool = False):
        if features not in FEATURES:
            raise ValueError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        from transformers import VideoMAEForVideoClassification

        self.model = load_videomae(source).to(self.device).eval()
        self.is_classifier = isinstance(self.model, VideoMAEForVideoClassification)
        if features == "fc_norm" and not (self.is_classifier and self.model.fc_norm is not None):
            raise ValueError(f"{source}: fc_norm features need a VideoMAE classifier with mean "
                             "pooling; use features 'mean'")
        self.features = ("fc_norm" if self.is_classifier and self.model.fc_norm is not None
                         else "mean") if features == "auto" else features
        self.class_index = (class_index_map(self.model.config.id2label, class_names)
                            if self.is_classifier else None)
        self.mean, self.std = _normalisation(source)
        self.batch_size = batch_size
        self.mixed_precision = mixed_precision
        self.forward = compiled(self._forward, compile, self.device)

    @property
    def num_frames(self) -> int:
        """Frames per clip the model takes."""
        return int(self.model.config.num_frames)

    @property
    def size(self) -> int:
        """Side of the square frames the model takes."""
        return int(self.model.config.image_size)

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, clips: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Embed clips (B, T, H, W, 3) uint8 of classes ``labels`` (B,).

        Returns ``embedding`` float32 (B, D), ``score`` float32 (B,): the probability of each
        video's own class, NaN when the model cannot tell (no classifier naming the classes), and
        ``predicted`` int32 (B,): the run class the classifier ranks first among the run's
        classes, -1 when it cannot tell (what the report's class fidelity counts).
        """
        embeddings, scores, predicted = [], [], []
        for start in range(0, len(clips), self.batch_size):
            pixels = pixel_values(clips[start:start + self.batch_size], self.mean, self.std,
                                  self.device)
            with autocast(self.device, self.mixed_precision):
                vectors, probabilities = self.forward(pixels)
            embeddings.append(vectors.float().cpu().numpy())
            batch_labels = np.asarray(labels[start:start + self.batch_size], dtype=np.int64)
            if probabilities is None or self.class_index is None:
                scores.append(np.full(len(batch_labels), np.nan, np.float32))
                predicted.append(np.full(len(batch_labels), -1, np.int32))
            else:
                run_classes = probabilities.float().cpu().numpy()[:, self.class_index]
                scores.append(run_classes[np.arange(len(batch_labels)), batch_labels]
                              .astype(np.float32))
                predicted.append(run_classes.argmax(axis=1).astype(np.int32))
        if not embeddings:
            return {"embedding": np.zeros((0, self.dim), np.float32),
                    "score": np.zeros(0, np.float32), "predicted": np.zeros(0, np.int32)}
        return {"embedding": np.concatenate(embeddings), "score": np.concatenate(scores),
                "predicted": np.concatenate(predicted)}

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        base = self.model.videomae if self.is_classifier else self.model
        hidden = base(pixels).last_hidden_state
        if not self.is_classifier:
            return hidden.mean(1), None
        pooled = hidden.mean(1)
        normed = self.model.fc_norm(pooled) if self.model.fc_norm is not None else hidden[:, 0]
        probabilities = self.model.classifier(normed).softmax(-1)
        return (normed if self.features == "fc_norm" else pooled), probabilities


def train_videomae_classifier(clips: np.ndarray, labels: np.ndarray, class_names: list[str],
                              steps: int, batch_size: int = 32, learning_rate: float = 1e-3,
                              seed: int = 0) -> tuple[VideoMAEForVideoClassification,
                                                      list[float]]:
    """Train a tiny VideoMAE classifier (:func:`tiny_videomae_config`) from scratch.

    ``clips`` uint8 (N, T, S, S, 3), ``labels`` (N,) in ``0..len(class_names)-1``. AdamW with a
    cosine schedule, seeded batches. Returns the model (eval mode) and the loss per step.
    """
    from transformers import VideoMAEForVideoClassification
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    torch.manual_seed(seed)
    config = tiny_videomae_config(class_names, clips.shape[1], clips.shape[2])
    model = VideoMAEForVideoClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    mean, std = np.asarray(IMAGENET_DEFAULT_MEAN), np.asarray(IMAGENET_DEFAULT_STD)
    generator = np.random.default_rng(seed)
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    losses = []
    for _ in range(steps):
        batch = generator.choice(len(clips), size=min(batch_size, len(clips)), replace=False)
        loss = model(pixel_values=pixel_values(clips[batch], mean, std),
                     labels=targets[batch]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return model.eval(), losses
