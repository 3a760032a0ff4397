"""Where a study's trials run: Ray started in this process on this machine's cores (the
default), or an existing Ray cluster (`--address auto`, `--address ray://HOST:PORT`, `HOST:PORT`
or `$RAY_ADDRESS`). An address that cannot be reached is a clear error before any trial starts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..core.errors import NlbSuiteError

ADDRESS_ENV = "RAY_ADDRESS"
CONNECT_TIMEOUT_S = 3.0
CLUSTER_HELP = ("start one with `ray start --head` on the head machine (and `ray start --address HEAD:6379` on "
                "the others), then pass --address auto there, or --address ray://HEAD:10001 from elsewhere")


class ClusterError(NlbSuiteError, ConnectionError):
    """A Ray cluster that cannot be reached, or an address that does not parse."""


@dataclass(frozen=True)
class Cluster:
    """What the study got: the address it joined (None: started here) and its CPUs."""

    address: str | None
    cpus: int


def chosen_address(address: str | None) -> str | None:
    """`address`, else `$RAY_ADDRESS`, else None (start Ray here); checked for form."""
    address = address or os.environ.get(ADDRESS_ENV) or None
    if address is None or address in ("auto", "local"):
        return None if address == "local" else address
    host_port = address.removeprefix("ray://")
    host, separator, port = host_port.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--address {address!r}: expected auto, local, HOST:PORT or ray://HOST:PORT; "
                           f"{CLUSTER_HELP}")
    return address


def check_address(address: str | None) -> str | None:
    """The address a study will use (see `chosen_address`), refused now when nobody answers
    there: before the data are loaded or Ray starts."""
    address = chosen_address(address)
    if address is not None and address != "auto":
        _check_reachable(address)
    return address


def _check_reachable(address: str) -> None:
    """Refuse quickly (a few seconds) an address nobody listens on: Ray's own client would retry
    for a minute before failing."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ClusterError(f"--address {address}: no Ray cluster answers there ({err}); {CLUSTER_HELP}") from None


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[Cluster]:
    """Ray for one study: joined at `address`, or started here with `num_cpus` (default: every
    core) and shut down afterwards. Ray already running in this process (a test's, a notebook's)
    is used as it is."""
    import ray

    if ray.is_initialized():
        yield Cluster(chosen_address(address), int(ray.cluster_resources().get("CPU", 1)))
        return
    address = check_address(address)
    try:
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = address or "this machine"
        raise ClusterError(f"--address {where}: cannot start or join Ray ({err}); {CLUSTER_HELP}") from None
    try:
        yield Cluster(address, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        ray.shutdown()
