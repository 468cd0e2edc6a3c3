"""Own-class scores from a classifier other than the embedding model (``embed.score_model``).

``mae_score`` ranks a class's videos by the probability a classifier gives their own class, and
TAC-DT's ``min_score`` sets aside the videos it doubts. The paper's scorer is a VideoMAE action
classifier; the one that gives the features (``embed.model``, e.g. VideoMAE fine-tuned on
Kinetics) names Kinetics' classes, not UCF101's or HMDB51's, so its head can score nothing there,
and ``mae_score`` would fall back to a logistic regression on the embeddings. A separate scorer
fixes that: a ``VideoMAEForVideoClassification`` whose labels name the run's classes (e.g. a
VideoMAE fine-tuned on the target dataset), or ``run``: the classifier the run trains on its own
real training clips (``embed.run_classifier``). The embedding model still gives the features.

Which scorer produced a pool's scores is recorded beside its embeddings (``scorer.json``) and
said in the report.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from raydistill.config import SCORE_RUN, EmbedConfig
from raydistill.embedding.videomae import _normalised_name, class_index_map, embedding_name
from raydistill.video.decode import sample_indices


def embeddings_name(embed: EmbedConfig) -> str:
    """The folder name of the embeddings an ``embed`` section writes: the embedding model's
    (:func:`embedding_name`), with ``+score-{scorer}`` when ``score_model`` gives the scores (its
    scores differ, so its files live apart and selections made from them are not mixed)."""
    name = embedding_name(embed.model, embed.run_classifier)
    if embed.score_model is None:
        return name
    scorer = (embedding_name(None, embed.run_classifier) if embed.score_model == SCORE_RUN
              else embedding_name(embed.score_model))
    return f"{name}+score-{scorer}"


def scorer_description(embed: EmbedConfig) -> str:
    """Which model gives the pool's own-class scores, in words (for ``scorer.json``, the stage
    summary and the report)."""
    own = (f"the run's own {embed.run_classifier} classifier "
           f"(embed/{embedding_name(None, embed.run_classifier)}), trained on the real "
           "training clips")
    if embed.score_model == SCORE_RUN:
        return f"embed.score_model: {own}"
    if embed.score_model is not None:
        return f"embed.score_model {embed.score_model}"
    return own if embed.model is None else f"the classifier head of embed.model {embed.model}"


def score_model_problem(source: str, class_names: list[str]) -> str | None:
    """Why the VideoMAE at ``source`` cannot score the run's classes (not a classifier, or labels
    that miss some of ``class_names``), or None when it can. Reads its config only."""
    from transformers import VideoMAEConfig

    from raydistill.embedding.videomae_v2 import is_original_checkpoint

    if is_original_checkpoint(source):
        return (f"{source} is an original VideoMAE V2 checkpoint, whose file names no classes: "
                "convert it with its class names (python -m raydistill.embedding.videomae_v2 "
                f"{source} OUT_DIR --classes FILE) and give OUT_DIR")
    try:
        config = VideoMAEConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        return f"cannot read {source} as a VideoMAE ({type(error).__name__}: {error})"
    if not any("ForVideoClassification" in name for name in config.architectures or []):
        return f"{source} is not a VideoMAEForVideoClassification: it has no head to score with"
    if class_index_map(config.id2label, class_names) is not None:
        return None
    known = {_normalised_name(str(label)) for label in config.id2label.values()}
    missing = [name for name in class_names if _normalised_name(name) not in known]
    shown = ", ".join(repr(name) for name in missing[:5]) + (", …" if len(missing) > 5 else "")
    return (f"the labels of {source} do not name the run's classes: {len(missing)} of "
            f"{len(class_names)} missing ({shown}); give a classifier fine-tuned on this "
            f"dataset, or '{SCORE_RUN}' for the run's own classifier")


def resample_clips(clips: np.ndarray, frames: int, size: int) -> np.ndarray:
    """uint8 clips (B, T, H, W, 3) → (B, frames, size, size, 3): frames picked uniformly (the
    decode stage's rule), the centre square resized (bilinear, antialiased when shrinking)."""
    clips = np.asarray(clips)
    if len(clips) == 0 or clips.shape[1:4] == (frames, size, size):
        return clips
    picked = torch.from_numpy(np.ascontiguousarray(
        clips[:, sample_indices(clips.shape[1], frames)]))
    height, width = picked.shape[2:4]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = picked[:, :, top:top + side, left:left + side].float()
    flat = square.reshape(-1, side, side, 3).permute(0, 3, 1, 2)
    resized = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=side > size)
    out = resized.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8)
    return out.reshape(len(clips), frames, size, size, 3).numpy()


class ClassScorer:
    """Each clip's probability for its own class, and the class ranked first, from a classifier
    whose head names the run's classes; a Ray Data actor holds one beside its embedder.

    ``kind`` ``videomae``: a ``VideoMAEForVideoClassification`` folder or hub id (clips are
    resampled to its frame count and size); ``c3d``: a C3D the run saved (``embedding/c3d.py``).
    Raises ValueError when the model cannot score the run's classes.
    """

    def __init__(self, source: str, class_names: list[str], batch_size: int = 16,
                 kind: str = "videomae", device: str | None = None):
        if kind == "c3d":
            from raydistill.embedding.c3d import C3DEmbedder

            self.model = C3DEmbedder(source, class_names, batch_size, device)
        elif kind == "videomae":
            from raydistill.embedding.videomae import VideoMAEEmbedder

            problem = score_model_problem(source, class_names)
            if problem:
                raise ValueError(problem)
            self.model = VideoMAEEmbedder(source, class_names, "auto", batch_size, device)
        else:
            raise ValueError(f"kind must be videomae or c3d, got {kind!r}")
        self.kind = kind

    def __call__(self, clips: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """``score`` float32 (B,): each clip's own-class probability; ``predicted`` int32 (B,):
        the run class ranked first."""
        if self.kind == "videomae":  # C3D resamples its input itself
            clips = resample_clips(clips, self.model.num_frames, self.model.size)
        out = self.model(clips, labels)
        return {"score": out["score"], "predicted": out["predicted"]}
