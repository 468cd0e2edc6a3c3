"""Fault injection for tests and benchmarks/chaos.py: SIGKILL a job's driver, or the Ray worker
processes of one Ray session, when a condition on the run directory comes true.

Only processes of the Ray session we started are ever touched: workers are found as descendants
of that session's raylet, never by name across the machine (other Ray sessions may run beside).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import psutil


def session_raylet_pid() -> int:
    """PID of the raylet of the Ray this process is connected to (started by ``ray.init``)."""
    import ray._private.worker as ray_worker

    node = ray_worker._global_node
    if node is None:
        raise RuntimeError("Ray is not initialised in this process")
    return node.all_processes["raylet"][0].process.pid


def ray_workers(raylet_pid: int, role: str) -> list[psutil.Process]:
    """Live worker processes under ``raylet_pid`` whose title names ``role`` (e.g.
    ``RayTrainWorker``, ``MapWorker``, ``SyntheticVideoSampler``)."""
    found = []
    try:
        children = psutil.Process(raylet_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return found
    for child in children:
        try:
            title = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if title.startswith("ray::") and role in title:
            found.append(child)
    return found


def kill_workers(raylet_pid: int, role: str, count: int = 1) -> list[int]:
    """SIGKILL up to ``count`` workers of ``role``; returns the PIDs killed."""
    killed = []
    for process in ray_workers(raylet_pid, role)[:count]:
        try:
            process.send_signal(signal.SIGKILL)
            killed.append(process.pid)
        except psutil.NoSuchProcess:
            pass
    return killed


class KillWhen(threading.Thread):
    """Background watcher: once ``condition()`` is true, call ``kill()`` (which returns the PIDs
    it killed) until it kills something, then stop. ``killed`` holds the PIDs."""

    def __init__(self, condition: Callable[[], bool], kill: Callable[[], list[int]],
                 interval: float = 0.1, timeout: float = 600.0):
        super().__init__(daemon=True)
        self.condition, self.kill = condition, kill
        self.interval, self.timeout = interval, timeout
        self.killed: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            if holds(self.condition):
                self.killed = self.kill()
                if self.killed:
                    return
            time.sleep(self.interval)

    def stop(self) -> list[int]:
        """Stop watching; returns the PIDs killed (empty when the condition never held)."""
        self._stop_event.set()
        self.join()
        return self.killed


def run_until(command: list[str], condition: Callable[[], bool], env: dict | None = None,
              timeout: float = 900.0, log_path: str | None = None) -> tuple[bool, int]:
    """Run ``command`` in its own process group; the moment ``condition()`` holds, SIGKILL the
    whole group (the driver and the local Ray it started: a preempted machine).

    Returns ``(killed, returncode)``: killed False when the command ended first.
    """
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = None
    try:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if holds(condition):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                _reap_group(process.pid)
                return True, process.returncode
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise TimeoutError(f"{command} did not finish in {timeout} s")
            time.sleep(0.05)
        _reap_group(process.pid)
        return False, process.returncode
    finally:
        if process is not None and process.poll() is None:  # the caller is failing: no leak
            _reap_group(process.pid)
            process.wait()
        if log_path:
            log.close()


def holds(condition: Callable[[], bool]) -> bool:
    """``condition()``, False when the files it looks at vanish under it (Ray Train deletes
    old checkpoint folders while a glob walks them)."""
    try:
        return bool(condition())
    except OSError:
        return False


def _reap_group(pgid: int) -> None:
    """SIGKILL what is left of a process group (Ray daemons the dead driver started)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
