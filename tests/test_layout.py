"""The run layout: every path built by raydistill.layout parses back to what built it."""

import pytest

from raydistill.layout import (BoundKey, SelectionKey, embeddings_folder, eval_checkpoint_path,
                               eval_metrics_path, eval_model_path,
                               method_settings_path, parse_eval_path, parse_selection_path,
                               quality_path, selection_folder, selection_path, sweep_folder,
                               vst_model_path)


def test_selection_paths_are_the_documented_ones():
    assert selection_path("synthetic", "tac_dt", 5, 2) == (
        "selection/synthetic/tac_dt/vpc=5/seed=2.parquet")
    assert quality_path("real", "random", 1, 0) == (
        "selection/real/random/vpc=1/seed=0.quality.json")
    assert vst_model_path("synthetic", 10, 3) == (
        "selection/synthetic/vst_unet/vpc=10/seed=3.model.pt")
    assert method_settings_path("synthetic", "tac_dt") == (
        "selection/synthetic/tac_dt/settings.json")
    assert selection_folder("real") == "selection/real"


def test_every_selection_file_parses_back_to_its_key_and_kind():
    key = SelectionKey("synthetic", "k_center", 10, 12)
    assert parse_selection_path(selection_path(*_fields(key))) == (key, "selection")
    assert parse_selection_path(quality_path(*_fields(key))) == (key, "quality")
    vst = SelectionKey("real", "vst_unet", 5, 0)
    assert parse_selection_path(vst_model_path("real", 5, 0)) == (vst, "vst_model")


@pytest.mark.parametrize("path", [
    "selection/synthetic/tac_dt/settings.json",
    "selection/synthetic/tac_dt/vpc=5/seed=x.parquet",
    "selection/synthetic/tac_dt/vpc=5/seed=1.parquet.tmp",
    "selection/synthetic/tac_dt/vpc=5/seed=1/extra.parquet",
    "selection/synthetic/vst_unet/ray/vpc=5/seed=1.parquet",
    "eval/synthetic/tac_dt/vpc=5/seed=1/metrics.json",
])
def test_other_files_are_not_selections(path):
    assert parse_selection_path(path) is None


def test_evaluation_files_of_selections_and_bounds_parse_to_their_keys():
    key = SelectionKey("synthetic", "random", 1, 4)
    assert eval_metrics_path(key.name) == "eval/synthetic/random/vpc=1/seed=4/metrics.json"
    assert parse_eval_path(eval_model_path(key.name)) == (key, "model.pt")
    bound = BoundKey("full_synthetic", 2)
    assert eval_metrics_path(bound.name) == "eval/full_synthetic/seed=2/metrics.json"
    assert parse_eval_path("eval/full_real/seed=0/metrics.json") == (
        BoundKey("full_real", 0), "metrics.json")
    assert parse_eval_path(eval_checkpoint_path(bound.name)) == (bound, "checkpoint.pt")


@pytest.mark.parametrize("path", [
    "eval/ray/checkpoint_2026/metrics.json",
    "eval/full_real/metrics.json",
    "eval/synthetic/random/vpc=1/metrics.json",
    "eval/synthetic/random/vpc=1/seed=0/sub/metrics.json",
    "selection/synthetic/random/vpc=1/seed=0.parquet",
])
def test_other_files_are_not_evaluations(path):
    assert parse_eval_path(path) is None


def test_keys_order_by_pool_method_vpc_then_seed():
    keys = [SelectionKey("synthetic", "tac_dt", 5, 0), SelectionKey("synthetic", "random", 5, 1),
            SelectionKey("synthetic", "random", 1, 3), SelectionKey("real", "tac_dt", 1, 0)]
    assert sorted(keys) == [keys[3], keys[2], keys[1], keys[0]]


def test_embedding_and_sweep_folders():
    assert embeddings_folder("synthetic") == "embeddings/synthetic"
    assert embeddings_folder("synthetic", "c3d-run") == "embeddings/synthetic/c3d-run"
    assert sweep_folder("real", "vst_unet", 5) == "tune/real/vst_unet/vpc=5"


def _fields(key: SelectionKey) -> tuple:
    return key.pool, key.method, key.vpc, key.seed
