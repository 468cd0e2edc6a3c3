"""What each fine-tuning worker trains on: a fixed share of the latent cache, in batches that a
resumed run draws exactly as the uninterrupted one did."""

import itertools

import numpy as np
import torch

from raydistill.pipeline.finetune import cached_batches, latent_share
from raydistill.pipeline.latents import latent_table
from raydistill.runs import RunDir


def take(batches, count):
    return [(latents.clone(), labels.clone()) for latents, labels in
            itertools.islice(batches, count)]


def test_a_resumed_run_draws_the_batches_of_the_uninterrupted_one():
    latents = torch.arange(10 * 2, dtype=torch.float32).reshape(10, 2)
    labels = torch.arange(10)
    full = take(cached_batches(latents, labels, 3, seed=4, rank=1), 12)  # 3 batches an epoch
    for step in (0, 2, 3, 7):
        resumed = take(cached_batches(latents, labels, 3, seed=4, rank=1, start_step=step),
                       12 - step)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                   for a, b in zip(full[step:], resumed))


def test_ranks_share_the_cache_in_id_order_whatever_the_shard_order(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    ids = [f"v{i:02d}" for i in range(7)]
    values = np.arange(7, dtype=np.float32)[:, None, None, None, None] * np.ones((7, 1, 1, 2, 2),
                                                                                  np.float32)
    odd, even = [i for i in range(7) if i % 2], [i for i in range(7) if not i % 2]
    for index, rows in enumerate((odd, even)):  # shards hold ids out of order
        run.write_table(f"latents/train/shard-{index:05d}.parquet",
                        latent_table([ids[i] for i in rows], [i % 3 for i in rows],
                                     values[rows]))
    shares = [latent_share(run, rank, 2) for rank in (0, 1)]
    assert shares[0][0][:, 0, 0, 0, 0].tolist() == [0, 2, 4, 6]
    assert shares[1][0][:, 0, 0, 0, 0].tolist() == [1, 3, 5]
    assert shares[1][1].tolist() == [1, 0, 2]
