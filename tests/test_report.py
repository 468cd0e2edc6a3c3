"""The run report: tables in the paper's layout, PNG figures, partial runs, missing videos."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from raydistill.dataset_info import DATASET_INFO, DatasetInfo
from raydistill.report import report as report_module
from raydistill.report.plots import method_color
from raydistill.report.report import write_report
from raydistill.report.tables import (compare_with_random, format_duration, format_percent,
                                      headline_table, method_label, method_sort_key, result_rows,
                                      upper_bound_rows)
from raydistill.runs import RunDir
from raydistill.schema import tensor_array
from raydistill.selection import SELECTORS, TACDTSelector
from raydistill.video import encode_video

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["wave", "jump", "spin"]
PER_CLASS = 4
METHODS = ("random", "kcenter", "tac_dt")
# top1 per (method, vpc) over seeds 0, 1, 2: random wins VPC=2, TAC-DT wins VPC=1.
TOP1 = {("random", 1): (0.2, 0.3, 0.4), ("kcenter", 1): (0.3, 0.3, 0.3),
        ("tac_dt", 1): (0.5, 0.5, 0.5), ("random", 2): (0.7, 0.7, 0.7),
        ("kcenter", 2): (0.4, 0.5, 0.6), ("tac_dt", 2): (0.6, 0.6, 0.6)}


PREDICTED = [0, 0, 0, 0, 1, 1, 0, 2, 0, 0, 0, 0]


def video_id(label: int, index: int) -> str:
    return f"syn-{label}-{index}"


def write_markers(run: RunDir) -> None:
    run.mark_done("ingest", {"class_names": CLASSES, "wall_seconds": 12.5},
                  {"dataset": "toy"})
    run.mark_done("generate", {"videos": 12, "wall_seconds": 90.0}, {"per_class": PER_CLASS})
    run.mark_done("select", {"pool": "synthetic", "embedding": "tiny", "wall_seconds": 4.5},
                  {"pool": "synthetic"})


def write_evaluations(run: RunDir) -> None:
    for (method, vpc), values in TOP1.items():
        for seed, top1 in enumerate(values):
            run.write_json(f"eval/synthetic/{method}/vpc={vpc}/seed={seed}/metrics.json",
                           {"top1": top1, "top5": 1.0, "auc": 0.5 + top1 / 2, "f1": top1 / 2,
                            "train_videos": vpc * 3, "test_videos": 30, "classifier": "c3d",
                            "seconds": 1.0})
    for bound, top1 in (("full_real", 0.9), ("full_synthetic", 0.8)):
        for seed in range(3):
            run.write_json(f"eval/{bound}/seed={seed}/metrics.json",
                           {"top1": top1, "top5": 1.0, "auc": 0.95, "f1": 0.85,
                            "train_videos": 12, "test_videos": 30, "classifier": "c3d",
                            "seconds": 2.0})


def write_selections(run: RunDir) -> None:
    """Each method keeps the first ``vpc`` videos of each class; seed 2 of random is unbalanced."""
    for method in METHODS:
        for vpc in (1, 2):
            for seed in range(3):
                picks = [(video_id(label, i), label, i) for label in range(3) for i in range(vpc)]
                run.write_table(f"selection/synthetic/{method}/vpc={vpc}/seed={seed}.parquet",
                                pa.table({"video_id": [p[0] for p in picks],
                                          "label": pa.array([p[1] for p in picks], pa.int32()),
                                          "rank": pa.array([p[2] for p in picks], pa.int32()),
                                          "score": [0.0] * len(picks)}))
                run.write_json(
                    f"selection/synthetic/{method}/vpc={vpc}/seed={seed}.quality.json",
                    {"coverage": 1.0 + seed, "diversity": None if vpc == 1 else 0.25,
                     "balanced": not (method == "random" and seed == 2)})


def write_embeddings(run: RunDir) -> None:
    rng = np.random.default_rng(0)
    ids = [video_id(label, i) for label in range(3) for i in range(PER_CLASS)]
    labels = [label for label in range(3) for _ in range(PER_CLASS)]
    table = pa.table({"video_id": ids, "label": pa.array(labels, pa.int32()),
                      "embedding": tensor_array(rng.normal(size=(12, 6)).astype(np.float32),
                                                pa.float32()),
                      "score": pa.array([0.5] * 12, pa.float32()),
                      # What the run's classifier files them under: class 0 all right, class 1
                      # half, class 2 none.
                      "predicted": pa.array(PREDICTED, pa.int32())})
    run.write_table("embeddings/synthetic/tiny/shard-00000.parquet", table)
    run.write_table("embeddings/synthetic/tiny/shard-00000.rejects.parquet",
                    pa.table({"video_id": ["bad"]}))


def write_videos(run: RunDir, tmp_path) -> None:
    """A synthetic manifest whose class-2 videos are listed but absent from disk."""
    rows = []
    for label in range(3):
        for index in range(PER_CLASS):
            path = tmp_path / "videos" / f"{video_id(label, index)}.mp4"
            if label < 2 and index == 0:
                path.parent.mkdir(exist_ok=True)
                frames = np.full((4, 16, 16, 3), 60 * (label + 1), np.uint8)
                path.write_bytes(encode_video(frames, 4, "mp4"))
            rows.append({"video_id": video_id(label, index), "path": str(path), "label": label,
                         "class_name": CLASSES[label], "seed": index, "latent_path": ""})
    run.write_table("synthetic/manifest.parquet", pa.Table.from_pylist(rows))


def make_run(tmp_path, evaluations: bool = True, embeddings: bool = True) -> RunDir:
    run = RunDir(str(tmp_path / "run"))
    write_markers(run)
    write_selections(run)
    write_videos(run, tmp_path)
    if evaluations:
        write_evaluations(run)
    if embeddings:
        write_embeddings(run)
    return run


def read_report(run: RunDir) -> str:
    return run.read_bytes("report/report.md").decode()


def table_row(text: str, vpc: str, method: str) -> list[str]:
    """The cells of the first Markdown row that starts ``| vpc | method |``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:2] == [vpc, method]:
            return cells
    raise AssertionError(f"no row {vpc} / {method}")


