"""benchmarks/gpu_suite.py --tiny: the GPU suite's code paths on CPU, every row measured; its last
table (benchmarks/actor_busy.py) rendered from planted measurements."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("Latte training", "generation DDIM 50", "generation DPM-Solver 25",
        "generation DDPM 250", "VideoMAE-base embedding", "ViT-g-sized VideoMAE embedding",
        "VST-UNet training", "C3D training")
NUMBER = re.compile(r"^([0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)(?: |$)")


def table_rows(report: str) -> dict[str, dict[str, str]]:
    """The Markdown table's rows by measurement name, each as {column title: cell}."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    split = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    header = split[0]
    return {cells[0]: dict(zip(header, cells)) for cells in split[1:]}


def leading_number(cell: str) -> float | None:
    """The number a measured cell starts with (``12.3 · batch 4`` → 12.3), None if none."""
    match = NUMBER.match(cell)
    return float(match.group(1)) if match else None


@pytest.mark.slow
def test_tiny_suite_measures_every_row(tmp_path):
    out = tmp_path / "x.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--tiny", "--no-actors",
         "--out", str(out)],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    assert re.search(r"torch \S+ · CUDA \S+ · \d{4}-\d\d-\d\d", report.splitlines()[0])
    rows = table_rows(report)
    for name in ROWS:
        assert name in rows, f"no row {name!r} in:\n{report}"
        fp32 = leading_number(rows[name]["fp32"])
        assert fp32 is not None and fp32 > 0, f"{name}: fp32 cell {rows[name]['fp32']!r}"
    for name in ROWS[:6]:  # the bf16 autocast column runs the same code under autocast
        bf16 = leading_number(rows[name]["bf16 autocast"])
        assert bf16 is not None and bf16 > 0, f"{name}: bf16 cell {rows[name]['bf16 autocast']!r}"
    assert re.search(r"batch [1-9]", rows["Latte training"]["fp32"])
    assert re.search(r"VAE \d+ %", rows["generation DDIM 50"]["fp32"])
    assert rows["Latte training"]["MFU (bf16 dense peak)"] == "—"  # no GPU, no MFU
    assert rows["C3D training"]["bf16, SDPA off"] == "n/a: no attention"


def shares(busy: float, other: float, wait: float) -> dict:
    return {"actor": "n:1", "calls": 4, "seconds": 90.0, "busy_share": busy,
            "other_share": other, "wait_share": wait}


def test_the_actors_table_gives_each_stage_its_shares_and_a_verdict(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import actor_busy

    # The measurement itself is the stages' own (their summaries' ``actors``, checked in
    # test_generation_stages); running it here would start two stages' actors again (≈ 55 s).
    results = [{"stage": "generate", "videos": 16, "seconds": 61.0,
                "actors": [shares(0.97, 0.0, 0.03)]},
               {"stage": "embed", "videos": 256, "seconds": 20.0,
                "actors": [shares(0.4, 0.05, 0.55), shares(0.93, 0.01, 0.06)]}]
    table = table_rows(actor_busy.render(results, actor_busy.PAPER))
    assert table["generate"]["busy"] == "97 %" and table["generate"]["verdict"] == "ok"
    assert table["embed"]["wait"] == "55 % / 6 %"
    assert table["embed"]["verdict"] == "over 10 % idle"
