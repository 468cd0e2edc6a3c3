"""UCF101, or MiniUCF (its 50-class subset) with --mini: the paper's pipeline end to end,
resumable, on a local Ray or a cluster.

Ingests the official layout (UCF-101/{Class}/*.avi, ucfTrainTestlist/ of split --split), decodes
16×112² clips, encodes 16×256² clips into SD-VAE latents, uses the public class-conditional UCF101
Latte-XL/2 (--latte) as it is (0 steps, Table 7), generates N_c = 100 videos per class, embeds them
with VideoMAE, selects VPC 1/5/10 with every method over 5 seeds, trains C3D on each selection and
tests on the official test list, and writes RUN/report/report.md. Rerunning skips finished work.

    python jobs/distill_ucf101.py --data /data/UCF101 --mini \\
        --latte /models/latte/ucf101.pt --dry-run
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/distill_ucf101.py --data s3://bucket/UCF101 --run s3://bucket/runs/ucf101 \\
            --latte /home/ray/models/ucf101.pt
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (jobs/common.py, beside this script)


def dataset(args) -> str:
    """``miniucf`` with ``--mini``, else ``ucf101``."""
    return "miniucf" if args.mini else "ucf101"


def build_parser():
    """This job's flags: the common ones, ``--split`` and ``--mini``."""
    parser = common.job_parser(__doc__, "ucf101 (runs/miniucf with --mini)", with_split=True)
    parser.add_argument("--mini", action="store_true", default=False,
                        help="MiniUCF: the 50-class subset of the video-distillation literature")
    return parser


def build_config(args):
    """The validated run config of parsed flags."""
    return common.build_config(args, dataset(args))


def main(argv: list[str] | None = None) -> int:
    """Run (or ``--dry-run``) the job; returns the exit code."""
    return common.run_job("distill_ucf101", build_parser(), build_config, argv)


if __name__ == "__main__":
    sys.exit(main())
