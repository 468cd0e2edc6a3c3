"""What the stages ask of the Ray cluster, and whether it can hold them: now, once nodes join
(an autoscaler), or never.

Resource asks are compared with what the cluster offers now and, when an autoscaler is detected
(``ray up``'s bootstrap config on the head, or node types in the autoscaler's status), with the
node types it may add. ``--dry-run`` reports the findings (:func:`resource_findings`); the run
refuses what can never fit before any work (:func:`check_resources`) and, at each stage's start,
waits a bounded time for nodes that can hold it (:func:`wait_for_resources`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from raydistill.config import ConfigError, RunConfig

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from raydistill.pipeline.stage import Stage


@dataclass(frozen=True)
class Cluster:
    """What the Ray cluster offers now, and whether it can grow."""

    cpus: float
    gpus: float
    largest_cpus: float
    """The most CPUs one node has, or one node type of a known autoscaler config can have."""
    largest_gpus: float
    autoscaler: bool
    node_types_known: bool
    """Whether ``largest_*`` cover the autoscaler's node types (a ``ray up`` head node)."""


@dataclass(frozen=True)
class Request:
    """One kind of Ray worker a stage starts: ``count`` of them (None: as many as the cluster's
    CPUs hold), each asking ``cpus`` and ``gpus``; ``count_field`` / ``unit_field`` name the
    config fields behind the count and the per-unit size."""

    what: str
    count: int | None
    cpus: float
    gpus: float
    count_field: str
    unit_field: str
    cpu_field: str | None = None
    """The field behind the CPUs of one worker, when not ``unit_field``."""

    def size(self) -> str:
        """What one worker asks: ``1 CPU + 1 GPU``."""
        return f"{self.cpus:g} CPU" + (f" + {self.gpus:g} GPU" if self.gpus else "")

    def describe(self) -> str:
        """``4 × Latte actor (1 CPU + 1 GPU)``."""
        size = self.size()
        if self.count is None:
            return f"{self.what}s ({size} each, as many at once as the CPUs hold)"
        return f"{self.count} × {self.what} ({size})"


BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
"""Where ``ray up`` leaves the cluster config on the head node (where job drivers run)."""


def cluster_view() -> Cluster:
    """The connected cluster's resources, largest node and autoscaler."""
    import ray

    totals = ray.cluster_resources()
    nodes = alive_nodes()
    node_types = bootstrap_node_types()
    shapes = nodes + node_types
    return Cluster(
        cpus=float(totals.get("CPU", 0)), gpus=float(totals.get("GPU", 0)),
        largest_cpus=max((float(s.get("CPU", 0)) for s in shapes), default=0.0),
        largest_gpus=max((float(s.get("GPU", 0)) for s in shapes), default=0.0),
        autoscaler=bool(node_types) or autoscaler_reports(), node_types_known=bool(node_types))


def alive_nodes() -> list[dict]:
    """The resources (``{"CPU": 8.0, "GPU": 1.0, ...}``) of each live node of the cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node["Alive"]]


def bootstrap_node_types() -> list[dict]:
    """Resources of the node types the autoscaler may start, from a ``ray up`` head's config."""
    path = os.path.expanduser(BOOTSTRAP_CONFIG)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    return [dict(node_type.get("resources") or {})
            for node_type in config.get("available_node_types", {}).values()
            if node_type.get("max_workers", 1) > 0]


