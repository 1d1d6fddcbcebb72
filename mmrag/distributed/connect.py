"""Connecting the driver to a Ray cluster named by `--address`, failing fast with a message.

`ray.init(address=...)` on a dead address, or on a cluster started with token authentication
(`RAY_AUTH_MODE=token`) by a driver without the token, retries for about 20 s and then raises a
bare `ConnectionError`. Here the address is probed first: a TCP connect with a short timeout,
then one call to the cluster's GCS (Ray's own client, which sends the token when the driver has
one). Either failure becomes a typed error that says what to do, in well under a second for a
refused port.
"""

from __future__ import annotations

import logging
import socket

from mmrag.errors import ClusterAuthError, ClusterError

log = logging.getLogger(__name__)

DEFAULT_GCS_PORT = 6379  # `ray start --head` without --port
PROBE_TIMEOUT_S = 3.0
# addresses Ray resolves itself: a local cluster found on this machine, or a new one
_RAY_RESOLVED = ("auto", "local")

AUTH_HINT = (
    "it requires its authentication token, which this driver lacks or has wrong: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the cluster's "
    "token> (or RAY_AUTH_TOKEN_PATH=<a file holding it>) in this shell, then run the command again. "
    "`ray get-auth-token` on the head node prints the token"
)


def split_address(address: str) -> tuple[str, int, bool]:
    """'host:port', 'host' or 'ray://host:port' -> (host, port, is Ray Client)."""
    client = address.startswith("ray://")
    rest = address[len("ray://") :] if client else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        return rest, (10001 if client else DEFAULT_GCS_PORT), client
    try:
        return host.strip("[]"), int(port), client
    except ValueError as e:
        raise ClusterError(f"Ray address {address!r} is not host:port (for example 10.0.0.5:6379)") from e


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ClusterError if nothing listens at `address`, ClusterAuthError if its GCS wants a token."""
    host, port, client = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = f"no answer in {timeout:g} s" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({why}): start it with "
            f"`ray start --head --port {port}` on {host}, or check the address that `ray start` printed "
            "(its GCS port); leave --address out to index with a local Ray on this machine"
        ) from None
    if not client:
        _probe_gcs(f"{host}:{port}", address, timeout)


def _probe_gcs(gcs: str, address: str, timeout: float) -> None:
    """One cluster-id request to the GCS: an auth failure answers at once, without Ray's 20 s retries."""
    try:
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray release: ray.init's own errors are mapped in connect()
        return
    try:
        _ask_cluster_id(gcs, timeout)
    except AuthenticationError:
        raise ClusterAuthError(f"the Ray cluster at {address} refused this driver: {AUTH_HINT}") from None
    except Exception as e:  # noqa: BLE001 - a port that answers but is no Ray GCS
        raise ClusterError(
            f"{address} accepts connections but does not answer as a Ray cluster's GCS "
            f"({type(e).__name__}): give the address that `ray start --head` printed"
        ) from None


def _ask_cluster_id(gcs: str, timeout: float) -> None:
    """Ray's own GCS client (it adds the driver's token, if any); ray.init retries this for 20 s."""
    try:
        from ray._raylet import InnerGcsClient
    except ImportError:
        return
    InnerGcsClient.standalone(gcs, None, int(timeout * 1000))


def connect(ray, address: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """ray.init for the indexer: None starts or reuses a local Ray; an explicit address is probed first."""
    if ray.is_initialized():
        return
    explicit = address is not None and address not in _RAY_RESOLVED
    if explicit:
        probe(address, timeout)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except Exception as e:
        from ray.exceptions import AuthenticationError

        if isinstance(e, AuthenticationError):
            raise ClusterAuthError(
                f"the Ray cluster at {address or 'auto'} refused this driver: {AUTH_HINT}"
            ) from e
        if isinstance(e, ConnectionError):
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address or 'auto'} ({e}): check that it runs "
                "(`ray status`); leave --address out to index with a local Ray on this machine"
            ) from e
        raise
