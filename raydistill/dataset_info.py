"""What the config, the CLI, the jobs, the plan and the report need to know about each dataset
layout: one :class:`DatasetInfo` per dataset name.

The layout readers live in :mod:`raydistill.datasets` (``LAYOUTS``); this module imports none of
them (nor torch), so that :mod:`raydistill.config` and the CLI stay cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset layout's properties.

    ``official_splits``: it ships several official train/test splits, one picked by
    ``ingest.split`` (1-3); ``large``: its latent cache does not fit in the fine-tuning workers'
    memory, so the jobs turn ``finetune.cache_latents`` off; ``reports_top5``: the paper's
    Table 2 reports top-5 accuracy for it, so the report's headline metric is top-5, not top-1.
    """

    name: str
    official_splits: bool = False
    large: bool = False
    reports_top5: bool = False


DATASET_INFO: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo("toy"),
    # Latent caches of ~60 GB and ~45 GB at 16×4×32×32 float32.
    DatasetInfo("kinetics400", large=True, reports_top5=True),
    DatasetInfo("ssv2", large=True, reports_top5=True),
    DatasetInfo("ucf101", official_splits=True),
    DatasetInfo("miniucf", official_splits=True),
    DatasetInfo("hmdb51", official_splits=True),
)}
"""Every dataset layout by the name ``ingest.dataset`` takes, in the order the CLI lists them."""


def split_datasets() -> tuple[str, ...]:
    """The datasets with official splits, the only ones ``ingest.split`` applies to, read from
    :data:`DATASET_INFO` at call time."""
    return tuple(name for name, info in DATASET_INFO.items() if info.official_splits)


SPLIT_DATASETS = split_datasets()
""":func:`split_datasets` at import (the CLI's ``--split`` help)."""


def dataset_info(name: str | None) -> DatasetInfo:
    """The record of dataset ``name``; an unknown name (or None) gets one with every property
    off, as a dataset that is none of the special cases."""
    return DATASET_INFO.get(name) or DatasetInfo(name or "")
