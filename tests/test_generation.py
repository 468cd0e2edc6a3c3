"""Class-conditional Latte, checkpoint mapping, diffusion loss / sampler, VAE, training state."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from raydistill.config import FinetuneConfig
from raydistill.datasets.ucf101 import UCF101_CLASSES
from raydistill.generation.convert import (LATTE_UCF101_CLASSES, load_latte, load_matching,
                                          read_class_names, read_state_dict)
from raydistill.generation.diffusion import (SCHEDULERS, diffusion_loss, noise_from_velocity,
                                             sample_latents, training_scheduler)
from raydistill.generation.latte import LATTE_XL_2, TINY_LATTE, ClassConditionalLatte
from raydistill.generation.training import (build_model, new_state, restore_checkpoint,
                                            save_checkpoint, train_step)
from raydistill.generation.vae import (SD_VAE_ARCHITECTURE, decode_latents, encode_clips,
                                      load_vae, train_tiny_vae)


def tiny(num_classes=4, **overrides):
    torch.manual_seed(0)
    model = ClassConditionalLatte(num_classes=num_classes, **{**TINY_LATTE, **overrides})
    # The DiT init zeroes the modulation and output layers; give them weights so the
    # conditioning is visible in the output.
    for name, parameter in model.named_parameters():
        if "norm1.linear" in name or "proj_out" in name:
            torch.nn.init.normal_(parameter, std=0.2)
    return model.eval()


def inputs(batch=2):
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 8, 4, 8, 8, generator=generator),
            torch.tensor([10, 700][:batch]), torch.tensor([0, 3][:batch]))


@pytest.mark.parametrize("learn_sigma, channels", [(False, 4), (True, 8)])
def test_forward_keeps_the_video_shape(learn_sigma, channels):
    x, t, y = inputs()
    assert tiny(learn_sigma=learn_sigma)(x, t, y).shape == (2, 8, channels, 8, 8)


def test_paper_scale_model_has_latte_xl_size():
    with torch.device("meta"):
        model = ClassConditionalLatte(num_classes=101, **LATTE_XL_2)
    assert model.out_channels == 8
    assert 670e6 < sum(p.numel() for p in model.parameters()) < 680e6
    assert len(model.transformer_blocks) == len(model.temporal_transformer_blocks) == 14


def test_sd_vae_architecture_gives_the_latents_latte_xl_takes():
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        full = AutoencoderKL(**SD_VAE_ARCHITECTURE)
    assert 83e6 < sum(p.numel() for p in full.parameters()) < 84e6
    # The same blocks at 1/16 width and 64² frames, to stay quick on CPU: the downsampling
    # factor (set by the block count) is what must map 256² frames onto the model's latents.
    torch.manual_seed(0)
    narrow = AutoencoderKL(**{**SD_VAE_ARCHITECTURE, "block_out_channels": (8, 16, 32, 32),
                              "norm_num_groups": 8}).eval()
    clip = np.random.default_rng(0).integers(0, 256, (1, 2, 64, 64, 3), dtype=np.uint8)
    latents = encode_clips(narrow, clip)
    assert latents.shape[2:] == (LATTE_XL_2["in_channels"], 8, 8)  # 8× down: 256² → 32²
    assert 256 // 8 == LATTE_XL_2["sample_size"]
    assert decode_latents(narrow, torch.from_numpy(latents)).shape == clip.shape


def test_class_and_timestep_change_the_output_and_the_null_class_exists():
    model = tiny()
    x, t, _ = inputs(1)
    outputs = [model(x, t, torch.tensor([label])) for label in (0, 1, 4)]  # 4 = null class
    assert not torch.allclose(outputs[0], outputs[1])
    assert not torch.allclose(outputs[0], outputs[2])
    assert not torch.allclose(model(x, torch.tensor([900]), torch.tensor([0])), outputs[0])


def test_wrong_clip_length_is_refused():
    with pytest.raises(ValueError, match="num_frames"):
        tiny()(torch.randn(1, 4, 4, 8, 8), torch.tensor([1]), torch.tensor([0]))


def test_save_and_load_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    loaded = ClassConditionalLatte.from_pretrained(tmp_path).eval()
    x, t, y = inputs()
    assert torch.equal(model(x, t, y), loaded(x, t, y))


def original_format(model):
    """The state dict the original Latte code would hold for ``model`` (written out by hand)."""
    own = model.state_dict()
    state = {"x_embedder.proj.weight": own["pos_embed.proj.weight"],
             "x_embedder.proj.bias": own["pos_embed.proj.bias"],
             "t_embedder.mlp.0.weight": own["time_embedding.linear_1.weight"],
             "t_embedder.mlp.0.bias": own["time_embedding.linear_1.bias"],
             "t_embedder.mlp.2.weight": own["time_embedding.linear_2.weight"],
             "t_embedder.mlp.2.bias": own["time_embedding.linear_2.bias"],
             "y_embedder.embedding_table.weight": own["class_embedding.embedding_table.weight"],
             "final_layer.adaLN_modulation.1.weight": own["proj_out_1.weight"],
             "final_layer.adaLN_modulation.1.bias": own["proj_out_1.bias"],
             "final_layer.linear.weight": own["proj_out_2.weight"],
             "final_layer.linear.bias": own["proj_out_2.bias"],
             "pos_embed": torch.zeros(1), "temp_embed": torch.zeros(1)}
    for pair in range(len(model.transformer_blocks)):
        for offset, kind in ((0, "transformer_blocks"), (1, "temporal_transformer_blocks")):
            old, new = f"blocks.{2 * pair + offset}.", f"{kind}.{pair}."
            for suffix in ("weight", "bias"):
                state[f"{old}attn.qkv.{suffix}"] = torch.cat(
                    [own[f"{new}attn1.to_{x}.{suffix}"] for x in "qkv"])
                state[f"{old}attn.proj.{suffix}"] = own[f"{new}attn1.to_out.0.{suffix}"]
                state[f"{old}mlp.fc1.{suffix}"] = own[f"{new}ff.net.0.proj.{suffix}"]
                state[f"{old}mlp.fc2.{suffix}"] = own[f"{new}ff.net.2.{suffix}"]
                state[f"{old}adaLN_modulation.1.{suffix}"] = own[f"{new}norm1.linear.{suffix}"]
    return state


def test_original_checkpoint_maps_key_by_key(tmp_path):
    source = tiny()
    path = str(tmp_path / "ucf101.pt")
    torch.save({"ema": {f"module.{k}": v for k, v in original_format(source).items()}}, path)
    model, report = load_latte(path, num_classes=4, **TINY_LATTE)
    model.eval()
    assert not report.skipped_shape and not report.not_in_source
    x, t, y = inputs()
    assert torch.allclose(model(x, t, y), source(x, t, y), atol=1e-6)


def test_another_class_count_gets_a_new_label_table_keeping_the_null_row(tmp_path):
    source = tiny(num_classes=4)
    path = str(tmp_path / "latte.pt")
    torch.save(original_format(source), path)
    model = ClassConditionalLatte(num_classes=7, **TINY_LATTE)
    report = load_matching(model, read_state_dict(path))
    table = model.class_embedding.embedding_table.weight
    assert report.skipped_shape == ["class_embedding.embedding_table.weight"]
    assert table.shape == (8, 32)
    assert torch.equal(table[-1], source.class_embedding.embedding_table.weight[-1])
    assert torch.equal(model.proj_out_2.weight, source.proj_out_2.weight)


def test_own_saved_directory_loads_with_its_config(tmp_path):
    tiny().save_pretrained(tmp_path)
    model, report = load_latte(str(tmp_path), num_classes=4)
    assert model.config.hidden_size == 32 and not report.not_in_source


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_sampling_is_per_video_reproducible_whatever_the_batch(scheduler):
    model = tiny(learn_sigma=True)
    batch = sample_latents(model, torch.tensor([0, 2]),
                           [torch.Generator().manual_seed(s) for s in (5, 6)], scheduler, 4, 3.0)
    alone = sample_latents(model, torch.tensor([2]), [torch.Generator().manual_seed(6)],
                           scheduler, 4, 3.0)
    assert batch.shape == (2, 8, 4, 8, 8)
    assert torch.allclose(batch[1], alone[0], atol=1e-3)


def test_guidance_uses_the_unconditional_branch():
    model = tiny()
    run = [sample_latents(model, torch.tensor([1]), [torch.Generator().manual_seed(0)], "ddim",
                          3, guidance) for guidance in (1.0, 4.0)]
    assert not torch.allclose(run[0], run[1])


def test_learned_sigma_adds_a_finite_variational_term():
    latents, labels = torch.randn(4, 8, 4, 8, 8), torch.tensor([0, 1, 2, 3])
    losses = {}
    for learn_sigma in (False, True):
        model = tiny(learn_sigma=learn_sigma).train()
        losses[learn_sigma] = diffusion_loss(model, latents, labels,
                                             training_scheduler(learn_sigma),
                                             torch.Generator().manual_seed(0))
    assert torch.isfinite(losses[True]) and losses[True] > 0


class Oracle(torch.nn.Module):
    """Predicts exactly the noise or velocity of noisy versions of known clean latents."""

    def __init__(self, clean: torch.Tensor, prediction_type: str):
        super().__init__()
        self.clean, self.prediction_type = clean, prediction_type

    def forward(self, noisy, t, labels):
        schedule = training_scheduler(False)
        alpha = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
        noise = (noisy - alpha.sqrt() * self.clean) / (1 - alpha).sqrt()
        if self.prediction_type == "epsilon":
            return noise
        return alpha.sqrt() * noise - (1 - alpha).sqrt() * self.clean


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_loss_is_zero_only_for_the_target_of_the_prediction_type(prediction_type):
    latents, labels = torch.randn(4, 8, 4, 8, 8), torch.tensor([0, 1, 2, 3])
    scheduler = training_scheduler(False, prediction_type)
    losses = {kind: diffusion_loss(Oracle(latents, kind), latents, labels, scheduler,
                                   torch.Generator().manual_seed(0)).item()
              for kind in ("epsilon", "v_prediction")}
    other = "epsilon" if prediction_type == "v_prediction" else "v_prediction"
    assert losses[prediction_type] < 1e-8
    assert losses[other] > 0.01


def test_noise_from_velocity_inverts_the_velocity():
    scheduler = training_scheduler(False, "v_prediction")
    clean, noise = torch.randn(3, 8, 4, 8, 8), torch.randn(3, 8, 4, 8, 8)
    t = torch.tensor([0, 500, 999])
    noisy = scheduler.add_noise(clean, noise, t)
    velocity = scheduler.get_velocity(clean, noise, t)
    assert torch.allclose(noise_from_velocity(scheduler, velocity, noisy, t), noise, atol=1e-4)


def test_a_v_prediction_model_keeps_its_type_and_is_sampled_as_one(tmp_path):
    model = tiny(prediction_type="v_prediction")
    model.save_pretrained(tmp_path)
    loaded, _ = load_latte(str(tmp_path), num_classes=4)
    assert loaded.config.prediction_type == "v_prediction"
    as_noise = tiny()  # the same weights, read as a noise prediction
    samples = [sample_latents(m, torch.tensor([1]), [torch.Generator().manual_seed(0)], "ddim",
                              3, 2.0) for m in (loaded.eval(), as_noise)]
    assert not torch.allclose(samples[0], samples[1])
    with pytest.raises(ValueError, match="prediction_type"):
        tiny(prediction_type="x0")


def test_v_prediction_loss_with_learned_sigma_is_finite():
    model = tiny(learn_sigma=True, prediction_type="v_prediction").train()
    loss = diffusion_loss(model, torch.randn(4, 8, 4, 8, 8), torch.tensor([0, 1, 2, 3]),
                          training_scheduler(True, "v_prediction"),
                          torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss > 0


FINETUNE = FinetuneConfig(architecture="tiny", steps=10, batch_size=4, learning_rate=3e-3,
                          ema_decay=0.9)


def fresh_state():
    torch.manual_seed(0)  # the same initial weights every time
    return new_state(build_model(FINETUNE, 4, (8, 4, 8, 8)), FINETUNE)


def fixed_batch():
    generator = torch.Generator().manual_seed(3)
    return torch.randn(4, 8, 4, 8, 8, generator=generator), torch.tensor([0, 1, 2, 3])


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    state = fresh_state()
    latents, labels = fixed_batch()

    def loss_at_fixed_noise():
        with torch.no_grad():
            return diffusion_loss(state.model.eval(), latents, labels, training_scheduler(False),
                                  torch.Generator().manual_seed(99)).item()

    before = loss_at_fixed_noise()
    for _ in range(40):
        train_step(state, latents, labels, FINETUNE, seed=0)
    assert loss_at_fixed_noise() < 0.8 * before
    assert state.step == 40


def test_resume_continues_from_the_saved_step_exactly(tmp_path):
    latents, labels = fixed_batch()
    straight = fresh_state()
    for _ in range(6):
        train_step(straight, latents, labels, FINETUNE, seed=0)
    first = fresh_state()
    for _ in range(3):
        first.losses.append((first.step + 1, train_step(first, latents, labels, FINETUNE, 0)))
    save_checkpoint(first, str(tmp_path))
    resumed = new_state(build_model(FINETUNE, 4, (8, 4, 8, 8)), FINETUNE)  # other weights
    restore_checkpoint(resumed, str(tmp_path))
    assert resumed.step == 3 and resumed.losses == first.losses
    for _ in range(3):
        train_step(resumed, latents, labels, FINETUNE, seed=0)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert os.path.exists(tmp_path / "ema" / "config.json")


def test_tiny_vae_learns_and_round_trips_shapes():
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (32, 1, 1, 3), dtype=np.uint8), 32, 1).repeat(32, 2)
    vae, losses = train_tiny_vae(frames, steps=30, batch_size=8)
    assert np.mean(losses[-5:]) < losses[0]
    latents = encode_clips(vae, frames[:6].reshape(2, 3, 32, 32, 3))
    assert latents.shape == (2, 3, 4, 8, 8)
    assert abs(latents.std() - 1) < 0.5  # scaled to about unit variance
    assert decode_latents(vae, torch.from_numpy(latents)).shape == (2, 3, 32, 32, 3)
    assert isinstance(load_vae(None), type(vae))


def test_a_checkpoint_of_another_prediction_type_is_not_resumed(tmp_path):
    latents, labels = fixed_batch()
    first = fresh_state()
    train_step(first, latents, labels, FINETUNE, seed=0)
    save_checkpoint(first, str(tmp_path))
    as_velocity = dataclasses.replace(FINETUNE, prediction_type="v_prediction")
    other = new_state(build_model(as_velocity, 4, (8, 4, 8, 8)), as_velocity)
    with pytest.raises(ValueError, match="prediction_type"):
        restore_checkpoint(other, str(tmp_path))


def test_a_saved_model_is_not_fine_tuned_with_another_prediction_type(tmp_path):
    tiny(prediction_type="v_prediction").save_pretrained(tmp_path)
    from_saved = dataclasses.replace(FINETUNE, model=str(tmp_path))
    with pytest.raises(ValueError, match="finetune.prediction_type"):
        build_model(from_saved, 4, (8, 4, 8, 8))
    same = dataclasses.replace(from_saved, prediction_type="v_prediction")
    assert build_model(same, 4, (8, 4, 8, 8)).config.prediction_type == "v_prediction"


def test_a_ucf101_checkpoint_rows_follow_latte_s_sorted_folder_order():
    assert LATTE_UCF101_CLASSES.index("HammerThrow") < LATTE_UCF101_CLASSES.index("Hammering")
    assert UCF101_CLASSES.index("Hammering") < UCF101_CLASSES.index("HammerThrow")
    assert sorted(LATTE_UCF101_CLASSES) == sorted(UCF101_CLASSES) and len(UCF101_CLASSES) == 101


def labelled_table(model, names):
    """Give row i of ``model``'s label table the value i + 1 in every entry (the null row: -1)."""
    table = model.class_embedding.embedding_table.weight
    with torch.no_grad():
        table.copy_(torch.arange(1, len(table) + 1, dtype=table.dtype)[:, None].expand_as(table))
        table[-1] = -1.0
    return {name: index + 1 for index, name in enumerate(names)}


