"""Where the toy run's class signal is lost: real clips → VAE → Latte samples.

The run's evaluation classifier (the quickstart's: C3D, toy preset), trained as its evaluate stage
trains one, is trained on a finished run's real training clips. Its top-1 accuracy is then read on

- the real test clips (the ceiling),
- the run's VAE reconstructions of the real training and test clips (what the latent cache can
  carry at all: a Latte that learned the latents perfectly could do no better),
- the run's synthetic videos, each against the class it was generated for (whether samples look
  like their class to a classifier of real videos),

and a second classifier trained on the VAE reconstructions of the training clips is read on the real
test clips. With ``--vae-steps`` the tiny VAE is also retrained from scratch at each step count on
the run's training frames, to compare budgets.

    python jobs/quickstart.py && python benchmarks/toy_quality.py --run runs/quickstart
    python benchmarks/toy_quality.py --run runs/quickstart --vae-steps 600 2000

With ``--pool real`` or ``--pool synthetic`` it instead compares selectors picking from that pool:
whether the toy lets a selector show its value before any generator is involved (real: coreset
selection from the run's real training clips) and with the run's generator (synthetic). A C3D
trained on the real training clips embeds the pool (the run's ``embed.run_classifier: c3d``);
random, TAC-DT (one row per ``--tac-fences`` × ``--tac-group-factors`` × ``--tac-min-scores``
value; scores: the C3D's probability for each video's own class) and VST-UNet (one
row per ``--vst-forms`` form, on the pool's latents) pick VPC videos per class, and the run's
evaluation classifier trained on each pick is read over ``--seeds`` seeds (seed s: random's draw
s, the selector's seed s, and training seed s for all, so they are paired by seed). The pick is
read on the test split, or, with ``--validation N``, on N training clips per class held out from
the pool and from the embedding C3D: settings are chosen there, never on the test split. (The run's
VAE and Latte did see those clips in training, so for ``--pool synthetic`` the validation split is
held out from the selection and the classifiers only.)

    python benchmarks/toy_quality.py --run runs/quickstart --pool real --seeds 5
    python benchmarks/toy_quality.py --run runs/quickstart --generator-seeds 0 1 2
    python benchmarks/toy_quality.py --run runs/quickstart --pool synthetic --validation 10 \
        --tac-fences none 1.5 --tac-group-factors 1 2 --vst-forms earlier paper

Prints Markdown table rows for benchmarks/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np
import torch
import yaml
from diffusers import AutoencoderKL

from raydistill.classify.models import build_classifier
from raydistill.classify.training import evaluate, fit_classifier
from raydistill.config import EvaluateConfig
from raydistill.generation.vae import decode_latents, encode_clips, train_tiny_vae
from raydistill.pipeline.evaluate import classifier_settings, load_clips
from raydistill.runs import RunDir


def trained_classifier(clips: np.ndarray, labels: np.ndarray, num_classes: int,
                       evaluation: EvaluateConfig, seed: int):
    """The run's evaluation classifier, trained as its evaluate stage trains one, on uint8 clips
    (N, T, H, W, 3)."""
    spec, settings = classifier_settings(evaluation)
    torch.manual_seed(seed)
    model = build_classifier(spec["name"], num_classes, spec["frames"], spec["size"],
                             **spec["options"])
    fit_classifier(model, clips, labels, dataclasses.replace(settings, seed=seed))
    return model


def reconstruct(vae: AutoencoderKL, clips: np.ndarray) -> np.ndarray:
    """uint8 clips (N, T, H, W, 3) through the VAE's posterior mean and back."""
    return decode_latents(vae, torch.from_numpy(encode_clips(vae, clips)))


def top1(model, clips: np.ndarray, labels: np.ndarray) -> float:
    return 100 * evaluate(model, clips, labels)["top1"]