def write_stage_figures(run: RunDir) -> None:
    """What the fine-tuning and generation stages draw into report/: a loss curve, one
    filmstrip per class (the last class has none)."""
    run.write_bytes("report/finetune_loss.png", PNG_SIGNATURE + b"loss")
    for name in CLASSES[:2]:
        run.write_bytes(f"report/filmstrips/{name}.png", PNG_SIGNATURE + name.encode())


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("full")
    run = make_run(tmp_path)
    write_stage_figures(run)
    uri = write_report(run)
    return run, uri, read_report(run)


def test_report_is_written_under_report_and_its_uri_returned(full_report):
    run, uri, text = full_report
    assert uri == run.uri("report/report.md")
    assert text.startswith("# raydistill report: toy")
    assert "- Classes: 3" in text and "- Selection pool: synthetic" in text
    assert "- Classifier: c3d" in text


def test_results_show_mean_and_std_over_seeds_in_percent(full_report):
    _, _, text = full_report
    cells = table_row(text, "1", "Random")
    # top1 0.2, 0.3, 0.4: mean 0.3, population std 0.0816; F1 is half of it.
    assert cells[2] == "30.00 ± 8.16"
    assert cells[5] == "15.00 ± 4.08"
    assert cells[-1] == "3"
    assert table_row(text, "2", "k-Center")[2] == "50.00 ± 8.16"


def test_best_value_of_each_vpc_block_is_bold(full_report):
    _, _, text = full_report
    assert table_row(text, "1", "TAC-DT")[2] == "**50.00 ± 0.00**"
    assert table_row(text, "1", "Random")[2] == "30.00 ± 8.16"
    assert table_row(text, "2", "Random")[2] == "**70.00 ± 0.00**"
    assert table_row(text, "2", "TAC-DT")[2] == "60.00 ± 0.00"
    # Every method ties on top-5: all of them are best.
    assert table_row(text, "2", "k-Center")[3] == "**100.00 ± 0.00**"


def test_upper_bounds_come_first_in_the_results_table(full_report):
    _, _, text = full_report
    results = text.split("## Results")[1]
    data_rows = [line for line in results.splitlines() if line.startswith("| ")][2:]
    assert data_rows[0].startswith("| all | Full real | 90.00 ± 0.00")
    assert data_rows[1].startswith(f"| {PER_CLASS} | Full syn | 80.00 ± 0.00")
    assert "**Full real**: Top-1 90.00 ± 0.00" in text.split("## Upper bounds")[1]


def test_headline_table_has_a_column_per_vpc(full_report):
    _, _, text = full_report
    assert "| Method | VPC=1 | VPC=2 |" in text
    assert "| TAC-DT | **50.00 ± 0.00** | 60.00 ± 0.00 |" in text


