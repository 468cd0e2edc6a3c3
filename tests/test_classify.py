"""Classifiers, clip augmentation and the in-process training loop of the evaluate stage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from raydistill.classify.augment import (Augmentation, augment_clips, clips_on, jitter_indices,
                                         pinned_copy, to_model_input)
from raydistill.classify.models import (C3D, CLASSIFIERS, PAPER_CLASSIFIERS, TOY_CLASSIFIERS,
                                        ConvNet3D, VideoTransformer, build_classifier)
from raydistill.classify.training import (TrainSettings, evaluate, fit_classifier, load_state,
                                          make_optimizer, make_scheduler, predict, save_state,
                                          train_one_epoch)

PLAIN = Augmentation(crop="none", flip=False, temporal_jitter=False)


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- classifiers -------------------------------------------------------------------------------

def test_c3d_at_paper_size_gives_logits_and_has_about_78m_parameters():
    model = PAPER_CLASSIFIERS.build("c3d", 101)
    # 27.7 M conv + fc6 8192×4096 + fc7 4096×4096 + fc8 4096×101 (with biases) = 78.41 M.
    assert n_parameters(model) == pytest.approx(78.4e6, rel=0.01)
    assert model.classifier[1].in_features == 512 * 1 * 4 * 4
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 112, 112)).shape == (1, 101)


@pytest.mark.parametrize("name", ["convnet3d", "transformer"])
def test_other_classifiers_at_paper_size_give_logits(name):
    model = PAPER_CLASSIFIERS.build(name, 50).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 112, 112)).shape == (1, 50)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_every_classifier_at_toy_size_gives_logits(name):
    model = TOY_CLASSIFIERS.build(name, 8)
    assert (model.frames, model.size, model.num_classes) == (8, 32, 8)
    out = model(torch.randn(2, 3, 8, 32, 32))
    assert out.shape == (2, 8)
    out.sum().backward()  # trainable end to end
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_c3d_fc_input_follows_frames_size_and_width():
    # 8 frames run out before pool5: the temporal pool that would empty the clip is skipped.
    assert C3D(5, frames=8, size=32, width=1 / 16).classifier[1].in_features == 32 * 1 * 2 * 2
    assert C3D(5, frames=16, size=64, width=0.25).classifier[1].in_features == 128 * 1 * 3 * 3
    bn = C3D(5, frames=8, size=32, width=1 / 16, batch_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in bn.modules())


class ReferenceConvNet3D(torch.nn.Module):
    """Wang et al.'s ConvNet3D (CVPR 2024, github.com/yuz1wan/video_distillation), as its
    ``utils.get_network`` builds it: width 128, depth 3, ReLU, no norm, max pooling; written here
    from the structure of its ``networks.py``. Takes (B, T, C, H, W) clips, as the original."""

    def __init__(self, num_classes: int, size: int):
        super().__init__()
        layers, channels = [], 3
        for block, out in enumerate((64, 128, 128)):
            layers.append(torch.nn.Conv3d(channels, out, kernel_size=(3, 7, 7),
                                          stride=(1, 2, 2), padding=(1, 3, 3)))
            layers.append(torch.nn.ReLU(inplace=True))
            layers.append(torch.nn.MaxPool3d((1, 2, 2), (1, 2, 2)) if block == 0
                          else torch.nn.MaxPool3d(2, 2))
            channels = out
        self.features = torch.nn.Sequential(*layers)
        self.avg_pool = torch.nn.AvgPool3d((2, 2, 2) if size > 64 else (2, 1, 1), stride=1)
        self.dropout = torch.nn.Dropout(0.5)
        self.logit = torch.nn.Conv3d(128, num_classes, kernel_size=1)

    def forward(self, x):
        out = self.logit(self.dropout(self.avg_pool(self.features(x.permute(0, 2, 1, 3, 4)))))
        return out.squeeze(3).squeeze(3).max(dim=2).values  # (B, classes, T', 1, 1) → (B, classes)


def layer_signature(module: torch.nn.Module) -> list:
    """Each layer's type with its kernel, stride and padding (where it has them)."""
    def pair(value):
        return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3
    return [(type(layer).__name__,) + tuple(pair(getattr(layer, name)) for name in
                                           ("kernel_size", "stride", "padding")
                                           if hasattr(layer, name))
            for layer in module.modules() if not list(layer.children())]