def vae_rows(name: str, vae: AutoencoderKL, seconds: float | None, real_model, train, test,
             num_classes: int, evaluation: EvaluateConfig, seed: int) -> str:
    """One table row of a VAE: reconstruction error and the accuracies it allows."""
    (train_clips, train_labels), (test_clips, test_labels) = train, test
    train_rec, test_rec = reconstruct(vae, train_clips), reconstruct(vae, test_clips)
    error = np.abs(test_rec.astype(np.float64) - test_clips).mean()
    on_reconstructions = trained_classifier(train_rec, train_labels, num_classes, evaluation,
                                            seed)
    took = "—" if seconds is None else f"{seconds:.0f} s"
    return (f"| {name} | {took} | {error:.1f} | "
            f"{top1(real_model, train_rec, train_labels):.1f} | "
            f"{top1(real_model, test_rec, test_labels):.1f} | "
            f"{top1(on_reconstructions, test_clips, test_labels):.1f} |")


def run_embeddings(train_clips: np.ndarray, train_labels: np.ndarray, num_classes: int,
                   clips: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fc7 features (n, D), own-class probabilities (n,)) of ``clips`` of classes ``labels``
    from a C3D trained on the given real clips (the run's ``embed.run_classifier: c3d``)."""
    from raydistill.embedding.c3d import C3DEmbedder, save_c3d, train_c3d_classifier
    import tempfile

    model, _ = train_c3d_classifier(train_clips, train_labels, num_classes, seed=0)
    names = [str(c) for c in range(num_classes)]
    with tempfile.TemporaryDirectory() as folder:
        save_c3d(model, folder, names)
        embedded = C3DEmbedder(folder, names)(clips, labels)
    return embedded["embedding"], embedded["score"].astype(np.float64)


def selector_variants(features: np.ndarray, scores: np.ndarray, latents: np.ndarray | None,
                      fences: list, group_factors: list[float], min_scores: list,
                      vst_forms: list[str], vst_epochs: int,
                      representatives: tuple[str, ...] = ("centre",)):
    """name → pick(labels, vpc, seed) → row indices: random, TAC-DT per outlier fence (None:
    every video a candidate) × group factor × min score (None: scores ignored), and
    VST-UNet per form (``earlier``: whitened score input, rewards on latents, L2;
    ``paper``: LayerNorm'd score input, rewards on features f_c, MSE) with the quickstart's
    tiny VST-UNet."""
    from raydistill.selection.tac_dt import TACDTSelector
    from raydistill.selection.vst_selector import VSTUNetSelector

    def random_pick(labels, vpc, seed):
        rng = np.random.default_rng(seed)
        return np.concatenate([rng.choice(np.flatnonzero(labels == c), vpc, replace=False)
                               for c in np.unique(labels)])

    def tac_dt(fence, factor, min_score, representative):
        return lambda labels, vpc, seed: TACDTSelector(
            n_per_class=vpc, random_state=seed, outlier_fence=fence, group_factor=factor,
            min_score=min_score, representative=representative,
        ).fit(features, labels, scores).selected_indices_

    forms = {"earlier": {"score_input": "whitened", "reward_space": "latents",
                         "rep_distance": "l2"},
             "paper": {"score_input": "layernorm", "reward_space": "features",
                       "rep_distance": "mse"}}

    def vst(form):
        return lambda labels, vpc, seed: VSTUNetSelector(
            n_per_class=vpc, random_state=seed, epochs=vst_epochs, width=8, levels=2,
            feature_dim=32, norm_groups=4, **forms[form]).fit(latents, labels).selected_indices_

    variants = {"random": random_pick}
    variants.update({f"tac_dt (fence {fence}, groups {factor:g}×VPC, min score {floor}, "
                     f"{representative})": tac_dt(fence, factor, floor, representative)
                     for fence in fences for factor in group_factors for floor in min_scores
                     for representative in representatives})
    variants.update({f"vst_unet ({form})": vst(form) for form in vst_forms})
    return variants


def selection_rows(pool, held_out, variants: dict, num_classes: int,
                   evaluation: EvaluateConfig, vpcs: list[int], seeds: int) -> list[str]:
    """Each variant picks VPC videos per class from ``pool`` (clips, labels) with every seed; the
    run's evaluation classifier trained on each pick is read on ``held_out`` (clips, labels). One
    row per (VPC, variant): mean ± std of top-1 over seeds, and the paired difference from
    random with its 95 % interval (seed s: random's draw s, the selector's seed s, and training
    seed s for both)."""
    from raydistill.report.tables import compare_with_random

    (pool_clips, pool_labels), (held_clips, held_labels) = pool, held_out
    values: dict = {}
    for vpc in vpcs:
        for seed in range(seeds):
            for name, pick_of in variants.items():
                pick = pick_of(pool_labels, vpc, seed)
                model = trained_classifier(pool_clips[pick], pool_labels[pick], num_classes,
                                           evaluation, seed)
                values.setdefault((name, vpc), {})[seed] = evaluate(
                    model, held_clips, held_labels)["top1"]
            print(f"  VPC {vpc} seed {seed}: " + ", ".join(
                f"{name} {100 * values[(name, vpc)][seed]:.1f}" for name in variants),
                flush=True)
    comparisons = {(c.method, c.vpc): c for c in compare_with_random(values)}
    rows = []
    for vpc in vpcs:
        for name in variants:
            accuracies = 100 * np.asarray(list(values[(name, vpc)].values()))
            difference = comparisons.get((name, vpc))
            versus = ("—" if difference is None else
                      f"{100 * difference.difference:+.1f} [{100 * difference.low:+.1f}, "
                      f"{100 * difference.high:+.1f}]")
            rows.append(f"| {vpc} | {name} | {accuracies.mean():.1f} ± {accuracies.std():.1f} "
                        f"| {versus} | {len(accuracies)} |")
    return rows


def split_validation(clips: np.ndarray, labels: np.ndarray, per_class: int, seed: int):
    """((clips, labels) kept, (clips, labels) held out): ``per_class`` clips of every class,
    drawn with ``seed``, become the validation split."""
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                           for c in np.unique(labels)])
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return (clips[kept], labels[kept]), (clips[held], labels[held]), kept


