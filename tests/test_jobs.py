"""The dataset jobs (jobs/distill_*.py): flags → config, --help, --dry-run (validates, plans,
writes nothing), and the cluster configs (cluster.yaml against Ray's autoscaler schema, the
KubeRay RayJob)."""

from __future__ import annotations

import copy
import importlib.util
import json
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from raydistill.config import STAGE_NAMES, ConfigError, RunConfig, from_dict, with_overrides
from raydistill.pipeline import resources
from raydistill.pipeline import stage as stage_module
from raydistill.pipeline.stages import named
from raydistill.runs import RunDir
from raydistill.selection import SELECTORS

ROOT = Path(__file__).resolve().parents[1]
JOBS = {"distill_k400": "kinetics400", "distill_ssv2": "ssv2", "distill_ucf101": "ucf101",
        "distill_hmdb51": "hmdb51"}
IMAGE = f"rayproject/ray:{ray.__version__}-py311-gpu"
SCRATCH = "--from-scratch"  # a fresh Latte: the tests that are not about where it comes from


def stage_requests(name: str, config: RunConfig, cluster: resources.Cluster
                   ) -> list[resources.Request]:
    """What stage ``name`` asks of ``cluster``."""
    return named([name])[0].requests(config, cluster)


def load_job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_of(job, *argv: str) -> RunConfig:
    return job.build_config(job.build_parser().parse_args(list(argv)))


def run_job(capsys, job, *argv: str) -> tuple[int, str, str]:
    code = job.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def dataset_tree(root: Path, dataset: str) -> Path:
    """The annotation files of a layout, listing one class's videos, and those (empty) files: a
    dry run lists the layout and counts what exists, it does not decode."""
    ucf = "ApplyEyeMakeup/v_ApplyEyeMakeup_g0{group}_c01.avi"
    ssv2_entry = {"id": "1", "label": "holding x", "template": "Holding [something]",
                  "placeholders": ["x"]}
    files = {
        "kinetics400": {"annotations/train.csv": "label,youtube_id,time_start,time_end,split\n"
                                                 "abseiling,aaaaaaaaaaa,0,10,train\n",
                        "train/abseiling/aaaaaaaaaaa_000000_000010.mp4": ""},
        "ssv2": {"labels/labels.json": json.dumps({"Holding something": "0"}),
                 "labels/train.json": json.dumps([ssv2_entry]),
                 "labels/validation.json": "[]", "20bn-something-something-v2/1.webm": ""},
        "ucf101": {"ucfTrainTestlist/classInd.txt": "1 ApplyEyeMakeup\n",
                   **{f"ucfTrainTestlist/trainlist0{split}.txt": ucf.format(group=8) + " 1\n"
                      for split in (1, 2, 3)},
                   **{f"ucfTrainTestlist/testlist0{split}.txt": ucf.format(group=1) + "\n"
                      for split in (1, 2, 3)},
                   f"UCF-101/{ucf.format(group=8)}": "", f"UCF-101/{ucf.format(group=1)}": ""},
        "hmdb51": {**{f"testTrainMulti_7030_splits/ride_bike_test_split{split}.txt":
                      "a.avi 1 \nb.avi 2 \n" for split in (1, 2, 3)},
                   "ride_bike/a.avi": "", "ride_bike/b.avi": ""}}[dataset]
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


# -- flags → config -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, dataset", JOBS.items())
def test_defaults_are_the_papers(name, dataset):
    config = config_of(load_job(name), "--data", "/data/x", "--latte", "/models/latte.pt")
    assert (config.ingest.dataset, config.ingest.root, config.run_dir) == (
        dataset, "/data/x", f"runs/{dataset}")
    assert (config.decode.num_frames, config.decode.size) == (16, 112)
    assert (config.latents.num_frames, config.latents.size) == (16, 256)
    # C3D: 16 consecutive frames; Latte's UCF101 model: 16 frames 3 apart, random start
    assert (config.decode.frame_interval, config.decode.frame_start) == (1, "center")
    assert (config.latents.frame_interval, config.latents.frame_start) == (3, "random")
    assert config.latents.vae == "stabilityai/sd-vae-ft-ema"
    assert (config.finetune.architecture, config.finetune.model) == ("xl", "/models/latte.pt")
    assert config.finetune.steps == {"kinetics400": 1_000_000, "ssv2": 1_000_000,
                                     "ucf101": 0, "hmdb51": 500_000}[dataset]  # Table 7
    assert config.finetune.cache_latents == (dataset not in ("kinetics400", "ssv2"))
    assert config.generate.per_class == 100
    assert (config.generate.scheduler, config.generate.steps, config.generate.guidance) == (
        "ddpm", 250, 7.0)  # Latte's own sampling (the paper does not say)
    assert config.embed.model == "MCG-NJU/videomae-base-finetuned-kinetics"
    assert config.embed.pools == ("synthetic",)
    assert (config.select.pool, config.select.vpc, config.select.seeds) == (
        "synthetic", (1, 5, 10), 5)
    # every selector, the paper's own (proposed) first, each group in SELECTORS order
    assert config.select.methods == (
        tuple(name for name, cls in SELECTORS.items() if cls.proposed)
        + tuple(name for name, cls in SELECTORS.items() if not cls.proposed))
    today = ("tac_dt", "vst_unet", "random", "kcenter", "herding", "dm_mmd", "mae_score",
             "attention_topk")
    assert tuple(m for m in config.select.methods if m in today) == today
    assert (config.evaluate.classifier, config.evaluate.preset) == ("c3d", "paper")
    assert config.evaluate.methods is None and config.evaluate.seeds is None  # = select's
    for section in (config.latents, config.generate, config.embed):
        assert section.gpus_per_actor == 1.0 and section.num_actors == 4
    assert (config.finetune.use_gpu, config.select.use_gpu, config.evaluate.use_gpu) == (
        True, True, True)
    assert (config.finetune.num_workers, config.select.train_workers,
            config.evaluate.num_workers, config.evaluate.test_actors) == (4, 4, 4, 4)
    assert config.decode.num_cpus == 1.0


