"""Parts of a run on a Dask cluster (``dask.distributed``): an existing scheduler, or a LocalCluster.

The run's set-up (geometry, binning, corrections: tens of MB for a 4-Mpixel detector) is sent to every worker
once (``Client.scatter(broadcast=True)``); each task then opens its own frames, processes one part and writes
its files (braggsieve.pipeline.parts), so workers only need to see the inputs and the output folder (a shared
file system on a cluster).  A task that dies (worker lost) is rerun by Dask; its part files are written
atomically, so a rerun replaces nothing half-written.  Records come back as the parts finish.

On a SLURM cluster start the workers with dask-jobqueue and give the scheduler's address (docs/process.md).
"""
from __future__ import annotations

import logging
import os
import uuid
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)


def local_workers(workers: int | str | None) -> int:
    """Worker processes of the default LocalCluster: an integer as given, "auto" = one per 4 cores when the
    machine has 8 or more cores (else 0: run in this process), None = 0."""
    if workers is None:
        return 0
    if workers == "auto":
        cores = os.cpu_count() or 1
        return cores // 4 if cores >= 8 else 0
    return int(workers)


def run_on_dask(func: Callable[..., dict[str, Any]], spec, setup, parts: list, folder: str, options: dict[str, Any],
                *, scheduler: str | None = None, workers: int = 2) -> Iterator[dict[str, Any]]:
    """Run ``func(spec, setup, part, folder, **options)`` for every part on Dask; yield the records as the
    parts finish.

    ``scheduler``: address of a running scheduler (``tcp://host:8786``); None starts a LocalCluster of
    ``workers`` processes with one task each, numba using the machine's cores shared between them."""
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        options = {**options, "threads": threads}
        log.info("Dask LocalCluster: %d workers, %d numba threads each", workers, threads)
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            setup_future = client.scatter(setup, broadcast=True)
            run = uuid.uuid4().hex[:8]
            futures = [client.submit(func, spec, setup_future, part, folder, key=f"braggsieve-{run}-part-{part.number}",
                                     **options) for part in parts]
            for future in as_completed(futures):
                yield future.result()
    finally:
        if cluster is not None:
            cluster.close()
