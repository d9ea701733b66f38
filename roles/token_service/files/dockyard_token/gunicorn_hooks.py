# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""gunicorn server hooks (``--config`` of the unit); read by the master before the app loads,
so it imports nothing of the service.

child_exit: a dead worker's files stay in the metrics directory (its counters are still part
of every sum); only its live gauges must go (prometheus_client's mark_process_dead).
"""
from __future__ import annotations

import os
import typing as t


def child_exit(_server: t.Any, worker: t.Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess  # pylint: disable=import-outside-toplevel
        multiprocess.mark_process_dead(worker.pid, directory)