def test_selection_quality_is_averaged_over_seeds(full_report):
    _, _, text = full_report
    quality = text.split("## Selection quality")[1].split("##")[0]
    random_1 = table_row(quality, "1", "Random")
    assert random_1[2:] == ["2.000", "—", "no (2/3)", "3"]  # coverage 1, 2, 3; no diversity at 1
    assert table_row(quality, "2", "TAC-DT")[2:] == ["2.000", "0.250", "yes", "3"]


def test_stage_wall_times_are_listed_with_a_total(full_report):
    _, _, text = full_report
    times = text.split("## Wall time per stage")[1]
    assert "| ingest | 12.5 s |" in times
    assert "| generate | 1 min 30 s |" in times
    assert "| **total** | **1 min 47 s** |" in times


def test_every_linked_png_exists_and_is_a_png(full_report):
    run, _, text = full_report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    expected = {"accuracy_vs_vpc.png", "pca_class_0.png", "finetune_loss.png",
                "filmstrips/wave.png", "filmstrips/jump.png",
                *(f"selected_{method}.png" for method in METHODS)}
    assert set(links) == expected
    for link in links:
        assert run.read_bytes(f"report/{link}").startswith(PNG_SIGNATURE)


def test_missing_videos_are_skipped_with_a_note_and_never_decoded(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    decoded = []
    real_decode = report_module.decode_clip
    monkeypatch.setattr(report_module, "decode_clip",
                        lambda path, *args: decoded.append(path) or real_decode(path, *args))
    text = (write_report(run), read_report(run))[1]
    assert "Skipped 1 video: `syn-2-0` (file missing)" in text
    assert sorted(p.rsplit("/", 1)[1] for p in decoded) == ["syn-0-0.mp4", "syn-1-0.mp4"]
    assert "![TAC-DT picks](selected_tac_dt.png)" in text


def test_run_with_only_selections_renders_with_a_note(tmp_path):
    run = make_run(tmp_path, evaluations=False)
    write_report(run)
    text = read_report(run)
    assert "No selection has been evaluated yet" in text
    assert "No upper bound evaluated yet" in text
    assert "- Classifier: no evaluation yet" in text
    assert table_row(text, "1", "TAC-DT")  # the selection-quality table is there
    assert "accuracy_vs_vpc.png" not in text
    assert "(pca_class_0.png)" in text


def test_run_without_embeddings_skips_the_pca(tmp_path):
    run = make_run(tmp_path, embeddings=False)
    write_report(run, vpc_for_plots=1)
    text = read_report(run)
    assert "No embeddings of the synthetic pool: PCA figure skipped" in text
    assert "pca_class" not in text
    assert "Selections drawn below: VPC=1, seed 0." in text


def test_an_empty_run_still_renders(tmp_path):
    run = RunDir(str(tmp_path / "empty"))
    write_report(run)
    text = read_report(run)
    assert "# raydistill report: unknown dataset" in text
    assert "No selections of the synthetic pool yet" in text
    assert "No stage has finished yet" in text


def test_rerun_rewrites_the_report(tmp_path):
    run = make_run(tmp_path, evaluations=False)
    write_report(run)
    write_evaluations(run)
    write_report(run)
    text = read_report(run)
    assert text.count("# raydistill report") == 1
    assert text.count("## Results") == 1
    assert "No selection has been evaluated yet" not in text
    assert "30.00 ± 8.16" in text


def test_requested_vpc_without_selections_falls_back_to_the_largest(tmp_path):
    run = make_run(tmp_path)
    write_report(run, vpc_for_plots=7, max_filmstrip_classes=1)
    text = read_report(run)
    assert "Selections drawn below: VPC=2, seed 0 (VPC=7 has none)." in text
    assert "Skipped" not in text  # only class 0 is drawn, and its video exists


def test_metric_rows_from_the_run_directory(tmp_path):
    run = make_run(tmp_path)
    rows = {(row.method, row.vpc): row for row in result_rows(run, "synthetic")}
    assert set(rows) == set(TOP1)
    mean, std = rows[("random", 1)].summary["top1"]
    assert mean == pytest.approx(0.3) and std == pytest.approx(np.std([0.2, 0.3, 0.4]))
    assert [row.method for row in upper_bound_rows(run)] == ["full_real", "full_synthetic"]
    assert result_rows(run, "real") == []


def test_headline_table_of_another_metric_and_missing_cells(tmp_path):
    run = make_run(tmp_path)
    rows = [row for row in result_rows(run, "synthetic") if (row.method, row.vpc) !=
            ("kcenter", 2)]
    text = headline_table(rows, [], "auc")
    assert "| k-Center | 65.00 ± 0.00 | — |" in text


def test_a_run_with_both_pools_evaluated_shows_them_side_by_side(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    assert "Pools side by side" not in read_report(run)
    for seed, top1 in enumerate((0.6, 0.8, 0.7)):
        run.write_json(f"eval/real/tac_dt/vpc=2/seed={seed}/metrics.json",
                       {"top1": top1, "top5": 1.0, "train_videos": 6, "classifier": "c3d"})
    write_report(run)
    side = read_report(run).split("## Pools side by side", 1)[1].split("\n## ", 1)[0]
    assert "| VPC | Method | real pool Top-1 (%) | synthetic pool Top-1 (%) |" in side
    assert table_row(side, "2", "TAC-DT") == ["2", "TAC-DT", "70.00 ± 8.16", "60.00 ± 0.00"]
    assert table_row(side, "1", "Random") == ["1", "Random", "—", "30.00 ± 8.16"]


@pytest.mark.parametrize("mean, std, seeds, expected", [
    (0.252, 0.0041, None, "25.20 ± 0.41"), (0.252, 0.0, 3, "25.20 ± 0.00"),
    (0.252, 0.0, 1, "25.20 ± —"), (float("nan"), 0.0, 1, "n/a")])
def test_format_percent_says_one_seed_has_no_spread(mean, std, seeds, expected):
    assert format_percent(mean, std, seeds) == expected


@pytest.mark.parametrize("seconds, expected", [(42.04, "42.0 s"), (185, "3 min 05 s"),
                                               (7620, "2 h 07 min")])
def test_format_duration(seconds, expected):
    assert format_duration(seconds) == expected


def test_report_shows_the_class_fidelity_of_the_pool_per_class_and_overall(full_report):
    _, _, text = full_report
    section = text.split("## Class fidelity of the synthetic pool")[1].split("\n## ")[0]
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines() if line.startswith("|"))}
    assert rows["wave"] == ["4", "100.0"] and rows["jump"] == ["4", "50.0"]
    assert rows["spin"] == ["4", "0.0"] and rows["**all**"] == ["12", "**50.0**"]
    assert "full synthetic" in section and "80.00 ± 0.00" in section


