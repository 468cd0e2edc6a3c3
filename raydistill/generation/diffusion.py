"""Diffusion training loss and class-conditional sampling with classifier-free guidance.

The noise schedule is DiT's / Latte's (1000 linear β steps, 1e-4 → 0.02), from diffusers'
schedulers. Latents are (B, F, C, h, w); schedulers that read channels at dim 1 get a
(B, C, F, h, w) view.

The model predicts either the noise (``epsilon``, as the public Latte weights do) or the velocity
v = √ᾱ·ε − √(1−ᾱ)·x₀ (``v_prediction``). In this schedule ᾱ < 0.007 for t > 700, where
x₀ = (x_t − √(1−ᾱ)·ε)/√ᾱ turns a squared noise error into a squared x₀ error 145 to 25 000 times
larger: a noise loss that looks solved there (MSE 0.001) leaves the layout of the video — where its
motion and so its class show — unlearned. v-prediction weighs those steps like the others: asked
to memorise one latent video per class, the tiny model sampled the right one for 2 of
8 classes with noise prediction and for 8 of 8 with v-prediction (benchmarks/BENCHMARKS.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

SCHEDULERS = ("ddpm", "ddim", "dpm")
_SCHEDULE = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                 beta_schedule="linear")


def training_scheduler(learn_sigma: bool, prediction_type: str = "epsilon") -> DDPMScheduler:
    """The DDPM schedule used to add noise in training (and by the ``ddpm`` sampler), for a
    model predicting ``prediction_type`` (``epsilon`` or ``v_prediction``)."""
    return DDPMScheduler(**_SCHEDULE, clip_sample=False, prediction_type=prediction_type,
                         variance_type="learned_range" if learn_sigma else "fixed_small")


def sampling_scheduler(name: str, learn_sigma: bool, prediction_type: str = "epsilon"):
    """A diffusers scheduler for sampling: ``ddpm`` (uses a learned variance when the model has
    one), ``ddim`` (η = 0) or ``dpm`` (DPM-Solver++ multistep), reading the model's output as
    ``prediction_type``."""
    if name == "ddpm":
        return training_scheduler(learn_sigma, prediction_type)
    if name == "ddim":
        return DDIMScheduler(**_SCHEDULE, clip_sample=False, set_alpha_to_one=False,
                             prediction_type=prediction_type)
    if name == "dpm":
        return DPMSolverMultistepScheduler(**_SCHEDULE, algorithm_type="dpmsolver++",
                                           prediction_type=prediction_type)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


def _variational_bound(scheduler: DDPMScheduler, x0: torch.Tensor, xt: torch.Tensor,
                       t: torch.Tensor, eps: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(q(x_{t-1}|x_t,x_0) ‖ p(x_{t-1}|x_t)) in bits, (B,), for a learned variance.

    Improved DDPM's hybrid loss term, as DiT and Latte train it: the mean comes from the (detached)
    predicted noise, so this term trains only the variance; at t = 0 it is the Gaussian NLL of x_0.
    """
    def at(values):
        return values.to(x0.device)[t].reshape(-1, *[1] * (x0.dim() - 1))

    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    betas = scheduler.betas.to(torch.float64)
    posterior_variance = betas * (1 - previous) / (1 - alphas_cumprod)
    log_posterior = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]]))
    coef_x0 = betas * previous.sqrt() / (1 - alphas_cumprod)
    coef_xt = (1 - previous) * (1 - betas).sqrt() / (1 - alphas_cumprod)
    true_mean = at(coef_x0).float() * x0 + at(coef_xt).float() * xt
    fraction = (variance + 1) / 2  # the model's output in [-1, 1] interpolates log β and log β̃
    model_log_var = fraction * at(torch.log(betas)).float() + (1 - fraction) * at(
        log_posterior).float()
    x0_pred = (xt - at((1 - alphas_cumprod).sqrt()).float() * eps.detach()) / at(
        alphas_cumprod.sqrt()).float()
    model_mean = at(coef_x0).float() * x0_pred + at(coef_xt).float() * xt
    true_log_var = at(log_posterior).float()
    kl = 0.5 * (-1 + model_log_var - true_log_var + torch.exp(true_log_var - model_log_var)
                + (true_mean - model_mean) ** 2 * torch.exp(-model_log_var))
    nll = 0.5 * (math.log(2 * math.pi) + model_log_var
                 + (x0 - model_mean) ** 2 * torch.exp(-model_log_var))
    at_first_step = (t == 0).reshape(-1, *[1] * (x0.dim() - 1))
    per_element = torch.where(at_first_step, nll, kl)
    return per_element.flatten(1).mean(dim=1) / math.log(2.0)