def test_label_rows_are_matched_by_class_name_and_the_others_start_new(tmp_path):
    source_names = ["walk", "run", "jump", "swim"]
    source = tiny(num_classes=4)
    value_of = labelled_table(source, source_names)
    path = str(tmp_path / "latte.pt")
    torch.save(original_format(source), path)
    run_names = ["swim", "dance", "walk"]
    model = ClassConditionalLatte(num_classes=3, class_names=run_names, **TINY_LATTE)
    fresh = model.class_embedding.embedding_table.weight.detach().clone()
    report = load_matching(model, read_state_dict(path), source_classes=source_names)
    table = model.class_embedding.embedding_table.weight
    assert torch.all(table[0] == value_of["swim"]) and torch.all(table[2] == value_of["walk"])
    assert torch.equal(table[1], fresh[1])  # "dance" is not in the source: a new row
    assert torch.all(table[-1] == -1.0)  # the null row always carries over
    assert (report.class_rows_by_name, report.class_rows_new) == (2, 1)


def test_a_same_sized_table_in_another_order_is_reordered_by_name(tmp_path):
    source = tiny(num_classes=4)
    value_of = labelled_table(source, ["a", "b", "c", "d"])
    path = str(tmp_path / "latte.pt")
    torch.save(original_format(source), path)
    names = ["d", "c", "b", "a"]
    model = ClassConditionalLatte(num_classes=4, class_names=names, **TINY_LATTE)
    report = load_matching(model, read_state_dict(path), source_classes=["a", "b", "c", "d"])
    table = model.class_embedding.embedding_table.weight
    for row, name in enumerate(names):
        assert torch.all(table[row] == value_of[name])
    assert report.class_rows_by_name == 4 and not report.skipped_shape