def test_fidelity_says_why_when_the_embedding_model_cannot_classify(tmp_path):
    run = make_run(tmp_path)
    path = "embeddings/synthetic/tiny/shard-00000.parquet"
    table = run.read_table(path)
    run.write_table(path, table.set_column(table.column_names.index("predicted"), "predicted",
                                           pa.array([-1] * 12, pa.int32())))
    write_report(run)
    assert "has no classifier head naming the run's classes" in read_report(run)
    run.write_table(path, table.drop_columns(["predicted"]))
    write_report(run)
    assert "before the embed stage recorded predictions" in read_report(run)


def test_the_report_says_what_mae_score_ranked_by(tmp_path, full_report):
    assert "MAE-Score ranks by" not in full_report[2]  # no mae_score selection: no line
    run = make_run(tmp_path, evaluations=False)
    picks = pa.table({"video_id": [video_id(label, 0) for label in range(3)],
                      "label": pa.array(range(3), pa.int32()),
                      "rank": pa.array([0] * 3, pa.int32()), "score": [0.5] * 3})
    run.write_table("selection/synthetic/mae_score/vpc=1/seed=0.parquet", picks)
    write_report(run)  # embedded before the embed stage recorded its scorer: every score is set
    assert ("- MAE-Score ranks by: the classifier head of the embedding model (tiny)"
            in read_report(run))
    path = "embeddings/synthetic/tiny/shard-00000.parquet"
    table = run.read_table(path)
    run.write_table(path, table.set_column(table.column_names.index("score"), "score",
                                           pa.array([float("nan")] * 12, pa.float32())))
    write_report(run)
    assert ("- MAE-Score ranks by: logistic regression on the embeddings, out-of-fold (no "
            "classifier head names the run's classes)") in read_report(run)
    run.write_json("embeddings/synthetic/tiny/scorer.json",
                   {"scorer": "embed.score_model /models/videomae-ucf101", "videos": 12,
                    "scored": 12, "mae_score": "embed.score_model /models/videomae-ucf101"})
    write_report(run)
    text = read_report(run)
    assert "- MAE-Score ranks by: embed.score_model /models/videomae-ucf101" in text
    assert "Classifier: embed.score_model /models/videomae-ucf101." in text  # class fidelity


