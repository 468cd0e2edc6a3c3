"""Run the GPU stages of a tiny toy run on a fake two-node Ray cluster; print where they ran.

    python tests/cluster_scripts/gpu_stages_on_fake_cluster.py RUN_DIR RAY_TEMP_DIR

The head node has 2 CPUs and no GPU; one worker node advertises 1 CPU, ``num_gpus=1`` and the
custom resource ``gpu_node`` (``ray.cluster_utils.Cluster``, all on this machine; torch sees no
CUDA, so the GPU actors compute on the CPU). The script runs ingest, decode and latents, plants
an untrained tiny Latte as the finetune stage's model (training it is not what is tested here,
and Ray Train would put its workers on the fake GPU, where torch finds no CUDA), then runs
generate and embed (real and synthetic pools), all with the stages' default GPU settings (one GPU
per actor when the cluster has GPUs), and prints one JSON line:
``{"head_node", "gpu_node", "latents_nodes", "generate_nodes", "embed_nodes"}``.

A separate process because ``ray.cluster_utils.Cluster`` needs a driver of its own (the test
session already runs a local Ray). Pass a private ``RAY_TEMP_DIR``: with ``RAY_TMPDIR`` set to it
the cluster's address file stays out of ``/tmp/ray`` too, so no other Ray on the machine sees it.
"""

from __future__ import annotations

import json
import os
import socket
import sys


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tiny_config(run_dir: str):
    """A 2-class toy run small enough to go through its stages in about a minute on 2 cores."""
    from raydistill.config import RunConfig, from_dict

    return from_dict(RunConfig, {
        "run_dir": run_dir,
        "ingest": {"dataset": "toy", "toy": {"num_classes": 2, "train_per_class": 2,
                                             "test_per_class": 1, "num_frames": 8, "size": 32}},
        "decode": {"num_frames": 8, "size": 32},
        "latents": {"num_frames": 8, "size": 32, "vae_steps": 5, "shard_size": 2},
        "finetune": {"architecture": "tiny"},
        "generate": {"per_class": 1, "steps": 2, "batch_size": 2},
        "embed": {"pools": ["real", "synthetic"], "classifier_steps": 2, "shard_size": 2},
        "select": {"vpc": [1]},
    })


def plant_untrained_latte(run, config) -> None:
    """Save an untrained tiny Latte where the finetune stage saves its model; mark it done."""
    from raydistill.generation.training import build_model
    from raydistill.layout import FINETUNE_MODEL_DIR

    classes = len(run.stage_summary("ingest")["class_names"])
    shape = tuple(run.stage_summary("latents")["latent_shape"])
    build_model(config.finetune, classes, shape).save_pretrained(run.path(FINETUNE_MODEL_DIR))
    run.mark_done("finetune")


def main(run_dir: str, temp_dir: str) -> int:
    """Start the fake cluster, run the stages on it, print where their actors ran."""
    os.environ["RAY_TMPDIR"] = temp_dir  # Ray writes the cluster's address under it
    session_root = os.path.join(temp_dir, "ray")  # where Ray puts sessions under RAY_TMPDIR
    os.makedirs(session_root, exist_ok=True)
    import ray
    from ray.cluster_utils import Cluster

    from raydistill.pipeline.run import run_stages

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "num_gpus": 0, "temp_dir": session_root, "include_dashboard": False,
        "gcs_server_port": free_port(), "dashboard_agent_listen_port": free_port(),
        "runtime_env_agent_port": free_port(), "metrics_export_port": free_port()})
    try:
        gpu_worker = cluster.add_node(num_cpus=1, num_gpus=1, resources={"gpu_node": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        head_node = ray.get_runtime_context().get_node_id()  # the driver's node: the head
        config = tiny_config(run_dir)
        run = run_stages(config, ["ingest", "decode", "latents"])
        plant_untrained_latte(run, config)
        run_stages(config, ["generate", "embed"])
        embed = run.stage_summary("embed")
        print(json.dumps({
            "head_node": head_node, "gpu_node": gpu_worker.node_id,
            "gpu_node_resources": next(node["Resources"] for node in ray.nodes()
                                       if node["NodeID"] == gpu_worker.node_id),
            "latents_nodes": run.stage_summary("latents")["nodes"],
            "generate_nodes": run.stage_summary("generate")["nodes"],
            "embed_nodes": {pool: embed[pool]["nodes"] for pool in ("real", "synthetic")},
            "latents": run.stage_summary("latents")["latents"],
            "videos": run.stage_summary("generate")["videos"]}), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