@pytest.mark.parametrize("frames, size", [(16, 112), (16, 64)])
def test_convnet3d_is_the_video_distillation_benchmarks_convnet3d(frames, size):
    torch.manual_seed(0)
    reference = ReferenceConvNet3D(50, size).eval()
    ours = build_classifier("convnet3d", 50, frames, size,
                            **PAPER_CLASSIFIERS.options("convnet3d")).eval()
    assert layer_signature(ours) == layer_signature(reference)
    assert [p.shape for p in ours.parameters()] == [p.shape for p in reference.parameters()]
    ours.load_state_dict(dict(zip(ours.state_dict(), reference.state_dict().values())))
    clips = torch.randn(2, frames, 3, size, size)  # the original's (B, T, C, H, W)
    with torch.no_grad():
        expected = reference(clips)
        got = ours(clips.transpose(1, 2))  # ours takes (B, C, T, H, W), as every classifier here
    assert got.shape == (2, 50)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    if size == 112:  # 28.3 k + 1.20 M + 2.41 M conv weights and biases + 6.45 k head
        assert n_parameters(ours) == 3_647_666


def test_convnet3d_options_norm_and_a_geometry_it_cannot_classify():
    model = ConvNet3D(4, frames=8, size=32, width=16, stem_width=8, norm="instancenorm")
    norms = [m for m in model.features if isinstance(m, torch.nn.GroupNorm)]
    assert [m.num_channels for m in norms] == [8, 16, 16]
    assert all(m.num_groups == m.num_channels for m in norms)
    assert model(torch.randn(2, 3, 8, 32, 32)).shape == (2, 4)  # the toy size: pools skipped
    with pytest.raises(ValueError, match="classifies a 1×1 map; 224² frames leave 2×2"):
        ConvNet3D(4, frames=16, size=224)


def test_unknown_names_and_invalid_sizes_raise_value_errors():
    with pytest.raises(ValueError, match="unknown classifier 'resnet'"):
        build_classifier("resnet", 10, 16, 112)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build_classifier("transformer", 10, 8, 30, patch_size=8)
    with pytest.raises(ValueError, match="unknown norm"):
        build_classifier("convnet3d", 10, 8, 32, norm="layer")
    with pytest.raises(ValueError, match="bad options"):
        build_classifier("c3d", 10, 8, 32, depth=3)
    with pytest.raises(ValueError, match="num_classes"):
        build_classifier("c3d", 1, 8, 32)


def test_transformer_loads_a_local_pretrained_videomae_with_a_new_head(tmp_path):
    source = VideoTransformer(5, frames=4, size=16, patch_size=8, hidden_size=32)
    source.videomae.save_pretrained(tmp_path)
    model = VideoTransformer(3, frames=4, size=16, pretrained=str(tmp_path))
    assert model(torch.randn(1, 3, 4, 16, 16)).shape == (1, 3)
    first = "videomae.videomae.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(model.state_dict()[first], source.state_dict()[first])


# --- augmentation ------------------------------------------------------------------------------

def random_clips(batch=3, frames=16, size=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, frames, size, size, 3), np.uint8)