def noise_from_velocity(scheduler: DDPMScheduler, velocity: torch.Tensor, noisy: torch.Tensor,
                        t: torch.Tensor) -> torch.Tensor:
    """The noise ε = √ᾱ·v + √(1−ᾱ)·x_t implied by a velocity prediction.

    ``velocity`` and ``noisy`` are (B, ...), ``t`` (B,); returns (B, ...)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(noisy.device)[t].reshape(
        -1, *[1] * (noisy.dim() - 1)).to(noisy.dtype)
    return alphas_cumprod.sqrt() * velocity + (1 - alphas_cumprod).sqrt() * noisy


def diffusion_loss(model, latents: torch.Tensor, labels: torch.Tensor,
                   scheduler: DDPMScheduler, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """The training loss on a batch of scaled latents (B, F, C, h, w) with class ``labels`` (B,).

    MSE of the noise (or, when ``scheduler`` is set up for ``v_prediction``, of the velocity) at
    a uniform random timestep; plus the variational-bound term when the model learns its
    variance. Returns a scalar.
    """
    batch, channels = latents.shape[0], latents.shape[2]
    t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    t = t.to(latents.device)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    noisy = scheduler.add_noise(latents, noise, t)
    output = model(noisy, t, labels)
    prediction = output[:, :, :channels]
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
        eps = noise_from_velocity(scheduler, prediction, noisy, t)
    else:
        target, eps = noise, prediction
    loss = F.mse_loss(prediction.float(), target.float())
    if output.shape[2] == 2 * channels:
        loss = loss + _variational_bound(scheduler, latents.float(), noisy.float(), t,
                                         eps.float(), output[:, :, channels:].float()).mean()
    return loss


@torch.no_grad()
def sample_latents(model, labels: torch.Tensor, generators: list[torch.Generator],
                   scheduler_name: str = "ddim", steps: int = 50, guidance: float = 4.0
                   ) -> torch.Tensor:
    """Class-conditional samples (B, F, C, h, w), one per label, with classifier-free guidance.

    Sample ``i`` draws all of its randomness from ``generators[i]``, so it does not depend on
    what else is in the batch. ``guidance`` 1 disables guidance (no unconditional pass).
    """
    config = model.config
    channels = config.in_channels
    shape = (config.num_frames, channels, config.sample_size, config.sample_size)
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    x = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)
    labels = labels.to(device)
    null = torch.full_like(labels, config.num_classes)
    scheduler = sampling_scheduler(scheduler_name, config.learn_sigma, config.prediction_type)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        if guidance == 1.0:
            output = model(x, t, labels)
        else:
            both = model(torch.cat([x, x]), t, torch.cat([labels, null]))
            conditional, unconditional = both.chunk(2)
            guided = unconditional[:, :, :channels] + guidance * (
                conditional[:, :, :channels] - unconditional[:, :, :channels])
            output = torch.cat([guided, conditional[:, :, channels:]], dim=2)
        if scheduler_name != "ddpm":
            output = output[:, :, :channels]  # these samplers take no learned variance
        step = scheduler.step(output.transpose(1, 2), t, x.transpose(1, 2),
                              generator=generators if scheduler_name == "ddpm" else None)
        x = step.prev_sample.transpose(1, 2)
    return x