def test_every_flag_sets_its_fields():
    config = config_of(
        load_job("distill_ucf101"), "--data", "s3://b/UCF101", "--run", "s3://b/runs/mini",
        "--mini", "--split", "2", "--vae", "/models/vae", "--latte", "/models/ucf101.pt",
        "--videomae", "/models/videomae", "--score-model", "/models/videomae-ucf101",
        "--vpc", "1", "5", "--methods", "tac_dt", "random",
        "--seeds", "2", "--per-class", "20", "--gpus-per-actor", "0.5", "--generate-actors", "8",
        "--embed-actors", "2", "--train-workers", "3", "--decode-cpus", "2")
    assert (config.ingest.dataset, config.ingest.root, config.ingest.split) == (
        "miniucf", "s3://b/UCF101", 2)
    assert config.run_dir == "s3://b/runs/mini"
    assert (config.latents.vae, config.finetune.model, config.embed.model) == (
        "/models/vae", "/models/ucf101.pt", "/models/videomae")
    assert config.embed.score_model == "/models/videomae-ucf101"
    assert (config.select.vpc, config.select.methods, config.select.seeds) == (
        (1, 5), ("tac_dt", "random"), 2)
    assert config.generate.per_class == 20
    assert [s.gpus_per_actor for s in (config.latents, config.generate, config.embed)] == [0.5] * 3
    assert (config.generate.num_actors, config.latents.num_actors, config.embed.num_actors,
            config.evaluate.test_actors) == (8, 2, 2, 2)
    assert (config.finetune.num_workers, config.select.train_workers,
            config.evaluate.num_workers) == (3, 3, 3)
    assert config.decode.num_cpus == 2.0


def test_mini_runs_into_its_own_directory_and_gpus_zero_or_auto_reach_ray_train():
    job = load_job("distill_ucf101")
    assert config_of(job, "--data", "/d", "--mini", SCRATCH).run_dir == "runs/miniucf"
    cpu = config_of(job, "--data", "/d", "--gpus-per-actor", "0", SCRATCH)
    assert cpu.generate.gpus_per_actor == 0 and cpu.finetune.use_gpu is False
    auto = config_of(job, "--data", "/d", "--gpus-per-actor", "auto", SCRATCH)
    assert auto.embed.gpus_per_actor is None and auto.evaluate.use_gpu is None


def test_a_config_file_is_the_base_and_flags_given_override_it(tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "ingest": {"root": "/data/from-file"},
        "generate": {"per_class": 50, "guidance": 2.0},
        "select": {"seeds": 3, "vpc": [1, 5]},
    }))
    config = config_of(load_job("distill_hmdb51"), "--config", str(tmp_path / "run.yaml"),
                       "--seeds", "4", SCRATCH)
    assert config.ingest.root == "/data/from-file"  # no --data: the file's root
    assert (config.generate.per_class, config.generate.guidance) == (50, 2.0)
    assert (config.select.seeds, config.select.vpc) == (4, (1, 5))
    assert config.finetune.architecture == "xl" and config.run_dir == "runs/hmdb51"


def test_a_config_file_for_another_dataset_is_refused(tmp_path):
    (tmp_path / "run.yaml").write_text("ingest: {dataset: ssv2, root: /data}\n")
    with pytest.raises(ConfigError, match=r"^ingest\.dataset"):
        config_of(load_job("distill_k400"), "--config", str(tmp_path / "run.yaml"), SCRATCH)


