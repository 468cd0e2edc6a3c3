"""Original VideoMAE V2 checkpoints → transformers VideoMAE (raydistill.embedding.videomae_v2).

The reference model below is written after the structure of ``models/modeling_finetune.py`` of
OpenGVLab/VideoMAEv2 (``VisionTransformer`` with mean pooling): a tubelet Conv3d patch embedding,
a fixed sin-cos position table, pre-norm blocks whose attention has one bias-free ``qkv`` Linear
plus ``q_bias`` / ``v_bias``, then mean pooling, ``fc_norm`` and ``head``. Random weights, small
sizes; the converted transformers model must give the same features and logits. Nothing is
downloaded: conftest sets ``HF_HUB_OFFLINE=1`` before this module is imported.
"""

import argparse
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raydistill.embedding.videomae import (VideoMAEEmbedder, embedding_name, load_videomae,
                                           pixel_values, videomae_input_shape)
from raydistill.embedding.videomae_v2 import (is_original_checkpoint, load_original_videomae,
                                              main, original_config, read_class_names,
                                              videomae_from_original)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
TOL = 1e-4


# -- the reference: VideoMAE V2's fine-tuning ViT, small ------------------------------------------

def sincos_table(positions: int, dim: int) -> torch.Tensor:
    """(1, positions, dim): angle pos / 10000^(2⌊j/2⌋/dim), sine on even j, cosine on odd j."""
    exponent = 2 * (np.arange(dim) // 2) / dim
    angles = np.arange(positions)[:, None] / np.power(10000, exponent)[None, :]
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.tensor(angles, dtype=torch.float32)[None]


class RefPatchEmbed(nn.Module):
    def __init__(self, dim, patch, tubelet):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, (tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, x):  # (B, C, T, H, W) → (B, N, D)
        return self.proj(x).flatten(2).transpose(1, 2)


class RefAttention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        bias = (None if self.q_bias is None else
                torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias]))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


class RefMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim, heads, hidden, qkv_bias):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = RefMlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefViT(nn.Module):
    def __init__(self, dim=64, depth=2, heads=4, hidden=160, patch=8, tubelet=2, frames=4,
                 size=32, classes=5, qkv_bias=True):
        super().__init__()
        self.patch_embed = RefPatchEmbed(dim, patch, tubelet)
        # A plain attribute, as in the original: the table is not part of the state dict.
        self.pos_embed = sincos_table((frames // tubelet) * (size // patch) ** 2, dim)
        self.blocks = nn.ModuleList(RefBlock(dim, heads, hidden, qkv_bias) for _ in range(depth))
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def features(self, x):  # (B, C, T, H, W) → fc_norm of the token mean (B, D)
        x = self.patch_embed(x) + self.pos_embed.to(x)
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x.mean(1))

    def forward(self, x):
        return self.head(self.features(x))


def reference(seed=0, **sizes) -> RefViT:
    """A RefViT with every parameter random: LayerNorm gains/shifts, q_bias/v_bias and biases
    too, so a swapped norm, bias or q/k/v block changes the output."""
    torch.manual_seed(seed)
    model = RefViT(**sizes)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            elif name.endswith(("bias", "q_bias", "v_bias")):
                parameter.copy_(0.3 * torch.randn_like(parameter))
    return model.eval()


def clips_for(frames, size, count=2, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, frames, size, size, 3), np.uint8)


def reference_outputs(model: RefViT, clips: np.ndarray):
    """Features and logits of the reference for uint8 clips (B, T, H, W, 3)."""
    pixels = pixel_values(clips, IMAGENET_MEAN, IMAGENET_STD)  # (B, T, C, H, W)
    with torch.no_grad():
        features = model.features(pixels.permute(0, 2, 1, 3, 4))
        return features, model.head(features)


