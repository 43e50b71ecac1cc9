"""Joining a Ray cluster, or starting one on this machine: the one place ragvqa calls `ray.init`.

Both uses of Ray (`ragvqa index build --engine ray`, `ragvqa bench --executor ray`) join the
cluster at an address (`--ray-address`, or `RAY_ADDRESS`) when one is given, and otherwise start
a local Ray that listens on the loopback only, without a dashboard, with a small object store
(what travels is small: shard ranges, questions and answers) and quiet unless `-v`. A Ray
started here is stopped by `stop` (a Ray joined is left running).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ragvqa.errors import UserError, first_line

LOCAL_OBJECT_STORE = 256 * 2**20  # bytes: a local Ray's object store


def ray_module(what: str) -> Any:
    """The `ray` module; without Ray installed, one line saying what needs it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"{what} needs Ray: pip install 'ray[data]'") from None
    return ray


def join_or_start(
    what: str, address: str | None = None, *, num_cpus: int | None = None
) -> tuple[Any, bool]:
    """(the `ray` module, whether Ray was started here). `address`: the cluster to join
    (default `RAY_ADDRESS`); none: a local Ray with `num_cpus` CPUs (default: this machine's).
    Already connected (a caller's own `ray.init`): that connection is used as it is."""
    ray = ray_module(what)
    if ray.is_initialized():
        return ray, False
    from ragvqa import logs

    level = logging.ERROR if logs.is_quiet() else logging.INFO
    logging.getLogger("ray").setLevel(level)  # "Started a local Ray instance", ...
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=level)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(
                f"cannot join the Ray cluster at {address}: {first_line(exc)}"
            ) from None
        return ray, False
    ray.init(
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        num_cpus=num_cpus,
        object_store_memory=LOCAL_OBJECT_STORE,
        log_to_driver=False,
        logging_level=level,
    )
    return ray, True


def stop(ray: Any, started_here: bool) -> None:
    """Stop a Ray started by `join_or_start` (a joined cluster goes on)."""
    if started_here:
        ray.shutdown()