def test_a_job_without_pretrained_latte_weights_is_refused_unless_from_scratch():
    job = load_job("distill_k400")
    with pytest.raises(ConfigError, match=r"^--latte: no pretrained Latte given.*--from-scratch"):
        config_of(job, "--data", "/d")
    with pytest.raises(ConfigError, match=r"^--from-scratch: .*exclude each other"):
        config_of(job, "--data", "/d", "--latte", "/m/latte.pt", SCRATCH)
    assert config_of(job, "--data", "/d", SCRATCH).finetune.steps == 1_000_000  # Table 7
    assert config_of(job, "--data", "/d", SCRATCH, "--steps", "50").finetune.steps == 50
    ucf = load_job("distill_ucf101")
    as_is = config_of(ucf, "--data", "/d", "--mini", "--latte", "/m/ucf101.pt")
    assert (as_is.finetune.steps, as_is.finetune.model) == (0, "/m/ucf101.pt")
    scratch = config_of(ucf, "--data", "/d", SCRATCH)  # Table 7 trains none; a fresh one must
    assert (scratch.finetune.steps, scratch.finetune.model) == (20_000, None)
    with pytest.raises(ConfigError, match=r"^--steps: 0 steps keeps a pretrained Latte"):
        config_of(ucf, "--data", "/d", SCRATCH, "--steps", "0")


def test_from_scratch_wins_over_a_config_files_model_and_its_steps_error_names_the_file(
        tmp_path):
    job = load_job("distill_ucf101")
    (tmp_path / "run.yaml").write_text("finetune: {model: /m/latte.pt, steps: 0}\n")
    from_file = config_of(job, "--data", "/d", "--config", str(tmp_path / "run.yaml"))
    assert (from_file.finetune.model, from_file.finetune.steps) == ("/m/latte.pt", 0)
    with pytest.raises(ConfigError, match=rf"^finetune\.steps in {tmp_path}/run\.yaml: 0 steps"):
        config_of(job, "--data", "/d", "--config", str(tmp_path / "run.yaml"), SCRATCH)
    (tmp_path / "run.yaml").write_text("finetune: {model: /m/latte.pt, steps: 100}\n")
    fresh = config_of(job, "--data", "/d", "--config", str(tmp_path / "run.yaml"), SCRATCH)
    assert (fresh.finetune.model, fresh.finetune.steps) == (None, 100)


def test_the_sampler_flag_picks_a_named_preset_and_single_fields_still_override_it(tmp_path):
    job = load_job("distill_ssv2")
    fast = config_of(job, "--data", "/d", SCRATCH, "--sampler", "fast").generate
    assert (fast.scheduler, fast.steps, fast.guidance) == ("ddim", 50, 4.0)
    (tmp_path / "run.yaml").write_text("generate: {guidance: 5.0}\n")
    mixed = config_of(job, "--data", "/d", SCRATCH, "--config", str(tmp_path / "run.yaml"))
    assert (mixed.generate.scheduler, mixed.generate.steps, mixed.generate.guidance) == (
        "ddpm", 250, 5.0)
    with pytest.raises(SystemExit):
        job.build_parser().parse_args(["--sampler", "slow"])


def test_no_latte_exits_2_naming_the_flag_and_writes_nothing(tmp_path, capsys):
    code, _, err = run_job(capsys, load_job("distill_hmdb51"), "--data",
                           str(dataset_tree(tmp_path / "data", "hmdb51")), "--run",
                           str(tmp_path / "run"), "--dry-run")
    assert code == 2 and err.startswith("distill_hmdb51: error: --latte: no pretrained Latte")
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_dry_run_of_ucf101_with_the_public_latte_uses_it_as_it_is(tmp_path, capsys,
                                                                  ray_cluster):
    code, out, err = run_job(capsys, load_job("distill_ucf101"), "--data",
                             str(dataset_tree(tmp_path / "data", "ucf101")), "--run",
                             str(tmp_path / "run"), "--mini", "--latte",
                             str(tmp_path / "ucf101.pt"), "--dry-run")
    assert code == 0, err
    line = plan_lines(out)["finetune"]
    assert f"Latte-XL/2 {tmp_path / 'ucf101.pt'}" in line
    assert line.endswith("used as it is (0 steps: no training)")


# -- command line -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", JOBS)
def test_help_exits_0_and_lists_the_flags(name, capsys):
    with pytest.raises(SystemExit) as stop:
        load_job(name).main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--data", "--run", "--vae", "--latte", "--videomae", "--vpc", "--methods",
                 "--seeds", "--per-class", "--gpus-per-actor", "--train-workers",
                 "--decode-cpus", "--config", "--address", "--dry-run"):
        assert flag in out
    assert ("--split" in out) == (name in ("distill_ucf101", "distill_hmdb51"))