def converted_outputs(model, clips: np.ndarray):
    pixels = pixel_values(clips, IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        hidden = model.videomae(pixels).last_hidden_state
        return model.fc_norm(hidden.mean(1)), model(pixels).logits


# -- conversion ---------------------------------------------------------------------------------

@pytest.mark.parametrize("qkv_bias", [True, False])
def test_converted_model_gives_the_original_features_and_logits(qkv_bias):
    ref = reference(qkv_bias=qkv_bias)
    assert qkv_bias == ("blocks.0.attn.q_bias" in ref.state_dict())
    model = videomae_from_original(ref.state_dict(), num_heads=4, num_frames=4, image_size=32)
    clips = clips_for(4, 32)
    features, logits = converted_outputs(model, clips)
    want_features, want_logits = reference_outputs(ref, clips)
    assert features.shape == (2, 64) and logits.shape == (2, 5)
    torch.testing.assert_close(features, want_features, atol=TOL, rtol=0)
    torch.testing.assert_close(logits, want_logits, atol=TOL, rtol=0)
    assert not model.training and model.fc_norm.eps == 1e-6
    assert model.config.qv_bias == qkv_bias


def test_sizes_are_read_from_the_shapes_and_heads_from_the_width():
    ref = reference(dim=96, depth=3, heads=4, hidden=200, patch=4, tubelet=1, classes=7)
    config = original_config(ref.state_dict(), num_heads=4, num_frames=4, image_size=32)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size,
            config.patch_size, config.tubelet_size, config.num_labels) == (96, 3, 200, 4, 1, 7)
    assert config.layer_norm_eps == 1e-6 and config.use_mean_pooling
    assert config.id2label[6] == "LABEL_6"
    with pytest.raises(ValueError, match="width 96 is none of the ViT sizes"):
        original_config(ref.state_dict())
    small = reference(dim=384, depth=1, heads=6, hidden=64, patch=8, classes=3)
    assert original_config(small.state_dict()).num_attention_heads == 6  # ViT-S


def test_the_giant_layout_converts_at_full_size_without_memory():
    """vit_giant_patch14_224 (1408 wide, 40 blocks, MLP 6144, 710 classes) on the meta device:
    the key mapping and every shape at the real size, in no time."""
    with torch.device("meta"):
        giant = RefViT(dim=1408, depth=40, heads=16, hidden=6144, patch=14, tubelet=2,
                       frames=2, size=28, classes=710)
    # 2×28² clips: transformers builds 16×224²'s 2048×1408 position table in seconds of Python
    model = videomae_from_original(giant.state_dict(), "giant", num_frames=2, image_size=28)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size,
            c.patch_size, c.tubelet_size, c.num_labels) == (1408, 40, 16, 6144, 14, 2, 710)
    attention = model.videomae.encoder.layer[39].attention.attention
    assert attention.query.bias.shape == (1408,) and attention.key.bias is None
    assert model.videomae.embeddings.position_embeddings.shape == (1, 4, 1408)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RAYDISTILL_VIDEOMAE_V2_GIANT") != "1",
                    reason="set RAYDISTILL_VIDEOMAE_V2_GIANT=1 (~5.5 GB of memory, ~1 min on CPU)")