def test_report_compares_each_method_with_random_over_paired_seeds(full_report):
    _, _, text = full_report
    section = text.split("## Difference from random")[1].split("\n## ")[0]
    # VPC 1: TAC-DT is +30, +20, +10 points over random's seeds: mean +20, but with 3 seeds the
    # interval (t = 4.30) reaches below 0. VPC 2: TAC-DT is 10 points below random on every seed.
    assert table_row(section, "1", "TAC-DT")[2:] == ["+20.00", "[-4.84, +44.84]", "3", "no"]
    assert table_row(section, "1", "k-Center")[2:] == ["+0.00", "[-24.84, +24.84]", "3", "no"]
    assert table_row(section, "2", "TAC-DT")[2:] == ["-10.00", "[-10.00, -10.00]", "3",
                                                     "yes, worse"]
    with pytest.raises(AssertionError, match="no row"):
        table_row(section, "1", "Random")


def test_a_difference_larger_than_the_seed_noise_is_called_so():
    noise = [0.01, -0.02, 0.0, 0.02, -0.01]
    values = {("random", 5): {s: 0.5 + n for s, n in enumerate(noise)},
              ("tac_dt", 5): {s: 0.55 + n + 0.005 * (-1) ** s for s, n in enumerate(noise)},
              ("kcenter", 5): {s: 0.5 + 0.03 * (-1) ** s for s in range(5)},
              ("herding", 1): {0: 0.9}}
    rows = {row.method: row for row in compare_with_random(values)}
    assert set(rows) == {"tac_dt", "kcenter"}  # herding has no random at its VPC
    assert rows["tac_dt"].low > 0 and abs(rows["tac_dt"].difference - 0.051) < 1e-9
    assert rows["kcenter"].low < 0 < rows["kcenter"].high and rows["kcenter"].seeds == 5


HOSTILE_CLASSES = ["wave\n| injected | 9 | 9.9 |", "<script>alert(1)</script>",
                   "![x](http://evil.example/x.png) $\\alpha$"]


