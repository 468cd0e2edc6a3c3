"""The dataset records: one per layout, the names config accepts, and a light import."""

import subprocess
import sys

from raydistill.config import DATASETS
from raydistill.dataset_info import (DATASET_INFO, SPLIT_DATASETS, DatasetInfo, dataset_info,
                                     split_datasets)
from raydistill.datasets import LAYOUTS


def test_every_layout_has_a_record_and_config_accepts_exactly_them():
    assert set(DATASET_INFO) == set(LAYOUTS)  # each in its own order
    assert DATASETS == tuple(DATASET_INFO)  # config and the CLI list the records' order
    assert all(name == info.name for name, info in DATASET_INFO.items())


PAPER_DATASETS = {  # today's layouts: (official_splits, large, reports_top5)
    "toy": (False, False, False), "kinetics400": (False, True, True), "ssv2": (False, True, True),
    "ucf101": (True, False, False), "miniucf": (True, False, False),
    "hmdb51": (True, False, False)}


def test_the_records_say_what_the_paper_does_per_dataset():
    assert set(PAPER_DATASETS) <= set(DATASET_INFO)
    for name, flags in PAPER_DATASETS.items():
        info = DATASET_INFO[name]
        assert (info.official_splits, info.large, info.reports_top5) == flags, name
    assert SPLIT_DATASETS == split_datasets() == tuple(
        name for name, info in DATASET_INFO.items() if info.official_splits)


def test_an_unknown_dataset_has_every_property_off():
    assert dataset_info("nope") == DatasetInfo("nope")
    assert dataset_info(None) == DatasetInfo("")


def test_config_and_the_cli_import_neither_torch_nor_the_layouts():
    code = ("import sys, raydistill.config, raydistill.cli; "
            "print(sorted(m for m in ('torch', 'sklearn', 'raydistill.datasets') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
