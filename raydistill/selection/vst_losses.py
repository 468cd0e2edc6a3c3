"""Unsupervised VST-UNet losses for the videos of one class (Algorithm 1, Eq. 1–3).

``L = L_ce + λ_d·L_div + λ_r·L_rep``, where the selection ``S`` is the top-``VPC`` videos by p_c.

Signs. ``L_div`` (Eq. 1) is the mean pairwise cosine similarity among the selected videos and is
minimised as printed. Eq. 2 as printed, ``exp(−mean_t min_{i∈S} d(x_t, x_i))``, is the DR-DSN
representativeness *reward*: it is 1 when every video sits on a selected one. Minimising it would
drive the selection away from the data, so the loss is ``L_rep = 1 − exp(−mean min-distance)``,
in [0, 1).

What ``x`` and ``d`` are (the paper's form is the default). Eq. 1–2 are evaluated on
``embeddings``: by default (the selector's ``reward_space="features"``) the video embeddings f_c,
the model's penultimate features ``outputs.features``, as in the paper ("outputs both the
probabilities p_c and the feature embeddings f_c"); optionally (``"latents"``) the flattened VAE
latents. ``rep_distance="mse"`` (default) measures Eq. 2 with the mean square error between two
videos, ``d(x_t, x_i) = mean_j (x_tj − x_ij)² = ‖x_t − x_i‖² / D``, the paper's "We use the mean
square error to quantify the distance between two videos" (DR-DSN's squared distance, scaled by
1/D so that exp(−·) keeps a signal in high dimensions); ``"l2"`` is the Euclidean distance between
L2-normalised vectors, the behaviour of earlier versions. ``d`` in Eq. 1 is always the cosine
similarity.

The rewards are detached. REINFORCE rewards are constants: the score gradient is
``−advantage·∇ log PL(S)``, and a reward that carried gradient would add a second, different
objective, in which f_c (the same network's features) is bent to fit the selection (L_rep is
minimised by collapsing every feature onto its nearest selected one) instead of the selection
fitting the data. The embeddings, latents or f_c, are therefore ``.detach()``-ed before Eq. 1–2
and the per-video cross-entropies before they enter a reward. f_c is shaped only by the
differentiable L_ce and by the policy gradient through the score head. A caveat of the paper's
form: L_ce on one class per step pulls the f_c of a class together, so late in training the
feature-space rewards tell subsets apart less sharply than latent-space ones would.

How the losses reach p_c: REINFORCE, as in DR-DSN (the paper's "reward-based losses, inspired by
reinforcement learning"). The policy is Plackett–Luce over the score logits: a subset of VPC videos
is drawn without replacement (Gumbel-top-k), so the top-VPC by p_c is the policy's mode. Each step
draws ``n_samples`` subsets, rewards each with ``−L(S)`` (below), and uses the leave-one-out mean
reward as the baseline (unbiased, no critic). We chose this over a relaxation (soft / Gumbel top-k
weights, straight-through) because a relaxation only gives the slope of a smoothed objective at the
current selection, a local swap signal that stalls in the local optima of set functions such as
coverage, and its value is not the loss at the actual selection; sampled subsets explore, and the
reported loss is Eq. 3 at the top-VPC exactly. The rewards are not normalised, so λ_d and λ_r keep
their weight against L_ce (a Tune sweep over them means something).

How L_ce reaches p_c. Algorithm 1 computes L on the selected subset. L_ce plays two parts here:

* the differentiable term: the cross-entropy of *all* N_c videos of the class against the class
  label, averaged. It trains the trunk and the class head (gradient into f_c), as before; it is
  the ``ce`` part reported and the L_ce in the loss value. It has no path to the score head.
* the selection term: the reward of a sampled subset S is
  ``−(CE(S) + λ_d·L_div(S) + λ_r·L_rep(S))``, where ``CE(S) = mean_{i∈S} CE_i`` is the mean
  cross-entropy of the subset's own videos against the class label (detached), with weight 1 as
  L_ce has in Eq. 3. REINFORCE thus minimises E_S[L(S)], Eq. 3 on the selected subset, and under
  CE alone (λ_d = λ_r = 0, the Table-6 "CE" row) p_c learns to prefer the videos the class head
  classifies confidently as their class: off-class or noisy videos, which the class head cannot
  fit as well, sink in the ranking. Before this, CE alone gave the score head no gradient and the
  ranking stayed at its random initialisation. The CE reward is active whenever ``"ce"`` is in
  ``losses``; like the others it needs VPC < N_c (otherwise the whole class is selected).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raydistill.selection.vst_unet import VSTUNetOutput

LOSS_NAMES = ("ce", "div", "rep")
REP_DISTANCES = ("mse", "l2")


def default_lambdas(vpc: int) -> tuple[float, float]:
    """Paper values ``(λ_d, λ_r)``: VPC 1 -> (0, 0.1); VPC 5 or 10 (and any VPC > 1) -> (0.1, 1)."""
    if vpc < 1:
        raise ValueError(f"VPC must be >= 1, got {vpc}")
    return (0.0, 0.1) if vpc == 1 else (0.1, 1.0)


def per_video_cross_entropy(class_logits: torch.Tensor, label: int) -> torch.Tensor:
    """Cross-entropy of each row of ``class_logits`` (N, K) against class ``label``: (N,)."""
    targets = torch.full((class_logits.shape[0],), label, dtype=torch.long,
                         device=class_logits.device)
    return F.cross_entropy(class_logits.float(), targets, reduction="none")


def classification_loss(class_logits: torch.Tensor, label: int) -> torch.Tensor:
    """Cross-entropy of ``class_logits`` (N, K) when every video has class ``label``; scalar."""
    return per_video_cross_entropy(class_logits, label).mean()


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


def representativeness_loss(features: torch.Tensor, selected: torch.Tensor,
                            distance: str = "mse") -> torch.Tensor:
    """Eq. 2 as a loss: ``1 − exp(−mean_t min_{i∈S} d(x_t, x_i))``.

    ``distance``: "mse", ``d = mean_j (x_tj − x_ij)²`` on the features as they are (the paper);
    "l2", ``d = ‖x̂_t − x̂_i‖₂`` on L2-normalised features (earlier versions).
    ``features`` (N, F); ``selected`` (k,) or (M, k) int64 indices -> () or (M,).
    """
    if distance not in REP_DISTANCES:
        raise ValueError(f"distance must be one of {REP_DISTANCES}, got {distance!r}")
    points = _normalised(features) if distance == "l2" else features.float()
    distances = torch.cdist(points[selected],
                            points.expand(*selected.shape[:-1], *points.shape))  # (..., k, N)
    if distance == "mse":
        distances = distances.square() / points.shape[-1]
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
                      lambda_rep: float, *, rep_distance: str = "mse",
                      video_ce: torch.Tensor | None = None) -> torch.Tensor:
    """``−(CE(S) + λ_d·L_div(S) + λ_r·L_rep(S))`` of each subset S (M, k) -> (M,), detached.

    ``features`` (N, F) are what Eq. 1–2 measure; ``video_ce`` (N,) the per-video cross-entropy,
    whose mean over S is CE(S) (None: no CE term).
    """
    features = features.detach()
    reward = features.new_zeros(subsets.shape[0], dtype=torch.float32)
    if video_ce is not None:
        reward = reward - video_ce.detach().float()[subsets].mean(dim=-1)
    if lambda_div:
        reward = reward - lambda_div * diversity_loss(features, subsets)
    if lambda_rep:
        reward = reward - lambda_rep * representativeness_loss(features, subsets, rep_distance)
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
               embeddings: torch.Tensor | None = None,
               rep_distance: str = "mse") -> tuple[torch.Tensor, dict]:
    """Eq. 3 for one class, and the gradient that trains features and scorer.

    ``outputs`` holds N_c videos of class ``label``; the selection is the top-``n_select`` by p_c.
    ``embeddings`` (N_c, D) are what Eq. 1–2 measure (default ``outputs.features``, f_c), always
    detached; ``rep_distance`` the distance of Eq. 2 ("mse" or "l2", see the module docstring);
    ``generator`` drives the REINFORCE draws. ``losses`` names the active terms (Table 6
    ablation); inactive ones are 0. Returns the loss, whose value is ``L_ce + λ_d·L_div +
    λ_r·L_rep`` at that selection (L_ce over all N_c videos) and whose gradient adds the policy
    gradient of the subset rewards ``−(CE(S) + λ_d·L_div(S) + λ_r·L_rep(S))``, and the detached
    parts ``ce, div, rep, policy, total`` (unweighted).
    """
    unknown = set(losses) - set(LOSS_NAMES)
    if unknown:
        raise ValueError(f"unknown losses {sorted(unknown)}; choose from {LOSS_NAMES}")
    if rep_distance not in REP_DISTANCES:
        raise ValueError(f"rep_distance must be one of {REP_DISTANCES}, got {rep_distance!r}")
    lambda_div = lambda_div if "div" in losses else 0.0
    lambda_rep = lambda_rep if "rep" in losses else 0.0
    features = (outputs.features if embeddings is None else embeddings).detach()
    k = min(n_select, features.shape[0])
    top = torch.argsort(outputs.probs.detach(), descending=True, stable=True)[:k]
    zero = features.new_zeros((), dtype=torch.float32)
    video_ce = per_video_cross_entropy(outputs.class_logits, label) if "ce" in losses else None
    ce = video_ce.mean() if video_ce is not None else zero
    div = diversity_loss(features, top) if "div" in losses else zero
    rep = representativeness_loss(features, top, rep_distance) if "rep" in losses else zero
    policy = zero
    if (video_ce is not None or lambda_div or lambda_rep) and k < features.shape[0] \
            and n_samples >= 2:
        subsets = sample_subsets(outputs.score_logits, k, n_samples, generator)
        rewards = selection_rewards(features, subsets, lambda_div, lambda_rep,
                                    rep_distance=rep_distance, video_ce=video_ce)
        policy = policy_gradient_loss(outputs.score_logits, subsets, rewards)
    loss = ce + lambda_div * div + lambda_rep * rep + (policy - policy.detach())
    parts = {"ce": ce.detach(), "div": div, "rep": rep, "policy": policy.detach(),
             "total": loss.detach()}
    return loss, parts


def _normalised(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features.float(), dim=-1, eps=1e-8)