def test_augmentation_is_deterministic_for_a_seed_and_shapes_the_batch():
    clips = random_clips()
    first = augment_clips(clips, 8, 32, Augmentation(), torch.Generator().manual_seed(1))
    again = augment_clips(clips, 8, 32, Augmentation(), torch.Generator().manual_seed(1))
    other = augment_clips(clips, 8, 32, Augmentation(), torch.Generator().manual_seed(2))
    assert first.shape == (3, 3, 8, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    padded = augment_clips(torch.from_numpy(clips), 8, 32, Augmentation(crop="pad"),
                           torch.Generator().manual_seed(1))
    assert padded.shape == (3, 3, 8, 32, 32)


def half_bright_clips(batch=16):
    """Clips whose left half is white and right half black."""
    clips = np.zeros((batch, 8, 32, 32, 3), np.uint8)
    clips[:, :, :, :16] = 255
    return clips


def test_flip_off_keeps_left_and_right_and_flip_on_mirrors_some_clips():
    def left_brighter(augmentation):
        out = augment_clips(half_bright_clips(), 8, 32, augmentation,
                            torch.Generator().manual_seed(0))
        return (out[..., :16].mean(dim=(1, 2, 3, 4)) > out[..., 16:].mean(dim=(1, 2, 3, 4)))

    assert left_brighter(Augmentation(flip=False, min_scale=0.5)).all()
    mirrored = ~left_brighter(dataclasses.replace(PLAIN, flip=True))
    assert 0 < int(mirrored.sum()) < 16


def test_temporal_jitter_keeps_an_even_stride_inside_the_clip():
    generator = torch.Generator().manual_seed(0)
    draws = [jitter_indices(16, 8, generator) for _ in range(50)]
    for indices in draws:
        steps = np.diff(indices)
        assert indices.min() >= 0 and indices.max() <= 15 and (steps == steps[0]).all()
    assert {int(np.diff(d)[0]) for d in draws} == {1, 2}
    assert len({int(d[0]) for d in draws}) > 1
    assert (jitter_indices(4, 8, generator) == [0, 0, 1, 1, 2, 2, 3, 3]).all()


def test_model_input_samples_frames_uniformly_and_normalises():
    clips = np.zeros((1, 16, 64, 64, 3), np.uint8)
    clips[0] = np.arange(16, dtype=np.uint8)[:, None, None, None] * 10
    out = to_model_input(clips, frames=4, size=32, mean=(0, 0, 0), std=(1, 1, 1))
    assert out.shape == (1, 3, 4, 32, 32)
    # Uniform sampling takes the centres of 4 segments of 16 frames: 2, 6, 10, 14.
    assert torch.allclose(out[0, 0, :, 0, 0] * 255, torch.tensor([20.0, 60, 100, 140]))
    grey = np.full((1, 2, 8, 8, 3), 128, np.uint8)
    normalised = to_model_input(grey, 2, 8, mean=(128 / 255,) * 3, std=(0.5,) * 3)
    assert torch.allclose(normalised, torch.zeros_like(normalised), atol=1e-6)
    with pytest.raises(ValueError, match="uint8 clips"):
        to_model_input(grey.astype(np.float32), 2, 8)


def test_read_only_clips_reach_the_device_as_uint8_after_one_copy():
    clips = np.arange(2 * 2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 2, 4, 4, 3)
    clips.flags.writeable = False  # as Arrow hands a tensor column over
    copied = pinned_copy(clips, pin=False)  # pin=True needs CUDA; the copy is the same
    assert copied.dtype == torch.uint8 and np.array_equal(copied.numpy(), clips)
    assert not np.shares_memory(copied.numpy(), clips)
    on_cpu = clips_on(clips, "cpu")
    assert on_cpu.dtype == torch.uint8 and np.array_equal(on_cpu.numpy(), clips)
    with pytest.raises(ValueError, match=r"uint8 clips of shape \(B, T, H, W, 3\), got "
                                         r"float32 \(2, 2, 4, 4\)"):
        pinned_copy(np.zeros((2, 2, 4, 4), np.float32), pin=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA GPU")
def test_read_only_clips_reach_a_gpu_through_one_pinned_copy():
    clips = np.arange(2 * 2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 2, 4, 4, 3)
    clips.flags.writeable = False
    assert pinned_copy(clips).is_pinned()
    on_gpu = clips_on(clips, "cuda")
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.uint8
    assert np.array_equal(on_gpu.cpu().numpy(), clips)


# --- training ----------------------------------------------------------------------------------

def colour_clips(per_class=8, seed=0):
    """A trivially separable set: class c's clips are noisy and dominated by colour channel c."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    clips = rng.integers(0, 90, (len(labels), 4, 16, 16, 3))
    clips[np.arange(len(labels)), ..., labels] += 150
    return clips.astype(np.uint8), labels


def tiny_convnet():
    torch.manual_seed(0)
    return ConvNet3D(3, frames=4, size=16, depth=2, width=8)


FAST = TrainSettings(epochs=6, batch_size=8, lr=1e-2, weight_decay=0.0, optimizer="adam",
                     schedule="cosine", augmentation=Augmentation(crop="pad", pad=2), seed=3)


def test_a_tiny_fit_on_separable_clips_reaches_high_accuracy_deterministically():
    clips, labels = colour_clips()
    model = tiny_convnet()
    history = fit_classifier(model, clips, labels, FAST)
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, clips, labels)["top1"] >= 0.95
    rerun = tiny_convnet()
    assert fit_classifier(rerun, clips, labels, FAST) == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 rerun.state_dict().values()))


def test_predict_gives_probabilities_per_clip():
    clips, _ = colour_clips(per_class=2)
    probabilities = predict(tiny_convnet(), clips, batch_size=4)
    assert probabilities.shape == (6, 3)
    assert np.allclose(probabilities.sum(axis=1), 1)


def test_train_one_epoch_takes_clip_table_batches_and_returns_the_mean_loss():
    clips, labels = colour_clips(per_class=2)
    model = tiny_convnet()
    optimizer = make_optimizer(model, FAST)
    before = [p.detach().clone() for p in model.parameters()]
    batches = [{"clip": clips[:4], "label": labels[:4]}, {"clip": clips[4:], "label": labels[4:]}]
    loss = train_one_epoch(model, optimizer, batches, torch.Generator().manual_seed(0), PLAIN)
    assert np.isfinite(loss) and loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_step_schedule_divides_the_learning_rate_at_half_the_epochs():
    settings = TrainSettings(epochs=4, lr=0.1)
    optimizer = make_optimizer(tiny_convnet(), settings)
    scheduler = make_scheduler(optimizer, settings)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainSettings(optimizer="lamb")


def small_c3d():
    torch.manual_seed(0)  # dropout and BatchNorm: the resumed run must restore the global RNG too
    return C3D(3, frames=4, size=16, width=1 / 16, batch_norm=True, fc_dim=16)


def test_an_interrupted_fit_resumes_from_its_checkpoint_identically(tmp_path):
    clips, labels = colour_clips(per_class=4)
    settings = TrainSettings(epochs=4, batch_size=4, lr=0.01, seed=1,
                             augmentation=Augmentation(crop="pad", pad=2))
    straight = small_c3d()
    expected = fit_classifier(straight, clips, labels, settings)

    class Interrupted(Exception):
        pass

    def stop_after_two(entry):
        if entry["epoch"] == 2:
            raise Interrupted

    path = tmp_path / "state.pt"
    with pytest.raises(Interrupted):
        fit_classifier(small_c3d(), clips, labels, settings, path, on_epoch=stop_after_two)
    assert load_state(path, small_c3d()).epoch == 2
    resumed = small_c3d()
    assert fit_classifier(resumed, clips, labels, settings, path) == expected
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(),
                                                 resumed.state_dict().values()))


def test_save_and_load_state_round_trip_model_optimizer_scheduler_and_generator(tmp_path):
    model = small_c3d()
    optimizer = make_optimizer(model, TrainSettings())
    scheduler = make_scheduler(optimizer, TrainSettings(epochs=2))
    clips, labels = colour_clips(per_class=2)
    generator = torch.Generator().manual_seed(5)
    train_one_epoch(model, optimizer, [(clips, labels)], generator, PLAIN)
    scheduler.step()
    save_state(tmp_path / "s.pt", model, optimizer, scheduler, 1, generator, [{"epoch": 1}])
    twin = small_c3d()
    twin_optimizer = make_optimizer(twin, TrainSettings())
    twin_scheduler = make_scheduler(twin_optimizer, TrainSettings(epochs=2))
    twin_generator = torch.Generator()
    saved = load_state(tmp_path / "s.pt", twin, twin_optimizer, twin_scheduler, twin_generator)
    assert saved.epoch == 1 and saved.history == [{"epoch": 1}]
    assert twin_scheduler.state_dict() == scheduler.state_dict()
    assert torch.equal(twin_generator.get_state(), generator.get_state())
    assert str(twin_optimizer.state_dict()) == str(optimizer.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 twin.state_dict().values()))


def test_min_steps_raises_the_epochs_of_a_small_training_set_only():
    settings = TrainSettings(epochs=30, batch_size=16, min_steps=300)
    assert settings.for_clips(8).epochs == 300          # one video per class of 8: one batch
    assert settings.for_clips(40).epochs == 100         # 3 batches an epoch
    assert settings.for_clips(320) is settings          # 20 batches × 30 epochs ≥ 300 steps
    assert settings.for_clips(40, workers=2).epochs == 150  # 2 batches per worker an epoch
    assert TrainSettings(epochs=5).for_clips(8).epochs == 5  # min_steps 0: epochs as given
    with pytest.raises(ValueError, match="min_steps"):
        TrainSettings(min_steps=-1)


def test_fit_classifier_trains_at_least_min_steps():
    clips = np.zeros((4, 4, 16, 16, 3), np.uint8)
    model = C3D(2, frames=4, size=16, width=1 / 16)
    history = fit_classifier(model, clips, np.array([0, 1, 0, 1]),
                             TrainSettings(epochs=2, batch_size=4, min_steps=5,
                                           optimizer="adam", lr=1e-3))
    assert len(history) == 5