def test_a_random_giant_gives_the_original_features():
    """The real ViT-g size with random weights (full 16×224² clips on a GPU; 2 frames on CPU)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    frames = 16 if device == "cuda" else 2
    ref = reference(dim=1408, depth=40, heads=16, hidden=6144, patch=14, tubelet=2,
                    frames=frames, size=224, classes=710)
    model = videomae_from_original(ref.state_dict(), "giant", num_frames=frames)
    clips = clips_for(frames, 224, count=1)
    pixels = pixel_values(clips, IMAGENET_MEAN, IMAGENET_STD).to(device)
    with torch.no_grad():
        ref.to(device)
        ref.pos_embed = ref.pos_embed.to(device)
        want = ref.features(pixels.permute(0, 2, 1, 3, 4))
        got = model.to(device).fc_norm(model.videomae(pixels).last_hidden_state.mean(1))
    assert got.shape == (1, 1408)
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)


# -- checkpoint files ---------------------------------------------------------------------------

def prefixed(state, prefix):
    return {prefix + key: value for key, value in state.items()}


WRAPPINGS = {
    "plain": lambda s: s,
    "module": lambda s: {"module": prefixed(s, "module.")},
    "model+args": lambda s: {"model": s, "epoch": 29,
                             "args": argparse.Namespace(model="vit_giant_patch14_224")},
    "backbone+cls_head": lambda s: {"state_dict": {
        **prefixed({k: v for k, v in s.items() if not k.startswith("head.")}, "backbone."),
        "cls_head.fc_cls.weight": s["head.weight"], "cls_head.fc_cls.bias": s["head.bias"]}},
}


@pytest.mark.parametrize("wrapping", sorted(WRAPPINGS))
def test_wrapped_and_prefixed_checkpoints_load_the_same_weights(tmp_path, wrapping):
    ref = reference()
    path = tmp_path / "vit.pth"
    torch.save(WRAPPINGS[wrapping](ref.state_dict()), path)
    assert is_original_checkpoint(str(path))
    model = load_original_videomae(str(path), num_heads=4, num_frames=4, image_size=32)
    features, logits = converted_outputs(model, clips_for(4, 32))
    want_features, want_logits = reference_outputs(ref, clips_for(4, 32))
    torch.testing.assert_close(features, want_features, atol=TOL, rtol=0)
    torch.testing.assert_close(logits, want_logits, atol=TOL, rtol=0)


def test_half_precision_checkpoints_become_float32(tmp_path):
    ref = reference()
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in ref.state_dict().items()}, path)
    model = load_original_videomae(str(path), num_heads=4, num_frames=4, image_size=32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    features, _ = converted_outputs(model, clips_for(4, 32))
    want, _ = reference_outputs(ref, clips_for(4, 32))
    torch.testing.assert_close(features, want, atol=2e-2, rtol=0)  # fp16 weights: 1e-3 relative


def test_class_names_file_is_one_name_per_line(tmp_path):
    names = tmp_path / "labels.txt"
    names.write_text("abseiling\n\nair drumming\r\nanswering questions\n")
    assert read_class_names(str(names)) == ["abseiling", "air drumming", "answering questions"]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="empty.txt: holds no class names"):
        read_class_names(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="absent.txt: cannot read class names"):
        read_class_names(str(tmp_path / "absent.txt"))


def test_bad_checkpoints_fail_with_the_file_and_key_named(tmp_path):
    state = reference().state_dict()
    sizes = {"num_heads": 4, "num_frames": 4, "image_size": 32}

    def saved(name, content):
        torch.save(content, tmp_path / name)
        return str(tmp_path / name)

    missing = saved("missing.pth", {k: v for k, v in state.items()
                                    if k != "blocks.1.mlp.fc2.bias"})
    with pytest.raises(ValueError, match=r"missing\.pth: missing key blocks\.1\.mlp\.fc2\.bias"):
        load_original_videomae(missing, **sizes)
    no_head = saved("no_head.pth", {k: v for k, v in state.items() if not k.startswith("head")})
    with pytest.raises(ValueError, match=r"no_head\.pth: missing key head\.weight \(and 1 more"):
        load_original_videomae(no_head, **sizes)
    scaled = saved("scaled.pth", {**state, "blocks.0.gamma_1": torch.ones(64)})
    with pytest.raises(ValueError, match=r"scaled\.pth: unexpected key blocks\.0\.gamma_1: "
                                         "layer scale"):
        load_original_videomae(scaled, **sizes)
    pretrain = saved("pretrain.pth", prefixed(state, "encoder."))
    with pytest.raises(ValueError, match=r"pretrain\.pth: not a VideoMAE V2 checkpoint: no "
                                         r"blocks\.N\.\* keys .*pre-training checkpoint"):
        load_original_videomae(pretrain, **sizes)
    wrong_shape = saved("shape.pth", {**state, "blocks.1.mlp.fc1.weight": torch.zeros(99, 64)})
    with pytest.raises(ValueError, match=r"shape\.pth: blocks\.1\.mlp\.fc1\.weight has shape "
                                         r"\(99, 64\), but .* width 64 .* needs \(160, 64\)"):
        load_original_videomae(wrong_shape, **sizes)
    not_tensors = saved("other.pth", {"model": {"weights": [1, 2, 3]}})
    with pytest.raises(ValueError, match=r"other\.pth: not a VideoMAE V2 checkpoint \('weights'"):
        load_original_videomae(not_tensors)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pth: cannot be read with torch\.load"
                                         r"\(weights_only=True\)"):
        load_original_videomae(str(tmp_path / "text.pth"))
    pickled = saved("pickled.pth", {"model": state, "extra": np.random.default_rng(0)})
    with pytest.raises(ValueError, match=r"pickled\.pth: cannot be read with torch\.load"):
        load_original_videomae(pickled)
    with pytest.raises(ValueError, match=r"gone\.pth: no such file"):
        load_videomae(str(tmp_path / "gone.pth"))


# -- the embedder and the converter command -----------------------------------------------------

def test_embed_model_can_name_the_pth_file_itself(tmp_path):
    """``embed.model: …/vit.pth``: clips of 16×224² (the V2 defaults), the original's
    ``fc_norm`` features; a head without class names gives no scores."""
    sizes = {"dim": 384, "depth": 1, "heads": 6, "hidden": 128, "patch": 32, "frames": 16,
             "size": 224}  # ViT-S width: 6 heads, inferred
    ref = reference(**sizes)
    path = tmp_path / "vit_g_hybrid_pt_1200e_k710_ft.pth"
    torch.save({"module": ref.state_dict()}, path)
    assert videomae_input_shape(str(path)) == (16, 224)
    assert embedding_name(str(path)) == "vit_g_hybrid_pt_1200e_k710_ft.pth"
    embedder = VideoMAEEmbedder(str(path), ["a", "b"], batch_size=2, device="cpu")
    assert (embedder.num_frames, embedder.size, embedder.features) == (16, 224, "fc_norm")
    clips = clips_for(16, 224, count=3)
    out = embedder(clips, np.array([0, 1, 0]))
    want, _ = reference_outputs(ref, clips)
    np.testing.assert_allclose(out["embedding"], want.numpy(), atol=TOL, rtol=0)
    assert np.isnan(out["score"]).all() and (out["predicted"] == -1).all()


def test_converter_command_writes_a_folder_whose_labels_match_the_run(tmp_path, capsys):
    ref = reference()
    source = tmp_path / "vit.pth"
    torch.save({"model": ref.state_dict()}, source)
    labels = tmp_path / "labels.txt"
    labels.write_text("Abseiling\nair drumming\nanswering questions\napplauding\nbowling\n")
    dest = tmp_path / "converted"
    assert main([str(source), str(dest), "--classes", str(labels), "--num-heads", "4",
                 "--frames", "4", "--size", "32"]) == 0
    assert "64, 2 blocks, 4 heads, 5 classes, 4×32² clips" in capsys.readouterr().out
    assert load_videomae(str(dest)).fc_norm.eps == 1e-6  # restored from the saved config
    run_classes = ["bowling", "abseiling", "Air-Drumming"]
    embedder = VideoMAEEmbedder(str(dest), run_classes, batch_size=4, device="cpu")
    clips, run_labels = clips_for(4, 32, count=3), np.array([2, 0, 1])
    out = embedder(clips, run_labels)
    want_features, want_logits = reference_outputs(ref, clips)
    np.testing.assert_allclose(out["embedding"], want_features.numpy(), atol=TOL, rtol=0)
    head_rows = np.array([4, 0, 1])  # each run class's row of the head
    probabilities = want_logits.softmax(-1).numpy()[:, head_rows]
    np.testing.assert_allclose(out["score"], probabilities[np.arange(3), run_labels],
                               atol=TOL, rtol=0)
    assert out["predicted"].tolist() == probabilities.argmax(1).tolist()


def test_converter_command_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "vit.pth"
    torch.save(reference().state_dict(), source)
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\n")
    dest = tmp_path / "out"
    assert main([str(source), str(dest), "--classes", str(labels), "--num-heads", "4"]) == 2
    assert "labels.txt: 2 class names, but the head of" in capsys.readouterr().err
    assert main([str(source), str(dest)]) == 2  # width 64: heads cannot be told
    assert "give the number of attention heads" in capsys.readouterr().err
    assert not dest.exists()