def test_class_names_from_a_dataset_cannot_change_the_reports_markup(tmp_path):
    run = make_run(tmp_path)
    run.mark_done("ingest", {"class_names": HOSTILE_CLASSES, "wall_seconds": 1.0},
                  {"dataset": "toy"})
    write_report(run)
    text = read_report(run)
    assert "<script>" not in text
    assert re.search(r"(?<!\\)\]\(http://evil", text) is None  # no link: "\]" shows a "]"
    assert not any(line.startswith("| injected") for line in text.splitlines())
    fidelity = text.split("## Class fidelity of the synthetic pool")[1].split("\n## ")[0]
    rows = [line for line in fidelity.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + len(HOSTILE_CLASSES) + 1  # header, rule, one per class, all
    assert "&lt;script&gt;" in rows[3] and r"\!\[x\]" in rows[4]
    assert run.read_bytes("report/pca_class_0.png").startswith(PNG_SIGNATURE)  # "$" drawn


def test_the_report_names_the_selector_settings_each_selection_was_made_with(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    assert "Selector settings" not in read_report(run)  # no record: nothing to name
    run.write_json("selection/synthetic/kcenter/settings.json",
                   {"defaults_version": 1, "embedding": "tiny", "params": {}})
    run.write_json("selection/synthetic/tac_dt/settings.json",
                   {"defaults_version": 2, "embedding": "tiny",
                    "params": {"min_score": 0.8, "representative": "score",
                               "outlier_fence": None}})
    run.write_json("selection/synthetic/vst_unet/settings.json",  # no VST-UNet selections here
                   {"defaults_version": 1, "embedding": "tiny", "params": {"epochs": 10}})
    # a later select run of other methods, without params, does not hide TAC-DT's
    run.mark_done("select", {"pool": "synthetic", "embedding": "tiny", "wall_seconds": 1.0},
                  {"pool": "synthetic", "methods": ["random"], "params": {}})
    write_report(run)
    line = next(line for line in read_report(run).splitlines() if "Selector settings" in line)
    assert line == ("- Selector settings (others at their defaults): TAC-DT: `min_score` 0.8, "
                    "`outlier_fence` null, `representative` score")


PAPER_METHODS = {  # today's selectors in the paper's order: (label, colour)
    "random": ("Random", "C0"), "mae_score": ("MAE-Score", "C1"),
    "attention_topk": ("Attention top-k", "C2"), "dm_mmd": ("DM-MMD", "C4"),
    "kcenter": ("k-Center", "C6"), "herding": ("Herding", "C8"), "vst_unet": ("VST-UNet", "C9"),
    "tac_dt": ("TAC-DT", "C3")}


def test_methods_are_named_ordered_and_coloured_as_in_the_paper():
    # Today's selectors keep their order, names and colours; a new one slots in by its own
    # report_order, label and color without changing this test.
    assert set(PAPER_METHODS) <= set(SELECTORS)
    today = sorted((m for m in SELECTORS if m in PAPER_METHODS), key=method_sort_key)
    assert [(m, method_label(m), method_color(m)) for m in today] == [
        (m, *label_and_colour) for m, label_and_colour in PAPER_METHODS.items()]
    for method, cls in SELECTORS.items():
        assert (method_label(method), method_color(method)) == (cls.label, cls.color)
    # every selector before the upper bounds, then any other name
    ordered = sorted([*SELECTORS, "full_real", "kmeans", "full_synthetic"], key=method_sort_key)
    assert ordered[len(SELECTORS):] == ["full_real", "full_synthetic", "kmeans"]
    assert [method_label(m) for m in ordered[len(SELECTORS):]] == ["Full real", "Full syn",
                                                                   "kmeans"]
    assert method_color("kmeans") == "C5"


def test_the_report_reads_names_order_and_colour_from_the_selector_classes(monkeypatch):
    monkeypatch.setattr(TACDTSelector, "label", "TAC-DT (new)")
    monkeypatch.setattr(TACDTSelector, "report_order", -1)
    monkeypatch.setattr(TACDTSelector, "color", "C9")
    assert method_label("tac_dt") == "TAC-DT (new)" and method_color("tac_dt") == "C9"
    assert sorted(SELECTORS, key=method_sort_key)[0] == "tac_dt"


def test_the_dataset_record_chooses_the_reports_headline_metric(tmp_path, monkeypatch):
    run = make_run(tmp_path, embeddings=False)
    write_report(run)
    assert "### Top-1 accuracy per VPC" in read_report(run)  # the toy: top-1
    run.mark_done("ingest", {"class_names": CLASSES, "wall_seconds": 1.0},
                  {"dataset": "kinetics400"})
    write_report(run)
    assert "### Top-5 accuracy per VPC" in read_report(run)  # the paper's Table 2
    monkeypatch.setitem(DATASET_INFO, "kinetics400", DatasetInfo("kinetics400"))
    write_report(run)
    assert "### Top-1 accuracy per VPC" in read_report(run)


@pytest.mark.parametrize("classes, metric, expected", [(3, "top1", 1 / 3), (10, "top5", 0.5),
                                                       (3, "top5", 1.0), (0, "top1", None)])
def test_chance_is_what_guessing_scores(classes, metric, expected):
    assert report_module.chance_level(classes, metric) == expected


def test_the_report_says_how_much_the_methods_selections_overlap(tmp_path):
    run = make_run(tmp_path)
    # random's seed-0 pick at VPC 2 shares 3 of its 6 videos with the others' first two.
    picks = [(video_id(label, i), label, i) for label in range(3) for i in (0, 3)]
    run.write_table("selection/synthetic/random/vpc=2/seed=0.parquet",
                    pa.table({"video_id": [p[0] for p in picks],
                              "label": pa.array([p[1] for p in picks], pa.int32()),
                              "rank": pa.array([p[2] for p in picks], pa.int32()),
                              "score": [0.0] * len(picks)}))
    write_report(run)
    text = read_report(run).split("## Selection overlap", 1)[1].split("\n## ", 1)[0]
    vpc1, vpc2 = text.split("VPC=1 (3 seeds):", 1)[1].split("VPC=2 (3 seeds):")
    assert "| Random | 100 | 100 | 100 |" in vpc1
    # seeds 0, 1, 2 share 50 %, 100 %, 100 % with k-Center: 83 % on average
    assert "| Random | 100 | 83 | 83 |" in vpc2 and "| k-Center | 83 | 100 | 100 |" in vpc2


def write_predictions(run: RunDir, key: str, predicted: list[int]) -> None:
    """Test predictions of evaluation ``key`` over six test videos, two per class."""
    labels = [0, 0, 1, 1, 2, 2]
    run.write_table(f"eval/{key}/predictions.parquet", pa.table({
        "video_id": [f"test-{i}" for i in range(6)], "label": pa.array(labels, pa.int32()),
        "predicted": pa.array(predicted, pa.int32()),
        "top5": pa.array([[p] for p in predicted], pa.list_(pa.int32()))}))


def per_class_rows(text: str) -> dict[str, list[str]]:
    section = text.split("## Per-class accuracy", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    return {cells[0]: cells[1:] for cells in rows}


def test_per_class_accuracy_and_confusion_of_the_bounds_and_the_best_selection(tmp_path):
    run = make_run(tmp_path)
    write_predictions(run, "full_real/seed=0", [0, 0, 1, 1, 2, 0])
    write_predictions(run, "full_real/seed=1", [0, 0, 1, 0, 2, 2])
    write_predictions(run, "full_synthetic/seed=0", [0, 1, 1, 1, 0, 0])
    for seed in range(3):  # random at VPC 2 has the best mean top-1 (TOP1)
        write_predictions(run, f"synthetic/random/vpc=2/seed={seed}", [0, 0, 0, 0, 2, 2])
    write_predictions(run, "synthetic/tac_dt/vpc=1/seed=0", [1, 1, 1, 1, 1, 1])  # not shown
    write_report(run)
    text = read_report(run)
    rows = per_class_rows(text)
    assert rows["Class"] == ["Full real (%)", "Full syn (%)",
                             "Random, VPC 2 (best selection) (%)"]
    # pooled over seeds: full real gets 4 of 4 "wave", 3 of 4 "jump", 3 of 4 "spin"
    assert rows["wave"] == ["100.0", "50.0", "100.0"]
    assert rows["jump"] == ["75.0", "100.0", "0.0"]
    assert rows["spin"] == ["75.0", "0.0", "100.0"]
    assert "Full real: 2 seeds, Full syn: 1 seed, Random, VPC 2 (best selection): 3 seeds" in text
    for name in ("confusion_full_real.png", "confusion_full_synthetic.png",
                 "confusion_random_vpc2.png"):
        assert f"]({name})" in text
        assert run.read_bytes(f"report/{name}").startswith(PNG_SIGNATURE)


def test_a_run_evaluated_before_predictions_were_kept_says_so(full_report):
    _, _, text = full_report
    section = text.split("## Per-class accuracy", 1)[1].split("\n## ", 1)[0]
    assert "_No test predictions saved" in section


def test_the_html_report_is_the_markdown_report_with_every_figure_inlined(full_report):
    run, _, text = full_report
    page = run.read_bytes("report/report.html").decode()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert linked and len(sources) == len(linked)
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<h2>Figures</h2>" in page


def test_real_and_generated_videos_are_drawn_side_by_side_per_class(tmp_path):
    run = make_run(tmp_path)
    rows = []
    for label in range(2):
        path = tmp_path / "real" / f"real-{label}.mp4"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encode_video(np.full((4, 16, 16, 3), 90 * label, np.uint8), 4, "mp4"))
        rows.append({"video_id": f"real-{label}", "path": str(path), "label": label,
                     "class_name": CLASSES[label], "split": "train"})
    run.write_table("manifest.parquet", pa.Table.from_pylist(rows))
    write_report(run)
    text = read_report(run)
    assert ("the first training video and the first generated video of 2 classes" in text
            and "](real_vs_generated.png)" in text)
    assert run.read_bytes("report/real_vs_generated.png").startswith(PNG_SIGNATURE)


def test_figures_named_with_spaces_and_accents_are_inlined_in_the_html():
    from raydistill.report.html import link_target, report_html

    figures = {"filmstrips/air drumming.png": b"A", "café.png": b"B"}
    markdown = (f"![air drumming]({link_target('filmstrips/air drumming.png')})\n\n"
                "![café](café.png)\n\n![gone](gone.png)")
    page = report_html(markdown, figures.get, "t")
    assert re.findall(r'<img src="([^"]+)"', page) == [
        "data:image/png;base64,QQ==", "data:image/png;base64,Qg==", "gone.png"]
