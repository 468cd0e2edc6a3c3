"""Unsupervised VST-UNet losses for the videos of one class (Algorithm 1, Eq. 1–3).

``L = L_ce + λ_d·L_div + λ_r·L_rep``, where the selection ``S`` is the top-``VPC`` videos by p_c.

Signs. ``L_div`` (Eq. 1) is the mean pairwise cosine similarity among the selected videos and is
minimised as printed. Eq. 2 as printed, ``exp(−mean_t min_{i∈S} ‖x_t − x_i‖)``, is the DR-DSN
representativeness *reward*: it is 1 when every video sits on a selected one. Minimising it would
drive the selection away from the data, so the loss is ``L_rep = 1 − exp(−mean min-distance)``,
in [0, 1). Distances are taken between L2-normalised vectors: on raw high-dimensional latents the
exponent underflows to 0 and the term carries no signal.

What ``x`` is. Eq. 1–2 are evaluated on ``embeddings``: by default (the selector's
``reward_space="latents"``) the flattened VAE latents, the paper's "video latent features via an
Autoencoder", whose distance is "the mean square error between two videos"; optionally the model's
penultimate features f_c. Either way they are detached. The latents cannot drift; f_c is trained
by L_ce on one class per batch, which pulls the videos of a class together until their cosine
similarity is ~1 and the rewards stop telling subsets apart (seen on planted data). With gradients
into f_c it is worse: L_rep is minimised by collapsing every feature onto its nearest selected one,
bending the geometry to fit the selection instead of the selection to fit the data.

How the losses reach p_c: REINFORCE, as in DR-DSN (the paper's "reward-based losses, inspired by
reinforcement learning"). The policy is Plackett–Luce over the score logits: a subset of VPC videos
is drawn without replacement (Gumbel-top-k), so the top-VPC by p_c is the policy's mode. Each step
draws ``n_samples`` subsets, rewards each with ``−(λ_d·L_div + λ_r·L_rep)``, and uses the
leave-one-out mean reward as the baseline (unbiased, no critic). We chose this over a relaxation
(soft / Gumbel top-k weights, straight-through) because a relaxation only gives the slope of a
smoothed objective at the current selection, a local swap signal that stalls in the local optima of
set functions such as coverage, and its value is not the loss at the actual selection; sampled
subsets explore, and the reported loss is Eq. 3 at the top-VPC exactly. The rewards are not
normalised, so λ_d and λ_r keep their weight against L_ce (a Tune sweep over them means something).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raydistill.selection.vst_unet import VSTUNetOutput

LOSS_NAMES = ("ce", "div", "rep")


def default_lambdas(vpc: int) -> tuple[float, float]:
    """Paper values ``(λ_d, λ_r)``: VPC 1 -> (0, 0.1); VPC 5 or 10 (and any VPC > 1) -> (0.1, 1)."""
    if vpc < 1:
        raise ValueError(f"VPC must be >= 1, got {vpc}")
    return (0.0, 0.1) if vpc == 1 else (0.1, 1.0)


def classification_loss(class_logits: torch.Tensor, label: int) -> torch.Tensor:
    """Cross-entropy of ``class_logits`` (N, K) when every video has class ``label``; scalar."""
    targets = torch.full((class_logits.shape[0],), label, dtype=torch.long,
                         device=class_logits.device)
    return F.cross_entropy(class_logits, targets)


def diversity_loss(features: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Eq. 1: mean pairwise cosine similarity among the selected videos.

    ``features`` (N, F); ``selected`` (k,) or (M, k) int64 indices -> () or (M,).
    0 when fewer than 2 videos are selected.
    """
    chosen = _normalised(features)[selected]                        # (..., k, F)
    k = chosen.shape[-2]
    if k < 2:
        return chosen.new_zeros(chosen.shape[:-2])
    similarity = chosen @ chosen.transpose(-1, -2)                  # (..., k, k)
    off_diagonal = similarity.sum(dim=(-1, -2)) - similarity.diagonal(dim1=-2, dim2=-1).sum(-1)
    return off_diagonal / (k * (k - 1))


