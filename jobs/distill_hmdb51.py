"""HMDB51: the paper's pipeline end to end, resumable, on a local Ray or a cluster.

Ingests the official layout ({class}/*.avi, testTrainMulti_7030_splits/ of split --split), decodes
16×112² clips, encodes 16×256² clips into SD-VAE latents, fine-tunes the pretrained
class-conditional Latte-XL/2 (--latte) for 500 000 steps (Table 7), generates N_c = 100 videos per
class, embeds them with VideoMAE, selects VPC 1/5/10 with every method over 5 seeds, trains C3D on
each selection and tests on the official test videos, and writes RUN/report/report.md. Rerunning
skips finished work.

    python jobs/distill_hmdb51.py --data /data/hmdb51 --split 1 \\
        --latte /models/latte/ucf101.pt --dry-run
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/distill_hmdb51.py --data s3://bucket/hmdb51 --run s3://bucket/runs/hmdb51 \\
            --latte /home/ray/models/ucf101.pt
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (jobs/common.py, beside this script)

DATASET = "hmdb51"


def build_parser():
    """This job's flags: the common ones and ``--split``."""
    return common.job_parser(__doc__, DATASET, with_split=True)


def build_config(args):
    """The validated run config of parsed flags."""
    return common.build_config(args, DATASET)


def main(argv: list[str] | None = None) -> int:
    """Run (or ``--dry-run``) the job; returns the exit code."""
    return common.run_job("distill_hmdb51", build_parser(), build_config, argv)


if __name__ == "__main__":
    sys.exit(main())
