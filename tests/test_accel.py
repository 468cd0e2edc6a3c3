"""The GPU fast paths are no-ops on a CPU: a laptop run computes what it computed before; the
settings are validated by name; VST-UNet's whitening survives bf16 autocast."""

import pytest
import torch

from raydistill.accel import FastPaths, autocast, compiled, to_device
from raydistill.config import ConfigError, RunConfig, from_dict
from raydistill.selection.vst_unet import whiten_over_videos


def test_every_fast_path_leaves_a_cpu_run_as_it_was():
    model = torch.nn.Conv3d(3, 4, 1)
    fast = FastPaths(mixed_precision="bf16", compile=True, channels_last=True)
    with fast.autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
    assert fast.model(model, "cpu") is model
    assert model._compiled_call_impl is None  # not compiled on a CPU
    assert model.weight.is_contiguous()  # memory order unchanged
    clips = torch.rand(2, 3, 4, 8, 8)
    moved = fast.inputs(clips, "cpu")
    assert moved.is_contiguous() and torch.equal(moved, clips)
    assert to_device(clips, "cpu") is clips
    with autocast("cpu", "bf16"):
        assert model(clips).dtype == torch.float32


def test_compiled_compiles_a_module_in_place_only_when_asked_on_a_gpu():
    model = torch.nn.Linear(2, 2)
    assert compiled(model, False, "cuda") is model and model._compiled_call_impl is None
    assert compiled(model, True, "cpu") is model and model._compiled_call_impl is None
    names = list(model.state_dict())
    assert compiled(model, True, "cuda") is model and model._compiled_call_impl is not None
    assert list(model.state_dict()) == names  # checkpoints keep their keys


@pytest.mark.parametrize("section", ["finetune", "generate", "embed", "select", "evaluate"])
def test_mixed_precision_is_bf16_by_default_and_checked_by_name(section):
    assert getattr(RunConfig(), section).mixed_precision == "bf16"
    with pytest.raises(ConfigError, match=rf"^{section}\.mixed_precision: must be one of bf16"):
        from_dict(RunConfig, {section: {"mixed_precision": "fp16"}})


def test_vst_unet_whitening_stays_float32_under_bf16_autocast():
    # A bf16 covariance is not positive definite enough for Cholesky: found by the GPU suite.
    features = torch.randn(100, 256) @ torch.randn(256, 256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        whitened = whiten_over_videos(features @ torch.eye(256))
    assert whitened.dtype == torch.float32 and torch.isfinite(whitened).all()
