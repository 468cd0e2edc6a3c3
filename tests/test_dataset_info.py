"""The dataset records: one per layout, the names config accepts, and a light import."""

import subprocess
import sys

from raydistill.config import DATASETS
from raydistill.dataset_info import DATASET_INFO, SPLIT_DATASETS, DatasetInfo, dataset_info
from raydistill.datasets import LAYOUTS


def test_every_layout_has_a_record_and_config_accepts_exactly_them():
    assert tuple(DATASET_INFO) == tuple(LAYOUTS) == DATASETS
    assert all(name == info.name for name, info in DATASET_INFO.items())


def test_the_records_say_what_the_paper_does_per_dataset():
    assert SPLIT_DATASETS == ("ucf101", "miniucf", "hmdb51")
    assert [name for name, info in DATASET_INFO.items() if info.large] == ["kinetics400", "ssv2"]
    assert [name for name, info in DATASET_INFO.items() if info.reports_top5] == [
        "kinetics400", "ssv2"]


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
