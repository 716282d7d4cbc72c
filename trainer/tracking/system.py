"""System metrics of a run: MLflow's own monitor (`system/cpu_utilization_percentage`, memory,
disk, network, GPU), sampled by a thread of its own while the run is open.

It samples the whole machine (the node, in a pod) and stops for good if the server is
unreachable when it checks the run; `perf/cpu_cores` (the loop's own metric, through our queue)
is what this run's processes use.
"""

from __future__ import annotations

import logging
from typing import Any


def start_system_metrics(
    run_id: str, interval_s: float | None, resumed: bool, tracking_uri: str | None
) -> Any:
    """Start MLflow's `SystemMetricsMonitor` for the run (its steps continue on a resumed run);
    None when `interval_s` is None (`mlflow.system_metrics_interval_s: null`). Stop it with
    `.finish()`."""
    if interval_s is None:
        return None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # Its INFO lines ("Started monitoring…") would land between the seed's console lines.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=interval_s, resume_logging=resumed, tracking_uri=tracking_uri
    )
    monitor.start()
    return monitor