def fresh_clips(run: RunDir, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(clips (N, T, H, W, 3) uint8, labels (N,)): ``per_class`` new toy videos of every class,
    drawn as the run's training videos are drawn (train split, the indices after its
    ``train_per_class``: seeds no stage of the run has seen), written through the codec and
    decoded with the run's decode settings. A held-out set as large as wanted that is neither
    the test split nor any clip the run trained on."""
    import tempfile

    from raydistill.datasets.toy import class_names, render_video, video_id, video_seed
    from raydistill.video.decode import decode_clip
    from raydistill.video.io import encode_video

    config = run.load_config()
    if config.ingest.dataset != "toy":
        raise SystemExit(f"--fresh-validation draws new toy clips; {run.url} is a "
                         f"{config.ingest.dataset} run")
    toy, decode = config.ingest.toy, config.decode
    clips, labels = [], []
    names = class_names(toy)
    with tempfile.TemporaryDirectory() as folder:
        for label in range(toy.num_classes):
            for index in range(toy.train_per_class, toy.train_per_class + per_class):
                rng = np.random.default_rng(video_seed(toy, "train", label, index))
                frames = render_video(label, toy.num_frames, toy.size, rng, toy.seed)
                path = os.path.join(folder, f"{video_id(names[label], 'train', index)}.mp4")
                with open(path, "wb") as handle:
                    handle.write(encode_video(frames, toy.fps, "mp4"))
                clips.append(decode_clip(path, decode.num_frames, decode.size,
                                         decode.frame_interval, decode.frame_start))
                labels.append(label)
    return np.stack(clips), np.asarray(labels)


def clip_ids(run: RunDir, split: str) -> np.ndarray:
    """Video ids of a clip-cache split in the order :func:`load_clips` returns its clips."""
    from raydistill.pipeline.shards import shard_files

    return np.sort(np.concatenate([run.read_table(shard).column("video_id").to_numpy(
        zero_copy_only=False) for shard in shard_files(run, f"clips/{split}")]))


def same_videos(latent_ids: np.ndarray, clips: np.ndarray) -> None:
    """Raise unless the latents and the clips are the same videos in the same order."""
    if not np.array_equal(np.asarray(latent_ids, dtype=object), clips.astype(object)):
        raise SystemExit("the pool's latents and clips are not the same videos: rerun the "
                         "run's latents / generate stages")


def generator_rows(run: RunDir, seeds: list[int], steps: int | None, test, num_classes: int,
                   evaluation: EvaluateConfig, batch_size: int | None = None,
                   vae_steps: int | None = None, keep: np.ndarray | None = None,
                   on_pool=None) -> list[str]:
    """The run's Latte settings trained again in process on its latent cache, once per seed in
    ``seeds`` (``steps``: the run's unless given), sampled as its generate stage samples (its
    per_class, scheduler, steps, guidance), decoded with its VAE; ``batch_size``: the run's
    unless given. ``vae_steps``: instead of the run's VAE and latent cache, a tiny VAE trained
    that many steps (the run's seed, on 256 training clips, as the latents stage trains it)
    encodes the training clips, and decodes the samples. ``keep``: the Latte trains on these
    training clips only (row indices in video-id order); ``on_pool(videos, labels)`` is called
    with each seed's samples. One row per seed: training
    time, class fidelity (the run's embedding C3D on the samples) and full synthetic (the run's
    evaluation classifier trained on the samples, read on the test clips)."""
    import dataclasses as dc

    from raydistill.classify.training import predict
    from raydistill.embedding.c3d import load_c3d
    from raydistill.generation.diffusion import sample_latents
    from raydistill.generation.training import build_model, ema_model, new_state, train_step
    from raydistill.layout import run_model_dir
    from raydistill.pipeline.vst import pool_latents

    config = run.load_config()
    finetune = dc.replace(config.finetune, steps=steps or config.finetune.steps,
                          batch_size=batch_size or config.finetune.batch_size)
    generate = config.generate
    if not vae_steps:
        latents, labels, _ = pool_latents(run, "train")
        vae = AutoencoderKL.from_pretrained(run.path("vae")).eval()
    else:
        clips, labels = load_clips(run, "train")
        started = time.perf_counter()
        vae, _ = train_tiny_vae(clips[:256].reshape(-1, *clips.shape[2:]), steps=vae_steps,
                                seed=config.seed)
        vae.eval()
        with torch.no_grad():
            latents = encode_clips(vae, clips)
        print(f"tiny VAE, {vae_steps} steps, trained and encoded in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    if keep is not None:
        latents, labels = latents[keep], labels[keep]
    cache, targets = torch.from_numpy(latents), torch.from_numpy(labels)
    judge, _ = load_c3d(run.path(run_model_dir("c3d")))
    wanted = torch.arange(num_classes).repeat_interleave(generate.per_class)
    rows = []
    for seed in seeds:
        started = time.perf_counter()
        torch.manual_seed(seed)
        state = new_state(build_model(finetune, num_classes, tuple(latents.shape[1:])), finetune)
        order = torch.Generator().manual_seed(seed)
        for _ in range(finetune.steps):
            batch = torch.randperm(len(cache), generator=order)[:finetune.batch_size]
            train_step(state, cache[batch], targets[batch], finetune, seed=seed)
        trained = time.perf_counter() - started
        generators = [torch.Generator().manual_seed(10_000 * seed + i)
                      for i in range(len(wanted))]
        with torch.no_grad():
            samples = sample_latents(ema_model(state).eval(), wanted, generators,
                                     generate.scheduler, generate.steps, generate.guidance)
        videos = decode_latents(vae, samples)
        recognised = predict(judge, videos).argmax(1) == wanted.numpy()
        per_class = [100 * recognised[wanted.numpy() == c].mean() for c in range(num_classes)]
        model = trained_classifier(videos, wanted.numpy(), num_classes, evaluation, 0)
        shares = " / ".join(f"{share:.0f}" for share in per_class)
        rows.append(f"| {seed} | {finetune.steps} × {finetune.batch_size} | {trained:.0f} s | "
                    f"{100 * recognised.mean():.1f} | {shares} | {top1(model, *test):.1f} |")
        print(rows[-1], flush=True)
        if on_pool is not None:
            on_pool(videos, wanted.numpy())
    return rows


def optional_floats(values: list[str]) -> list[float | None]:
    """Variant values of the command line: ``none`` → None, else the number."""
    return [None if value.lower() == "none" else float(value) for value in values]


GENERATOR_HEADER = ("| seed | steps × batch | training | fidelity (%) | per class (%) "
                    "| full synthetic (%) |\n|---|---|---|---|---|---|")
"""The header of :func:`generator_rows`' table."""


def generator_then_selectors(run: RunDir, args, train, test, num_classes: int,
                             evaluation: EvaluateConfig) -> None:
    """``--generator-seeds`` with ``--validation N``: the Latte trains without the N held-out
    training clips per class (so they are unseen by it, as the test clips are), and random and
    TAC-DT pick from each seed's samples, read on those held-out clips."""
    fitted, held_out, kept = split_validation(*train, args.validation, args.seed)
    fences, floors = optional_floats(args.tac_fences), optional_floats(args.tac_min_scores)

    def on_pool(videos, labels):
        features, scores = run_embeddings(*fitted, num_classes, videos, labels)
        variants = selector_variants(features, scores, None, fences, args.tac_group_factors,
                                     floors, [], args.vst_epochs,
                                     tuple(args.tac_representatives))
        print("| VPC | method | top-1 (%) | vs random, paired (points, 95 % CI) | seeds |")
        print("|---|---|---|---|---|")
        print("\n".join(selection_rows((videos, labels), held_out, variants, num_classes,
                                       evaluation, args.vpc, args.seeds)), flush=True)

    print(f"the Latte trains on {len(kept)} training clips; {len(held_out[1])} held out")
    print(GENERATOR_HEADER)
    generator_rows(run, args.generator_seeds, args.generator_steps, test, num_classes,
                   evaluation, args.generator_batch, args.generator_vae_steps, kept, on_pool)


def compare_selectors(run: RunDir, args, train, test, num_classes: int,
                      evaluation: EvaluateConfig) -> None:
    """Print the selector comparison of ``--pool`` as Markdown rows."""
    from raydistill.pipeline.vst import pool_latents

    fitted, held_out, kept = train, test, np.arange(len(train[1]))
    if args.validation:
        fitted, held_out, kept = split_validation(*train, args.validation, args.seed)
    elif args.fresh_validation:
        held_out = fresh_clips(run, args.fresh_validation)
    latents = None
    if args.pool == "real":
        pool = fitted
        features, scores = run_embeddings(*fitted, num_classes, *pool)
        if args.vst_forms:
            latents, _, ids = pool_latents(run, "train")
            same_videos(ids, clip_ids(run, "train"))
            latents = latents[kept]
    else:
        pool = load_clips(run, "synthetic")
        features, scores = run_embeddings(*fitted, num_classes, *pool)
        if args.vst_forms:
            latents, _, ids = pool_latents(run, "synthetic")
            same_videos(ids, clip_ids(run, "synthetic"))
    where = (f"{args.validation} training clips per class held out (validation)"
             if args.validation else
             f"{args.fresh_validation} fresh toy clips per class (validation)"
             if args.fresh_validation else "the test split")
    print(f"selecting from the {args.pool} pool ({len(pool[1])} videos), read on {where} "
          f"({len(held_out[1])} clips)")
    print("| VPC | method | top-1 (%) | vs random, paired (points, 95 % CI) | seeds |")
    print("|---|---|---|---|---|")
    fences, floors = optional_floats(args.tac_fences), optional_floats(args.tac_min_scores)
    variants = selector_variants(features, scores, latents, fences, args.tac_group_factors,
                                 floors, args.vst_forms, args.vst_epochs,
                                 tuple(args.tac_representatives))
    print("\n".join(selection_rows(pool, held_out, variants, num_classes, evaluation,
                                   args.vpc, args.seeds)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished toy run (local)")
    parser.add_argument("--vae-steps", type=int, nargs="*", default=[],
                        help="also retrain the tiny VAE from scratch for these step counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", choices=["real", "synthetic"],
                        help="compare selectors picking from this pool instead")
    parser.add_argument("--validation", type=int, default=0, metavar="PER_CLASS",
                        help="with --pool: hold out this many training clips per class and read "
                             "the selections on them instead of the test split")
    parser.add_argument("--fresh-validation", type=int, default=0, metavar="PER_CLASS",
                        help="with --pool: read the selections on this many new toy clips per "
                             "class, drawn as training clips the run never saw (the embedding "
                             "C3D and the pool stay the run's), instead of the test split")
    parser.add_argument("--tac-fences", nargs="+", default=["1.5"],
                        help="with --pool: TAC-DT's outlier_fence values to compare ('none': "
                             "every video a candidate)")
    parser.add_argument("--tac-group-factors", type=float, nargs="+", default=[1.0],
                        help="with --pool: TAC-DT's group_factor values to compare")
    parser.add_argument("--tac-min-scores", nargs="+", default=["none"],
                        help="with --pool: TAC-DT's min_score values to compare ('none': "
                             "scores ignored)")
    parser.add_argument("--tac-representatives", nargs="+", default=["centre"],
                        choices=["centre", "sample", "score"],
                        help="with --pool: TAC-DT's representative values to compare")
    parser.add_argument("--vst-forms", nargs="*", default=[], choices=["earlier", "paper"],
                        help="with --pool: VST-UNet forms to compare")
    parser.add_argument("--vst-epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of --pool")
    parser.add_argument("--generator-seeds", type=int, nargs="+", default=[],
                        help="instead: train the run's Latte again in process with these seeds "
                             "and measure each one's samples (fidelity, full synthetic)")
    parser.add_argument("--generator-steps", type=int, help="with --generator-seeds: steps "
                        "(default: the run's)")
    parser.add_argument("--eval-training", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="override fields of the run's evaluate.training (e.g. lr=0.001 "
                             "min_steps=300 label_smoothing=0.1)")
    parser.add_argument("--generator-batch", type=int, help="with --generator-seeds: batch size "
                        "(default: the run's)")
    parser.add_argument("--generator-vae-steps", type=int, help="with --generator-seeds: train "
                        "a tiny VAE this many steps for the latents instead of the run's")
    parser.add_argument("--vpc", type=int, nargs="+", default=[1, 5], help="VPCs of --pool")
    args = parser.parse_args()
    if args.fresh_validation and (args.validation or not args.pool):
        parser.error("--fresh-validation reads a --pool comparison; it replaces --validation")
    torch.set_num_threads(os.cpu_count() or 1)
    run = RunDir(args.run)
    train, test = load_clips(run, "train"), load_clips(run, "test")
    num_classes = int(max(train[1].max(), test[1].max()) + 1)
    evaluation = run.load_config().evaluate
    if args.eval_training:
        values = {key: yaml.safe_load(value)
                  for key, value in (pair.split("=", 1) for pair in args.eval_training)}
        evaluation = dataclasses.replace(evaluation,
                                         training={**evaluation.training, **values})
        print(f"evaluation classifiers: training {evaluation.training}")
    real_model = trained_classifier(*train, num_classes, evaluation, args.seed)
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}; "
          f"run {run.url}: {len(train[0])} train / {len(test[0])} test clips")
    print(f"{evaluation.classifier} trained on real clips: {top1(real_model, *train):.1f} % on them, "
          f"{top1(real_model, *test):.1f} % on the real test clips")
    if args.pool:
        compare_selectors(run, args, train, test, num_classes, evaluation)
        return
    if args.generator_seeds and args.validation:
        generator_then_selectors(run, args, train, test, num_classes, evaluation)
        return
    if args.generator_seeds:
        print(GENERATOR_HEADER)
        generator_rows(run, args.generator_seeds, args.generator_steps, test, num_classes,
                       evaluation, args.generator_batch, args.generator_vae_steps)
        return
    if run.exists("clips/synthetic"):
        synthetic = load_clips(run, "synthetic")
        print(f"... on the run's {len(synthetic[0])} synthetic videos (their own class): "
              f"{top1(real_model, *synthetic):.1f} %")
    print("| VAE | training time | test MAE (0-255) | real C3D on rec. train (%) "
          "| real C3D on rec. test (%) | C3D trained on rec. train, real test (%) |")
    print("|---|---|---|---|---|---|")
    print(vae_rows("the run's", AutoencoderKL.from_pretrained(run.path("vae")).eval(), None,
                   real_model, train, test, num_classes, evaluation, args.seed))
    frames = train[0][:256].reshape(-1, *train[0].shape[2:])  # as the latents stage trains it
    for steps in args.vae_steps:
        started = time.perf_counter()
        vae, _ = train_tiny_vae(frames, steps=steps, seed=args.seed)
        print(vae_rows(f"tiny, {steps} steps", vae, time.perf_counter() - started, real_model,
                       train, test, num_classes, evaluation, args.seed), flush=True)


if __name__ == "__main__":
    main()