def representativeness_loss(features: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Eq. 2 as a loss: ``1 − exp(−mean_t min_{i∈S} ‖x̂_t − x̂_i‖₂)`` on L2-normalised features.

    ``features`` (N, F); ``selected`` (k,) or (M, k) int64 indices -> () or (M,).
    """
    unit = _normalised(features)
    distances = torch.cdist(unit[selected], unit.expand(*selected.shape[:-1], *unit.shape))
    nearest = distances.min(dim=-2).values                          # (..., N)
    return 1 - torch.exp(-nearest.mean(dim=-1))


def sample_subsets(score_logits: torch.Tensor, k: int, n_samples: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n_samples`` ordered k-subsets from Plackett–Luce(score_logits) -> (M, k) int64.

    Gumbel-top-k: the top-k of logits + Gumbel noise, in order, is a draw without replacement.
    The noise comes from ``generator`` on the CPU so that a seed gives the same draws anywhere.
    """
    uniform = torch.rand((n_samples, score_logits.shape[0]), generator=generator)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-20)))
    perturbed = score_logits.detach().float().cpu() + gumbel
    return perturbed.topk(k, dim=-1).indices.to(score_logits.device)


def plackett_luce_log_prob(score_logits: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Log-probability of ordered draws ``orders`` (M, k) under PL(``score_logits`` (N,)): (M,)."""
    logits = score_logits.expand(orders.shape[0], -1)
    taken = torch.zeros_like(logits, dtype=torch.bool)
    log_prob = logits.new_zeros(orders.shape[0])
    for step in range(orders.shape[1]):
        pick = orders[:, step:step + 1]
        remaining = logits.masked_fill(taken, float("-inf"))
        log_prob = log_prob + logits.gather(1, pick)[:, 0] - torch.logsumexp(remaining, dim=1)
        taken = taken.scatter(1, pick, True)
    return log_prob


def selection_rewards(features: torch.Tensor, subsets: torch.Tensor, lambda_div: float,
                      lambda_rep: float) -> torch.Tensor:
    """``−(λ_d·L_div + λ_r·L_rep)`` of each subset (M, k) on ``features`` (N, F) -> (M,)."""
    reward = features.new_zeros(subsets.shape[0])
    if lambda_div:
        reward = reward - lambda_div * diversity_loss(features, subsets)
    if lambda_rep:
        reward = reward - lambda_rep * representativeness_loss(features, subsets)
    return reward


def policy_gradient_loss(score_logits: torch.Tensor, subsets: torch.Tensor,
                         rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE surrogate with a leave-one-out baseline; needs M >= 2 subsets. Scalar."""
    m = rewards.shape[0]
    baseline = (rewards.sum() - rewards) / (m - 1)
    advantages = (rewards - baseline).detach()
    return -(advantages * plackett_luce_log_prob(score_logits, subsets)).mean()


def total_loss(outputs: VSTUNetOutput, label: int, n_select: int, lambda_div: float,
               lambda_rep: float, *, losses: tuple[str, ...] = LOSS_NAMES, n_samples: int = 16,
               generator: torch.Generator | None = None,
               embeddings: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Eq. 3 for one class, and the gradient that trains features and scorer.

    ``outputs`` holds N_c videos of class ``label``; the selection is the top-``n_select`` by p_c.
    ``embeddings`` (N_c, D) are what Eq. 1–2 measure (default ``outputs.features``); ``generator``
    drives the REINFORCE draws. ``losses`` names the active terms (Table 6 ablation); inactive ones
    are 0. Returns the loss,
    whose value is ``L_ce + λ_d·L_div + λ_r·L_rep`` at that selection and whose gradient adds
    the policy gradient, and the detached parts ``ce, div, rep, policy, total`` (unweighted).
    """
    unknown = set(losses) - set(LOSS_NAMES)
    if unknown:
        raise ValueError(f"unknown losses {sorted(unknown)}; choose from {LOSS_NAMES}")
    lambda_div = lambda_div if "div" in losses else 0.0
    lambda_rep = lambda_rep if "rep" in losses else 0.0
    features = (outputs.features if embeddings is None else embeddings).detach()
    k = min(n_select, features.shape[0])
    top = torch.argsort(outputs.probs.detach(), descending=True, stable=True)[:k]
    zero = features.new_zeros(())
    ce = classification_loss(outputs.class_logits, label) if "ce" in losses else zero
    div = diversity_loss(features, top) if "div" in losses else zero
    rep = representativeness_loss(features, top) if "rep" in losses else zero
    policy = zero
    if (lambda_div or lambda_rep) and k < features.shape[0] and n_samples >= 2:
        subsets = sample_subsets(outputs.score_logits, k, n_samples, generator)
        rewards = selection_rewards(features, subsets, lambda_div, lambda_rep)
        policy = policy_gradient_loss(outputs.score_logits, subsets, rewards)
    loss = ce + lambda_div * div + lambda_rep * rep + (policy - policy.detach())
    parts = {"ce": ce.detach(), "div": div, "rep": rep, "policy": policy.detach(),
             "total": loss.detach()}
    return loss, parts


def _normalised(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features.float(), dim=-1, eps=1e-8)