def test_the_public_ucf101_layout_is_mapped_by_name_without_a_classes_file(tmp_path):
    source = ClassConditionalLatte(num_classes=101, **TINY_LATTE)
    value_of = labelled_table(source, LATTE_UCF101_CLASSES)
    path = str(tmp_path / "ucf101.pt")
    torch.save({"ema": original_format(source)}, path)
    model, report = load_latte(path, num_classes=2, class_names=["Hammering", "HammerThrow"],
                               **TINY_LATTE)
    table = model.class_embedding.embedding_table.weight
    assert torch.all(table[0] == value_of["Hammering"])
    assert torch.all(table[1] == value_of["HammerThrow"])
    assert report.class_rows_by_name == 2


def test_a_classes_file_names_the_rows_of_another_checkpoint(tmp_path):
    source = tiny(num_classes=4)
    value_of = labelled_table(source, ["a", "b", "c", "d"])
    path = str(tmp_path / "latte.pt")
    torch.save(original_format(source), path)
    listing = tmp_path / "classes.txt"
    listing.write_text("a\nb\nc\nd\n")
    model, report = load_latte(path, num_classes=1, class_names=["c"],
                               model_classes=str(listing), **TINY_LATTE)
    assert torch.all(model.class_embedding.embedding_table.weight[0] == value_of["c"])
    listing.write_text("a\nb\n")
    with pytest.raises(ValueError, match="finetune.model_classes.*2 class names.*5 rows"):
        load_latte(path, num_classes=1, class_names=["c"], model_classes=str(listing),
                   **TINY_LATTE)