def autoscaler_reports() -> bool:
    """Whether an autoscaler that can add nodes reports to the cluster (v1: node types other
    than the read-only provider's one per node, as a plain ``ray start`` has; v2: a state)."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        report = (json.loads(status).get("autoscaler_report") or {}) if status else {}
        if has_launcher_node_types(report):
            return True
        import ray
        from ray.autoscaler.v2.sdk import get_cluster_status

        stats = get_cluster_status(ray.get_runtime_context().gcs_address, timeout=5).stats
        return stats.autoscaler_version not in (None, "", "0")
    except Exception:  # internals of Ray: an unknown answer means "not detected"
        return False


def has_launcher_node_types(report: dict) -> bool:
    """Whether a v1 autoscaler report maps nodes to configured node types; without a cluster
    config (``ray start``, ``ray.init``) the read-only provider names one type per node."""
    from ray.autoscaler._private.util import format_readonly_node_type

    mapping = report.get("node_type_mapping") or {}
    return any(name != format_readonly_node_type(node) for node, name in mapping.items())


def actor_gpus(requested: float | None, cluster_gpus: float) -> float:
    """GPUs an inference actor takes: ``gpus_per_actor``, or (None) 1 if the cluster has GPUs
    now (``cluster_gpus``) and 0 otherwise. The stages decide with it, and the dry run."""
    if requested is not None:
        return requested
    return 1.0 if cluster_gpus > 0 else 0.0


def workers_use_gpu(use_gpu: bool | None, cluster_gpus: float) -> bool:
    """Whether Ray Train workers take a GPU each: a section's ``use_gpu``, or (None) whether the
    cluster has GPUs now. The stages decide with it, and the dry run."""
    return cluster_gpus > 0 if use_gpu is None else use_gpu


def actor_cpus(requested: float | None, gpus: float) -> float:
    """CPUs an inference actor asks: ``requested``, or (None) 1 beside a GPU and 0.5 without,
    so that two CPU actors share a core."""
    if requested is not None:
        return requested
    return 1.0 if gpus else 0.5


def actor_request(what: str, section: str, count: int, gpus: float,
                  cpus: float | None = None, cpu_field: str | None = None) -> Request:
    """An inference actor pool (latents, generate, embed): :func:`actor_cpus` CPUs each; a CPU
    ask too large names ``cpu_field`` (when the section has one)."""
    return Request(what, count, actor_cpus(cpus, gpus), gpus, f"{section}.num_actors",
                   f"{section}.gpus_per_actor", cpu_field)


def inference_actors(what: str, section_name: str, section, cluster: Cluster) -> Request:
    """The actor pool of an inference stage's config ``section`` (``num_actors``,
    ``gpus_per_actor``, and ``cpus_per_actor`` where the section has it)."""
    cpus = getattr(section, "cpus_per_actor", None)
    return actor_request(what, section_name, section.num_actors,
                         actor_gpus(section.gpus_per_actor, cluster.gpus), cpus,
                         f"{section_name}.cpus_per_actor" if cpus is not None else None)


def train_request(what: str, section: str, use_gpu: bool | None, count: int, cluster: Cluster,
                  cpus: float | None = None, count_name: str = "num_workers") -> Request:
    """Ray Train workers of config ``section``: ``cpus`` CPUs each on CPU (None: 1, a section
    without ``cpus_per_worker``), 1 CPU + 1 GPU with ``use_gpu`` (None: if the cluster has
    one)."""
    gpu = workers_use_gpu(use_gpu, cluster.gpus)
    unit = (f"{section}.use_gpu" if gpu or cpus is None else f"{section}.cpus_per_worker")
    return Request(what, count, 1.0 if gpu or cpus is None else cpus, 1.0 if gpu else 0.0,
                   f"{section}.{count_name}", unit)


@dataclass(frozen=True)
class Finding:
    """One problem of a request: an error when the cluster can never hold its worker, else a
    warning; ``line`` starts with the config field. ``gpu_ask`` is set on the warning of a GPU
    ask where no node has a GPU (the field, the worker, its GPUs), which
    :func:`resource_findings` merges across stages."""

    is_error: bool
    line: str
    gpu_ask: tuple[str, str, float] | None = None


def resource_findings(requests: list[Request], cluster: Cluster) -> tuple[list[str], list[str]]:
    """``(errors, warnings)``: at most one line per request, starting with the config field.

    An error is a worker that can never be placed: it asks more than any node has, on a
    cluster that cannot grow (or whose node types are known). A GPU ask on a cluster with no
    GPU at all stays a warning: GPU nodes may still join; those of several stages are one line
    (:func:`merged_gpu_asks`). Stage totals above what the cluster has now are warnings: an
    autoscaler adds nodes, else the stage waits for them.
    """
    findings = [f for f in (request_finding(r, cluster) for r in requests) if f]
    warnings = [f for f in findings if not f.is_error]
    return [f.line for f in findings if f.is_error], merged_gpu_asks(warnings, cluster)


def merged_gpu_asks(warnings: list[Finding], cluster: Cluster) -> list[str]:
    """The lines of ``warnings``, those asking a GPU where no node has one merged into a single
    line (naming every field) in the place of the first: a CPU-only cluster would otherwise
    warn once per GPU stage, the same words six times."""
    asks = [f.gpu_ask for f in warnings if f.gpu_ask]
    if len(asks) < 2:
        return [f.line for f in warnings]
    listed = ", ".join(f"{what} {each:g}" for _, what, each in asks)
    merged = (f"{', '.join(field for field, _, _ in asks)}: {len(asks)} stages ask GPUs "
              f"({listed} per worker), no node has a GPU; "
              + _growth(cluster).replace("the stage waits", "the stages wait") + NO_GPU_HINT)
    first = next(index for index, f in enumerate(warnings) if f.gpu_ask)
    kept = [f.line for f in warnings if not f.gpu_ask]
    return kept[:first] + [merged] + kept[first:]


NO_GPU_HINT = " (--gpus-per-actor 0 runs every stage on CPUs)"


def _growth(cluster: Cluster) -> str:
    return ("the autoscaler must add them" if cluster.autoscaler else
            "no autoscaler detected: the stage waits for nodes to join")


def unit_finding(r: Request, cluster: Cluster) -> Finding | None:
    """The :class:`Finding` when one worker of ``r`` asks more CPUs or GPUs than any node (or
    known node type) has, None otherwise. An error when the cluster can never hold it: nodes of
    that resource exist but all are smaller, and no autoscaler of unknown node types may add a
    larger one. A GPU ask where no node has a GPU is not an error: GPU nodes may still join."""
    asks = (("GPU", r.gpus, cluster.largest_gpus), ("CPU", r.cpus, cluster.largest_cpus))
    for resource, each, largest in asks:
        field = r.cpu_field if resource == "CPU" and r.cpu_field else r.unit_field
        if each > largest:
            never = largest > 0 and not (cluster.autoscaler and not cluster.node_types_known)
            has = f"no node has more than {largest:g}" if largest else f"no node has a {resource}"
            hint = "" if never else f"; {_growth(cluster)}"
            no_gpu = resource == "GPU" and not largest
            line = f"{field}: one {r.what} asks {each:g} {resource}, {has}{hint}"
            return Finding(never, line + (NO_GPU_HINT if no_gpu else ""),
                           (field, r.what, each) if no_gpu else None)
    return None


def request_finding(r: Request, cluster: Cluster) -> Finding | None:
    """The :class:`Finding` of the first problem of one request, None if it fits."""
    finding = unit_finding(r, cluster)
    if finding:
        return finding
    growth = _growth(cluster)
    asks = (("GPU", r.gpus, cluster.gpus), ("CPU", r.cpus, cluster.cpus))
    for resource, each, total in asks:
        if r.count is not None and r.count * each > total:
            return Finding(False, f"{r.count_field}: {r.count} × {r.what} ({each:g} {resource} "
                                  f"each) = {r.count * each:g} {resource}, the cluster has "
                                  f"{total:g} now; {growth}")
    if r.count is None and cluster.cpus == 0:
        return Finding(False, f"{r.unit_field}: the cluster has no CPU now; {r.what}s run as "
                              "many at once as it has CPUs when the stage starts (at least "
                              "one): bring CPU workers up first (README, \"--dry-run\")")
    return None


class ResourceError(ConfigError):
    """A stage asks for workers the cluster cannot hold: never (no node or node type is large
    enough), or not within the time a run waits for nodes to join. Names the config field."""


def fits_a_node(r: Request, nodes: list[dict]) -> bool:
    """Whether some node has the CPUs and the GPUs one worker of ``r`` asks (in total, busy or
    not: a busy node frees up, a node too small never fits)."""
    return any(float(node.get("CPU", 0)) >= r.cpus and float(node.get("GPU", 0)) >= r.gpus
               for node in nodes)


def check_resources(stages: list[Stage], config: RunConfig) -> None:
    """Before a run starts: raise :class:`ResourceError` (naming the field) for the first
    worker of ``stages`` that the cluster can never hold (the dry run's errors). Asks that nodes
    joining may satisfy pass: :func:`wait_for_resources` handles them when their stage
    starts."""
    nodes = alive_nodes()
    cluster = cluster_view()
    for stage in stages:
        for request in stage.requests(config, cluster):
            finding = None if fits_a_node(request, nodes) else unit_finding(request, cluster)
            if finding and finding.is_error:
                raise ResourceError(finding.line)


def ask_autoscaler(requests: list[Request]) -> None:
    """Ask the autoscaler for a node that holds one worker of each of ``requests`` (an empty
    list withdraws the ask). Without it, an autoscaler adds nodes only for work already
    submitted, and a run waiting before submitting any would wait in vain."""
    from ray.autoscaler.sdk import request_resources

    bundles = [{key: value for key, value in (("CPU", r.cpus), ("GPU", r.gpus)) if value}
               for r in requests]
    request_resources(bundles=[bundle for bundle in bundles if bundle])


def wait_for_resources(stage: Stage, config: RunConfig, timeout_s: float,
                       poll_s: float = 5.0) -> None:
    """Return once every kind of worker ``stage`` starts fits on some node of the cluster.

    Each worker the cluster cannot hold now: :class:`ResourceError` at once if it never can
    (:func:`unit_finding`); else one line says what the stage waits for, the autoscaler (if
    any) is asked for the node (:func:`ask_autoscaler`), and the cluster is polled every
    ``poll_s`` seconds for up to ``timeout_s`` seconds, after which :class:`ResourceError` names
    the field. The stage would otherwise wait for the node forever.
    """
    nodes = alive_nodes()
    cluster = cluster_view()
    waiting = [r for r in stage.requests(config, cluster) if not fits_a_node(r, nodes)]
    if not waiting:
        return
    findings = [unit_finding(r, cluster) or Finding(False, (
        f"{r.unit_field}: one {r.what} asks {r.size()}, no node of the cluster has that now; "
        f"{_growth(cluster)}"))
        for r in waiting]
    for finding in findings:
        if finding.is_error:
            raise ResourceError(finding.line)
    finding = findings[0]
    log.info(f"{stage.name}: waiting up to {timeout_s:g} s for a node that can hold it: "
             f"{finding.line}")
    ask_autoscaler(waiting)  # also where none was detected: without one, the ask does nothing
    deadline = time.monotonic() + timeout_s
    try:
        while not all(fits_a_node(r, nodes) for r in waiting):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ResourceError(f"{finding.line}; no node that can hold it joined within "
                                    f"{timeout_s:g} s")
            time.sleep(min(poll_s, left))
            nodes = alive_nodes()
    finally:
        ask_autoscaler([])
    log.info(f"{stage.name}: the cluster can hold it now")
