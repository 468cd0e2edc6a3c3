"""Run config: defaults, validation errors that name the field, YAML round trip, overrides."""

import pytest

from raydistill.runs import RunDir
from raydistill.config import (ConfigError, DecodeConfig, RunConfig, dump_yaml, from_dict,
                               load_yaml, with_overrides)


def test_defaults_are_valid_and_paper_sized():
    config = RunConfig()
    assert config.ingest.dataset == "toy"
    assert (config.decode.num_frames, config.decode.size) == (16, 112)


def test_yaml_round_trip_gives_an_equal_config():
    config = from_dict(RunConfig, {"run_dir": "s3://bucket/run", "ingest": {"dataset": "ucf101",
                                                                             "root": "/data",
                                                                             "split": 2}})
    assert load_yaml(dump_yaml(config)) == config


@pytest.mark.parametrize("data, field", [
    ({"ingest": {"datset": "toy"}}, "ingest.datset"),
    ({"decode": {"size": "big"}}, "decode.size"),
    ({"decode": {"num_frames": True}}, "decode.num_frames"),
    ({"decode": {"num_cpus": "1"}}, "decode.num_cpus"),
    ({"ingest": {"dataset": "imagenet"}}, "ingest.dataset"),
    ({"ingest": {"dataset": "kinetics400"}}, "ingest.root"),
    ({"ingest": {"split": 4}}, "ingest.split"),
    ({"ingest": {"toy": {"num_classes": 20}}}, "ingest.toy.num_classes"),
    ({"ingest": {"toy": {"size": 63}}}, "ingest.toy.size"),
    ({"decode": {"shard_size": 0}}, "decode.shard_size"),
    ({"decode": 5}, "decode"),
    ({"seed": 1.5}, "seed"),
    ({"finetune": {"model_classes": "ucf101"}}, "finetune.model_classes"),  # without a model
    ({"finetune": {"steps": 0}}, "finetune.steps"),  # 0 = a pretrained model as it is: none
    ({"decode": {"frame_interval": 0}}, "decode.frame_interval"),
    ({"latents": {"frame_start": "middle", "frame_interval": 3}}, "latents.frame_start"),
    ({"decode": {"frame_start": "random"}}, "decode.frame_start"),  # random needs an interval
    ({"finetune": {"steps": -1, "model": "/m"}}, "finetune.steps"),
    ({"embed": {"classifier_cpus": 0}}, "embed.classifier_cpus"),
    ({"embed": {"score_model": "run"}}, "embed.score_model"),  # the run's model already scores
    ({"embed": {"score_model": " ", "model": "/m"}}, "embed.score_model"),
])
def test_bad_value_raises_one_error_naming_the_field(data, field):
    with pytest.raises(ConfigError) as error:
        from_dict(RunConfig, data)
    assert str(error.value).startswith(f"{field}:")


def test_zero_finetune_steps_need_a_model_to_use_as_it_is():
    with pytest.raises(ConfigError, match=r"^finetune\.steps: 0 uses finetune\.model as it is"):
        from_dict(RunConfig, {"finetune": {"steps": 0}})
    assert from_dict(RunConfig, {"finetune": {"steps": 0, "model": "/m"}}).finetune.steps == 0


def test_number_fields_accept_integers_as_floats():
    assert from_dict(DecodeConfig, {"num_cpus": 1}).num_cpus == 1.0


def test_invalid_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml("ingest: [unclosed")


def test_overrides_merge_nested_sections_and_validate():
    config = with_overrides(RunConfig(), {"decode": {"size": 64}})
    assert config.decode.size == 64 and config.decode.num_frames == 16
    with pytest.raises(ConfigError, match="^decode.size:"):
        with_overrides(config, {"decode": {"size": 2}})


def test_a_runs_saved_config_reads_renamed_methods_under_their_new_names(tmp_path):
    text = ("select: {methods: [random, csta], params: {csta: {redundancy: 0.5}}}\n"
            "evaluate: {methods: [csta]}\n")
    with pytest.raises(ConfigError, match="renamed to 'attention_topk'"):
        load_yaml(text)  # what a user writes is refused with the new name
    config = load_yaml(text, saved=True)
    assert list(config.select.methods) == ["random", "attention_topk"]
    assert "attention_topk" in config.select.params and "csta" not in config.select.params
    assert list(config.evaluate.methods) == ["attention_topk"]
    run = RunDir(str(tmp_path / "old"))
    run.write_bytes("config.yaml", text.encode())
    assert list(run.load_config().select.methods) == ["random", "attention_topk"]