def test_a_saved_run_model_carries_its_class_names_into_the_next_fine_tuning(tmp_path):
    first = ClassConditionalLatte(num_classes=3, class_names=["x", "y", "z"], **TINY_LATTE)
    value_of = labelled_table(first, ["x", "y", "z"])
    first.save_pretrained(tmp_path)
    model, report = load_latte(str(tmp_path), num_classes=2, class_names=["z", "x"])
    table = model.class_embedding.embedding_table.weight
    assert torch.all(table[0] == value_of["z"]) and torch.all(table[1] == value_of["x"])
    assert model.config.class_names == ["z", "x"] and report.class_rows_by_name == 2


def test_a_classes_file_that_is_empty_or_names_a_class_twice_is_refused(tmp_path):
    listing = tmp_path / "classes.txt"
    for text, problem in (("\n\n", "names no class"), ("a\nb\na\n", "names 'a' twice")):
        listing.write_text(text)
        with pytest.raises(ValueError, match=f"finetune.model_classes: .*classes.txt {problem}"):
            read_class_names(str(listing))


def test_ucf101_rows_refused_for_a_table_of_another_size(tmp_path):
    path = str(tmp_path / "latte.pt")
    torch.save(original_format(tiny(num_classes=4)), path)
    with pytest.raises(ValueError, match="101 class names for a label table of 5 rows"):
        load_latte(path, num_classes=1, class_names=["Archery"], model_classes="ucf101",
                   **TINY_LATTE)


def test_class_names_must_name_every_class():
    with pytest.raises(ValueError, match="class_names names 2 classes, num_classes is 3"):
        ClassConditionalLatte(num_classes=3, class_names=["a", "b"], **TINY_LATTE)


def test_a_saved_model_without_class_names_is_taken_row_for_row(tmp_path):
    first = ClassConditionalLatte(num_classes=3, **TINY_LATTE)  # as saved before names existed
    first.save_pretrained(tmp_path)
    model, report = load_latte(str(tmp_path), num_classes=3, class_names=["z", "y", "x"])
    assert torch.equal(model.class_embedding.embedding_table.weight,
                       first.class_embedding.embedding_table.weight)
    assert report.class_rows_by_name is None