@pytest.mark.parametrize("name, argv, field", [
    ("distill_k400", ["--vpc", "0"], "select.vpc"),
    ("distill_k400", ["--methods", "tac_dt", "kmeans"], "select.methods"),
    ("distill_ssv2", ["--per-class", "5"], "select.vpc"),  # VPC 10 > 5 generated
    ("distill_ucf101", ["--split", "7"], "ingest.split"),
    ("distill_hmdb51", ["--seeds", "0"], "select.seeds"),
    ("distill_hmdb51", ["--generate-actors", "0"], "generate.num_actors"),
    ("distill_ucf101", ["--decode-cpus", "0"], "decode.num_cpus"),
    ("distill_k400", ["--config", "{tmp}/missing.yaml"], "--config"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_a_bad_value_exits_2_naming_the_field_and_writes_nothing(tmp_path, capsys, name, argv,
                                                                 field, dry):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = run_job(capsys, load_job(name), "--data", str(tmp_path), "--run",
                           str(tmp_path / "run"), SCRATCH, *argv,
                           *(["--dry-run"] if dry else []))
    assert code == 2
    assert err.startswith(f"{name}: error: {field}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dry", [True, False])
def test_a_missing_data_root_exits_2_naming_ingest_root(tmp_path, capsys, dry):
    job = load_job("distill_k400")
    for argv in (["--data", str(tmp_path / "no-such-dir")], []):
        code, _, err = run_job(capsys, job, *argv, "--run", str(tmp_path / "run"), SCRATCH,
                               *(["--dry-run"] if dry else []))
        assert code == 2 and err.startswith("distill_k400: error: ingest.root")
    assert not (tmp_path / "run").exists()


# -- dry run ------------------------------------------------------------------------------------

def plan_lines(out: str) -> dict[str, str]:
    """Stage name → its status and settings line in a dry run's plan."""
    return {line.split()[0]: line for line in out.splitlines()
            if line.startswith("  ") and line.split()[0] in STAGE_NAMES}


@pytest.mark.parametrize("name, argv", [
    ("distill_k400", []), ("distill_ssv2", []), ("distill_ucf101", ["--split", "2"]),
    ("distill_ucf101", ["--mini"]), ("distill_hmdb51", ["--split", "3"])])
def test_dry_run_plans_every_stage_and_writes_nothing(tmp_path, capsys, ray_cluster, name,
                                                      argv):
    dataset = JOBS[name]
    data = dataset_tree(tmp_path / "data", dataset)
    before = files_under(tmp_path)
    code, out, err = run_job(capsys, load_job(name), "--data", str(data), "--run",
                             str(tmp_path / "run"), SCRATCH, *argv, "--dry-run")
    assert code == 0, err
    assert files_under(tmp_path) == before  # no run directory, no config.yaml
    plan = plan_lines(out)
    assert list(plan) == list(STAGE_NAMES)
    assert all(line.split()[1] == "run" for line in plan.values())
    assert str(data) in plan["ingest"]
    assert ("16×256² clips (frames 3 apart, random start) → 16×4×32×32 latents"
            in plan["latents"])
    assert "16×112² clips for the classifier (frames 1 apart, centred)" in plan["decode"]
    assert "Latte-XL/2 from scratch" in plan["finetune"]
    steps = {"kinetics400": "1,000,000", "ssv2": "1,000,000", "hmdb51": "500,000",
             "ucf101": "20,000"}[dataset]  # Table 7; UCF101 trains none, from scratch 20 000
    assert f"{steps} steps" in plan["finetune"]
    assert "× VPC 1 5 10 × 5 seeds" in plan["select"]
    assert plan["generate"].endswith("ddpm 250 steps, guidance 7 (latte sampler)")
    assert "4 × Latte actor (1 CPU + 1 GPU)" in out
    assert "cluster now: 2 CPU, 0 GPU" in out and "no autoscaler detected" in out
    # the default asks GPUs the test cluster does not have: one warning naming every field
    [gpu_warning] = [line for line in out.splitlines() if "no node has a GPU" in line]
    assert gpu_warning.startswith("warning: latents.gpus_per_actor, finetune.use_gpu, "
                                  "generate.gpus_per_actor, ")
    assert "Latte actor 1" in gpu_warning
    # what the layout lists: one video per split it has (the tree lists one class)
    [found] = [line.split("found: ", 1)[1] for line in out.splitlines() if "found: " in line]
    assert found == {"kinetics400": "1 video in 1 class (train 1)",
                     "ssv2": "1 video in 1 class (train 1)",
                     "ucf101": "2 videos in 50 classes (test 1, train 1)" if "--mini" in argv
                     else "2 videos in 1 class (test 1, train 1)",
                     "hmdb51": "2 videos in 1 class (test 1, train 1)"}[dataset]
    assert out.strip().endswith(str(tmp_path / "run" / "report" / "report.md"))


def test_dry_run_on_cpus_shows_finished_stages_as_done(tmp_path, capsys, ray_cluster,
                                                       monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(stage_module, "hub_cache", lambda: str(tmp_path / "empty-hub-cache"))
    job = load_job("distill_hmdb51")
    argv = ["--data", str(dataset_tree(tmp_path / "data", "hmdb51")), "--run",
            str(tmp_path / "run"), "--gpus-per-actor", "0", "--train-workers", "1",
            "--embed-actors", "1", "--generate-actors", "1", "--latte",
            str(tmp_path / "no-latte.pt")]
    run = RunDir(str(tmp_path / "run"))
    run.save_config(config_of(job, *argv))
    for stage in ("ingest", "decode"):
        run.mark_done(stage)
    before = {p: (tmp_path / "run" / p).read_bytes() for p in files_under(tmp_path / "run")
              if (tmp_path / "run" / p).is_file()}
    code, out, err = run_job(capsys, job, *argv, "--dry-run")
    assert code == 0, err
    plan = plan_lines(out)
    assert [plan[s].split()[1] for s in STAGE_NAMES] == ["done"] * 2 + ["run"] * 7
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    missing = tmp_path / "no-latte.pt"
    assert warnings[0] == "warning: latents.vae: stabilityai/sd-vae-ft-ema is a hub id that " \
        "is not in this node's Hugging Face cache (" + warnings[0].split("(", 1)[1]
    assert "HF_HUB_OFFLINE=1 forbids downloading it" in warnings[0]  # the tests run offline
    assert warnings[1] == f"warning: finetune.model: {missing} does not exist on this node"
    assert warnings[2].startswith("warning: embed.model: MCG-NJU/videomae-base-finetuned-"
                                  "kinetics is a hub id that is not in this node's")
    assert len(warnings) == 3
    assert "500,000 steps" in plan["finetune"]  # Table 7 for HMDB51
    after = {p: (tmp_path / "run" / p).read_bytes() for p in files_under(tmp_path / "run")
             if (tmp_path / "run" / p).is_file()}
    assert after == before


def test_dry_run_refuses_to_change_a_finished_stage(tmp_path, capsys, ray_cluster):
    job = load_job("distill_ucf101")
    argv = ["--data", str(dataset_tree(tmp_path / "data", "ucf101")), "--run",
            str(tmp_path / "run"), SCRATCH]
    run = RunDir(str(tmp_path / "run"))
    run.save_config(config_of(job, *argv, "--decode-cpus", "0.5", "--per-class", "50"))
    run.mark_done("decode")
    run.mark_done("generate")
    code, _, err = run_job(capsys, job, *argv, "--dry-run")  # decode.num_cpus may change
    assert code == 2 and err.startswith("distill_ucf101: error: generate.per_class")


def test_dry_run_refuses_a_layout_that_lists_no_existing_video(tmp_path, capsys, ray_cluster):
    data = dataset_tree(tmp_path / "data", "kinetics400")
    (data / "train" / "abseiling" / "aaaaaaaaaaa_000000_000010.mp4").unlink()
    code, _, err = run_job(capsys, load_job("distill_k400"), "--data", str(data), "--run",
                           str(tmp_path / "run"), SCRATCH, "--dry-run")
    assert code == 2 and not (tmp_path / "run").exists()
    assert err.startswith(f"distill_k400: error: ingest.root: {data} lists no kinetics400 video "
                          "whose file exists (1 missing (e.g. ")
    (data / "annotations" / "train.csv").unlink()
    code, _, err = run_job(capsys, load_job("distill_k400"), "--data", str(data), "--run",
                           str(tmp_path / "run"), SCRATCH, "--dry-run")
    assert code == 2 and "is not a readable kinetics400 layout: no train.csv" in err


def test_dry_run_fails_a_decode_task_larger_than_any_node(tmp_path, capsys, ray_cluster):
    code, _, err = run_job(capsys, load_job("distill_k400"), "--data",
                           str(dataset_tree(tmp_path / "data", "kinetics400")), "--run",
                           str(tmp_path / "run"), "--decode-cpus", "4", SCRATCH, "--dry-run")
    assert code == 2
    assert err.startswith("distill_k400: error: decode.num_cpus: one decode task asks 4 CPU")
    assert not (tmp_path / "run").exists()


def test_dry_run_on_a_ray_up_head_checks_against_cluster_yaml_node_types(tmp_path, capsys,
                                                                         ray_cluster,
                                                                         monkeypatch):
    job = load_job("distill_k400")
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text((ROOT / "cluster.yaml").read_text())  # what `ray up` puts on the head
    monkeypatch.setattr(resources, "BOOTSTRAP_CONFIG", str(bootstrap))
    argv = ["--data", str(dataset_tree(tmp_path / "data", "kinetics400")), "--run",
            str(tmp_path / "run"), SCRATCH, "--dry-run"]
    code, out, err = run_job(capsys, job, *argv)
    assert code == 0, err
    assert "(largest node 48 CPU, 4 GPU); autoscaler with known node types" in out
    assert ("warning: generate.num_actors: 4 × Latte actor (1 GPU each) = 4 GPU, the cluster "
            "has 0 now; the autoscaler must add them") in out
    code, _, err = run_job(capsys, job, *argv, "--gpus-per-actor", "8")
    assert code == 2
    assert err.startswith("distill_k400: error: latents.gpus_per_actor: one VAE actor asks 8 GPU"
                          ", no node has more than 4")


def test_dry_run_on_s3_checks_the_bucket_and_writes_nothing(s3_bucket, capsys, ray_cluster,
                                                            tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.put(str(dataset_tree(tmp_path / "data", "kinetics400")), f"{s3_bucket}/kinetics400",
           recursive=True)
    fs.invalidate_cache()
    before = fs.find(s3_bucket)
    job = load_job("distill_k400")
    code, out, err = run_job(capsys, job, "--data", f"{s3_bucket}/kinetics400", "--run",
                             f"{s3_bucket}/runs/k400", SCRATCH, "--dry-run")
    assert code == 0, err
    assert f"report: {s3_bucket}/runs/k400/report/report.md" in out
    assert "found: 1 video in 1 class (train 1)" in out  # listed on S3
    fs.invalidate_cache()
    assert fs.find(s3_bucket) == before and len(before) == 2
    code, _, err = run_job(capsys, job, "--data", f"{s3_bucket}/kinetics400", "--run",
                           "s3://no-such-bucket-rd/runs/k400", SCRATCH, "--dry-run")
    assert code == 2 and err.startswith("distill_k400: error: run_dir: bucket")


def test_resource_findings_warn_where_the_cluster_can_grow_and_fail_where_it_cannot():
    config = config_of(load_job("distill_k400"), "--data", "/d", "--gpus-per-actor", "8",
                       SCRATCH)
    empty = resources.Cluster(cpus=0, gpus=0, largest_cpus=0, largest_gpus=0, autoscaler=True,
                         node_types_known=False)
    requests = [r for name in STAGE_NAMES for r in stage_requests(name, config, empty)]
    errors, warnings = resources.resource_findings(requests, empty)
    assert errors == []
    [gpu_line] = [w for w in warnings if "no node has a GPU" in w]  # every GPU stage, one line
    assert "generate.gpus_per_actor" in gpu_line.split(":")[0]
    assert "the autoscaler must add them" in gpu_line
    typed = resources.Cluster(cpus=0, gpus=0, largest_cpus=48, largest_gpus=4, autoscaler=True,
                         node_types_known=True)
    errors, _ = resources.resource_findings(requests, typed)
    assert [e.split(":")[0] for e in errors] == [
        "latents.gpus_per_actor", "generate.gpus_per_actor", "embed.gpus_per_actor"]
    cpu_only = resources.Cluster(cpus=2, gpus=0, largest_cpus=2, largest_gpus=0, autoscaler=False,
                            node_types_known=False)
    errors, warnings = resources.resource_findings(requests, cpu_only)
    assert errors == [] and any("no node has a GPU" in w for w in warnings)


def test_cpu_workers_ask_their_cpus_per_worker_and_a_too_big_ask_names_that_field():
    config = with_overrides(config_of(load_job("distill_k400"), "--data", "/d",
                                      "--gpus-per-actor", "0", SCRATCH),
                            {"finetune": {"cpus_per_worker": 4},
                             "evaluate": {"cpus_per_worker": 2}})
    small = resources.Cluster(cpus=2, gpus=0, largest_cpus=2, largest_gpus=0, autoscaler=False,
                              node_types_known=False)
    latte = stage_requests("finetune", config, small)[0]
    c3d = stage_requests("evaluate", config, small)[0]
    assert (latte.cpus, c3d.cpus) == (4, 2)
    errors, _ = resources.resource_findings([latte, c3d], small)
    assert [e.split(":")[0] for e in errors] == ["finetune.cpus_per_worker"]


def test_the_embedding_classifier_tasks_cpus_are_checked_before_the_run():
    config = from_dict(RunConfig, {"embed": {"run_classifier": "c3d", "classifier_cpus": 4}})
    small = resources.Cluster(cpus=2, gpus=0, largest_cpus=2, largest_gpus=0, autoscaler=False,
                              node_types_known=False)
    requests = stage_requests("embed", config, small)
    assert [r.what for r in requests] == ["embedding actor", "embedding classifier task"]
    errors, _ = resources.resource_findings(requests, small)
    assert [e.split(":")[0] for e in errors] == ["embed.classifier_cpus"]
    with_model = with_overrides(config, {"embed": {"model": "/weights/videomae"}})
    assert len(stage_requests("embed", with_model, small)) == 1


def test_single_cpu_tasks_and_actors_ask_their_configured_cpus_and_a_too_big_ask_names_it():
    config = from_dict(RunConfig, {"latents": {"vae_cpus": 4},
                                   "generate": {"cpus_per_actor": 2, "gpus_per_actor": 0},
                                   "evaluate": {"test_cpus_per_actor": 3}})
    small = resources.Cluster(cpus=2, gpus=0, largest_cpus=2, largest_gpus=0, autoscaler=False,
                              node_types_known=False)
    asks = {name: [(r.what, r.cpus) for r in stage_requests(name, config, small)]
            for name in ("latents", "generate", "evaluate")}
    assert asks["latents"] == [("VAE actor", 0.5), ("VAE training task", 4)]
    assert asks["generate"] == [("Latte actor", 2)]
    assert asks["evaluate"][1] == ("test actor", 3)
    requests = [r for name in asks for r in stage_requests(name, config, small)]
    errors, _ = resources.resource_findings(requests, small)
    assert [e.split(":")[0] for e in errors] == ["latents.vae_cpus",
                                                 "evaluate.test_cpus_per_actor"]
    too_big = with_overrides(config, {"generate": {"cpus_per_actor": 4}})
    errors, _ = resources.resource_findings(stage_requests("generate", too_big, small),
                                            small)
    assert [e.split(":")[0] for e in errors] == ["generate.cpus_per_actor"]
    gpu_node = resources.Cluster(cpus=4, gpus=1, largest_cpus=4, largest_gpus=1,
                                 autoscaler=False, node_types_known=False)
    beside_a_gpu = with_overrides(too_big, {"generate": {"cpus_per_actor": 8,
                                                         "gpus_per_actor": 1}})
    latte = stage_requests("generate", beside_a_gpu, gpu_node)[0]
    assert (latte.cpus, latte.gpus) == (8, 1)
    errors, _ = resources.resource_findings([latte], gpu_node)
    assert [e.split(":")[0] for e in errors] == ["generate.cpus_per_actor"]
    assert stage_requests("evaluate", config, gpu_node)[1].cpus == 1  # GPU: 1 CPU
    defaults = from_dict(RunConfig, {"latents": {"vae": "/weights/vae"}})
    assert [(r.what, r.cpus) for r in stage_requests("latents", defaults, small)] == [
        ("VAE actor", 0.5)]
    assert stage_requests("evaluate", defaults, small)[1].cpus == 0.5


@pytest.mark.parametrize("section, field", [("latents", "vae_cpus"),
                                            ("generate", "cpus_per_actor"),
                                            ("evaluate", "test_cpus_per_actor")])
@pytest.mark.parametrize("value", [0, -1, 257, float("nan")])
def test_a_cpu_count_out_of_range_is_refused_naming_its_field(section, field, value):
    with pytest.raises(ConfigError, match=f"^{section}\\.{field}: must be "):
        from_dict(RunConfig, {section: {field: value}})


def test_a_task_asking_several_cpus_gets_as_many_torch_threads(ray_cluster):
    def threads_in_task():
        import torch

        from raydistill.pipeline.shards import use_assigned_cpus

        torch.set_num_threads(1)  # as a reused worker that first ran a 1-CPU task
        return use_assigned_cpus(), torch.get_num_threads()

    assert ray.get(ray.remote(num_cpus=2)(threads_in_task).remote(), timeout=120) == (2, 2)
    assert ray.get(ray.remote(num_cpus=0.5)(threads_in_task).remote(), timeout=120) == (1, 1)

    class Actor:
        def threads(self):
            return threads_in_task()

    actor = ray.remote(num_cpus=2)(Actor).remote()
    try:
        assert ray.get(actor.threads.remote(), timeout=120) == (2, 2)
    finally:
        ray.kill(actor)
    from raydistill.pipeline.shards import use_assigned_cpus
    assert use_assigned_cpus() is None  # the driver keeps its own threads


def test_autoscaler_detection_tells_launcher_node_types_from_plain_ray_nodes():
    assert resources.has_launcher_node_types({"node_type_mapping": {"ab12": "gpu_worker"}})
    assert not resources.has_launcher_node_types({"node_type_mapping": {"ab12": "node_ab12"}})
    assert not resources.has_launcher_node_types({})


# -- cluster configs ----------------------------------------------------------------------------

def test_cluster_yaml_passes_rays_own_validation_with_the_house_invariants():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs before AWS calls
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert len(workers) >= 2 and all(t["min_workers"] == 0 for t in workers.values())
    assert any(t["resources"].get("GPU", 0) > 0 for t in workers.values())
    assert any(t["resources"].get("GPU", 0) == 0 and t["resources"]["CPU"] > 0
               for t in workers.values())
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    assert config["docker"]["image"] == IMAGE and config["docker"]["container_name"]
    assert any("pip install" in c and "raydistill" in c for c in config["setup_commands"])


def test_cluster_yaml_with_a_bad_field_is_rejected_by_the_same_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["head"]["min_worker"] = 0  # a typo
    with pytest.raises(Exception, match="min_worker"):
        validate_config(prepare_config(config))


def test_rayjob_matches_cluster_yaml_and_its_entrypoint_is_a_valid_k400_job():
    job = yaml.safe_load((ROOT / "kuberay" / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = cluster["workerGroupSpecs"]
    assert len(groups) >= 2 and all(g["minReplicas"] == 0 for g in groups)
    containers = [c for g in [cluster["headGroupSpec"], *groups]
                  for c in g["template"]["spec"]["containers"]]
    assert {c["image"] for c in containers} == {IMAGE}
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for g in groups
            for c in g["template"]["spec"]["containers"]]
    assert any(gpus) and not all(gpus)  # a GPU group and a CPU group

    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/distill_k400.py"]
    config = config_of(load_job("distill_k400"), *argv[2:])
    assert config.ingest.root.startswith("s3://") and config.run_dir.startswith("s3://")


def test_rayjob_installs_the_projects_dependencies():
    runtime_env = yaml.safe_load(
        yaml.safe_load((ROOT / "kuberay" / "rayjob.yaml").read_text())["spec"]["runtimeEnvYAML"])
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def names(requirements):
        from packaging.requirements import Requirement
        return {Requirement(r).name.lower() for r in requirements} - {"ray"}

    assert names(runtime_env["pip"]) == names(project)
    assert runtime_env["working_dir"].endswith(".zip")


def test_the_flag_table_only_names_config_fields():
    fields = [path for paths in load_job("distill_k400").common.FLAG_FIELDS.values()
              for path in paths]
    config = RunConfig()
    for path in fields:
        section, *rest = path.split(".")
        assert hasattr(config, section) and all(hasattr(getattr(config, section), r) for r in rest)


def test_task_pools_hold_the_cpus_now_unless_an_autoscaler_can_add_nodes(monkeypatch,
                                                                         ray_cluster):
    from raydistill.pipeline import shards

    assert shards.cluster_can_grow() is False  # a local Ray has no autoscaler
    assert shards.task_pool(1.0, 100).size == 2 and shards.task_pool(0.5, 3).size == 3
    monkeypatch.setattr(shards, "cluster_can_grow", lambda: True)
    assert shards.task_pool(1.0, 100).size == 100  # queued: the demand the autoscaler answers


def test_the_resource_findings_of_a_cpu_only_cluster_merge_into_one_gpu_line():
    config = config_of(load_job("distill_k400"), "--data", "/d", SCRATCH)
    cpu_only = resources.Cluster(cpus=2, gpus=0, largest_cpus=2, largest_gpus=0,
                                 autoscaler=False, node_types_known=False)
    requests = [r for name in STAGE_NAMES for r in stage_requests(name, config, cpu_only)]
    _, warnings = resources.resource_findings(requests, cpu_only)
    [gpu_line] = [line for line in warnings if "no node has a GPU" in line]
    assert gpu_line.startswith("latents.gpus_per_actor, finetune.use_gpu, generate.gpus_per_actor"
                               ", embed.gpus_per_actor, select.use_gpu, evaluate.use_gpu: 6 "
                               "stages ask GPUs (VAE actor 1, ")
    assert gpu_line.endswith("no autoscaler detected: the stages wait for nodes to join "
                             "(--gpus-per-actor 0 runs every stage on CPUs)")


def test_gpu_warnings_of_several_stages_become_one_line_in_the_place_of_the_first():
    cpu_only = resources.Cluster(cpus=2, gpus=0, largest_cpus=2, largest_gpus=0,
                                 autoscaler=False, node_types_known=False)
    decode = resources.Request("decode task", 9, 1.0, 0.0, "decode.num_tasks", "decode.num_cpus")
    vae = resources.Request("VAE actor", 1, 1.0, 1.0, "latents.num_actors",
                            "latents.gpus_per_actor")
    latte = resources.Request("Latte actor", 1, 1.0, 0.5, "generate.num_actors",
                              "generate.gpus_per_actor")
    errors, warnings = resources.resource_findings([decode, vae, latte], cpu_only)
    assert errors == [] and len(warnings) == 2
    assert warnings[0].startswith("decode.num_tasks: 9 × decode task (1 CPU each) = 9 CPU, the "
                                  "cluster has 2 now")
    assert warnings[1] == ("latents.gpus_per_actor, generate.gpus_per_actor: 2 stages ask GPUs "
                           "(VAE actor 1, Latte actor 0.5 per worker), no node has a GPU; no "
                           "autoscaler detected: the stages wait for nodes to join "
                           "(--gpus-per-actor 0 runs every stage on CPUs)")
    # One stage asking a GPU keeps its own line.
    _, alone = resources.resource_findings([decode, vae], cpu_only)
    assert alone[1] == ("latents.gpus_per_actor: one VAE actor asks 1 GPU, no node has a GPU; no "
                        "autoscaler detected: the stage waits for nodes to join "
                        "(--gpus-per-actor 0 runs every stage on CPUs)")


HELP_PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
heavy = ("torch", "ray", "sklearn", "diffusers", "transformers")
print("HEAVY:", sorted(name for name in heavy if name in sys.modules))
"""


@pytest.mark.parametrize("script", ["distill_k400", "quickstart", "tune_lambdas", "cli"])
def test_help_answers_without_importing_torch_ray_or_the_models(script):
    # the dataset jobs share jobs/common.py: one of them stands for the four
    import subprocess
    import sys

    path = (ROOT / "raydistill" / "cli.py" if script == "cli"
            else ROOT / "jobs" / f"{script}.py")
    result = subprocess.run([sys.executable, "-c", HELP_PROBE, str(path)], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert "usage:" in result.stdout, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "HEAVY: []"
