"""A trained class-conditional Latte generates its classes: on latent videos whose classes differ
only by motion (a blob moving right, left, down or up), the ``small`` model with v-prediction,
trained as the finetune stage trains it, samples videos that move the way their class label
says."""

import numpy as np
import pytest
import torch

from raydistill.config import FinetuneConfig
from raydistill.generation.diffusion import sample_latents
from raydistill.generation.training import build_model, ema_model, new_state, train_step

DIRECTIONS = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])  # (dx, dy) of each class
FRAMES, SIZE, CHANNELS = 8, 8, 4
STEPS = 1000


def moving_blobs(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Latent videos (N, FRAMES, CHANNELS, SIZE, SIZE): a Gaussian blob of random position and
    colour moving 3 latent pixels in its class's direction, over faint noise."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    videos = np.empty((len(labels), FRAMES, CHANNELS, SIZE, SIZE), np.float32)
    for i, label in enumerate(labels):
        start = rng.uniform(2.0, SIZE - 3.0, 2) - 1.5 * DIRECTIONS[label]
        colour = rng.choice([-1, 1], CHANNELS) * rng.uniform(1.0, 2.0, CHANNELS)
        for frame in range(FRAMES):
            x, y = start + 3.0 * DIRECTIONS[label] * frame / (FRAMES - 1)
            blob = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / 2.0)
            videos[i, frame] = colour[:, None, None] * blob + rng.normal(0, 0.1, blob.shape)
    return videos


def motion_class(videos: np.ndarray) -> np.ndarray:
    """The class whose direction best matches each video's energy-centroid shift from the first
    to the last frame; (N,)."""
    energy = (videos ** 2).sum(axis=2)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]

    def centroid(frame):
        weights = energy[:, frame] / energy[:, frame].sum(axis=(1, 2), keepdims=True)
        return np.stack([(weights * cols).sum(axis=(1, 2)), (weights * rows).sum(axis=(1, 2))], 1)

    return ((centroid(-1) - centroid(0)) @ DIRECTIONS.T).argmax(axis=1)


def test_the_motion_judge_reads_the_training_videos():
    labels = np.repeat(np.arange(4), 25)
    assert (motion_class(moving_blobs(labels, np.random.default_rng(1))) == labels).all()


@pytest.mark.slow
def test_samples_of_a_trained_small_model_move_as_their_class_says():
    labels = np.repeat(np.arange(4), 64)
    latents = torch.from_numpy(moving_blobs(labels, np.random.default_rng(0)))
    finetune = FinetuneConfig(architecture="small", prediction_type="v_prediction",
                              steps=STEPS, batch_size=32, learning_rate=2e-3, ema_decay=0.99)
    torch.manual_seed(0)
    state = new_state(build_model(finetune, 4, (FRAMES, CHANNELS, SIZE, SIZE)), finetune)
    order = torch.Generator().manual_seed(0)
    for _ in range(finetune.steps):
        batch = torch.randperm(len(latents), generator=order)[:finetune.batch_size]
        train_step(state, latents[batch], torch.from_numpy(labels)[batch], finetune, seed=0)
    wanted = torch.arange(4).repeat_interleave(20)
    samples = sample_latents(ema_model(state), wanted,
                             [torch.Generator().manual_seed(i) for i in range(len(wanted))],
                             "ddim", 25, 4.0)
    accuracy = (motion_class(samples.numpy()) == wanted.numpy()).mean()
    # Chance is 25 %; 32 of 80 or more happens by chance with probability ≈ 0.002. Measured
    # (2026-12-01): 69 % with 1 and with 2 torch threads at these settings (55 % after 800
    # steps; 94 % after 1500 steps at learning rate 1e-3, a test 35 s longer). Float rounding
    # differs with the thread count and the CPU, so the bound leaves room.
    assert accuracy >= 0.4, f"{accuracy:.0%} of the samples move their class's way (chance 25 %)"
