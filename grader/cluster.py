"""Where the workers run: a local process pool, or a Dask distributed cluster.

The coordinator sees a ``concurrent.futures`` executor either way (``Client.get_executor()`` is
one), so the per-submission work is the same function, shipped unchanged. On a cluster the task
carries the submission and the assignment as bytes; workers need no shared file system and never
see the gradebook. Datasets are staged once per worker (a Dask worker plugin), never once per
submission: from the course's mirror shipped with the plugin, or from a path the workers can read.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dask
from distributed import Client, LocalCluster, WorkerPlugin

from .paths import DATA_ENV

LOCAL = "local"
"""``--scheduler local``: a Dask LocalCluster on this machine, one single-threaded worker per slot."""
WORKER_CONFIG = {
    "distributed.worker.daemon": False,  # a non-daemonic worker may fork nbgrader from its fork server
    "distributed.worker.profile.enabled": False,  # sampling the task's thread every 10 ms costs the kernels CPU
    "distributed.admin.system-monitor.interval": "2s",
}
"""Dask settings of the LocalCluster's workers (docs/scale.md gives them for workers started by hand)."""


class StageData(WorkerPlugin):
    """Dask worker plugin: stage the datasets once per worker and point the notebooks at them.

    ``mirror`` is either the mirror's files (relative path -> bytes, shipped once per worker) or
    the path of a mirror on the worker's own file system.
    """

    name = "grader-stage-data"

    def __init__(self, mirror: dict[str, bytes] | str):
        self.mirror = mirror

    def setup(self, worker) -> None:
        from .data import stage
        from .records import write_tree

        local = Path(worker.local_directory) / "grader-data"
        mirror = Path(self.mirror) if isinstance(self.mirror, str) else local / "mirror"
        if not isinstance(self.mirror, str):
            write_tree(mirror, self.mirror)
        stage(local / "root", mirror)
        os.environ[DATA_ENV] = str(local / "root")


def mirror_files(mirror: Path) -> dict[str, bytes]:
    """The mirror's gzip files, as relative path -> bytes."""
    return {p.relative_to(mirror).as_posix(): p.read_bytes() for p in sorted(mirror.rglob("*.gz"))}


@contextmanager
def dask_executor(scheduler: str, workers: int, mirror: Path | None, worker_mirror: str | None) -> Iterator[tuple]:
    """(executor, slots) on a Dask cluster: ``scheduler`` is an address, or ``local`` for a LocalCluster."""
    cluster = None
    if scheduler == LOCAL:
        with dask.config.set(WORKER_CONFIG):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
        scheduler = cluster.scheduler_address
    client = Client(scheduler)
    try:
        if worker_mirror or (mirror and mirror.is_dir()):
            client.register_plugin(StageData(worker_mirror or mirror_files(mirror)), name=StageData.name)
        slots = sum(client.nthreads().values())
        if not slots:
            raise RuntimeError(f"the Dask scheduler at {scheduler} has no workers")
        yield client.get_executor(pure=False), slots
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
