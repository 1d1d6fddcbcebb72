"""A dead network is decided once per process, then only caches are read (encoders/weights.py)."""

from __future__ import annotations

import socket

import pytest

from encoders import weights
from encoders.base import WeightsNotFoundError


@pytest.fixture
def fresh_probe(monkeypatch):
    """No verdict yet, HF_HUB_OFFLINE unset; whatever the probe switches is restored afterwards."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(weights, "_probe", {})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", hf_constants.HF_HUB_OFFLINE)
    return monkeypatch


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_is_probed_once_and_switches_to_caches_only(fresh_probe, tmp_path):
    import huggingface_hub.constants as hf_constants

    fresh_probe.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    fresh_probe.setenv("HF_HUB_CACHE", str(tmp_path))
    probes, hub_calls = [], []
    real_probe = weights._probe_hub
    fresh_probe.setattr(weights, "_probe_hub", lambda: probes.append(1) or real_probe())

    def snapshot(model_id, *, local_only):
        hub_calls.append(local_only)
        raise FileNotFoundError("not in the cache")

    fresh_probe.setattr(weights, "_snapshot", snapshot)
    for _ in range(3):
        with pytest.raises(WeightsNotFoundError, match="unreachable"):
            weights.resolve_model_dir("someorg/missing-model")
    assert probes == [1]  # one probe per process
    assert hub_calls == [True, True, True]  # the cache, never the hub
    assert weights.hub_reachable() is False
    assert hf_constants.HF_HUB_OFFLINE is True  # libraries loaded later stay offline too


def test_reachable_hub_is_tried_after_the_cache(fresh_probe):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        fresh_probe.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert weights.hub_reachable() is True
    calls = []

    def snapshot(model_id, *, local_only):
        calls.append(local_only)
        raise OSError("no such repo")

    fresh_probe.setattr(weights, "_snapshot", snapshot)
    with pytest.raises(WeightsNotFoundError):
        weights.resolve_model_dir("someorg/missing-model")
    assert calls == [True, False]


def test_hf_hub_offline_needs_no_probe(fresh_probe):
    fresh_probe.setenv("HF_HUB_OFFLINE", "1")
    fresh_probe.setattr(weights, "_probe_hub", lambda: pytest.fail("probed although HF_HUB_OFFLINE=1"))
    assert weights.hub_reachable() is False
    assert "HF_HUB_OFFLINE=1" in weights.hub_unavailable_reason()
