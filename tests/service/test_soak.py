"""The soak, short: `bench.soak`'s mixed traffic at 1 and then 4 clients on one live
server, a hot swap between two published versions in the middle of each phase; no request
fails, every route is exercised, each swap is seen, and the server is still up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.soak import ROUTES, soak
from tests.service.conftest import API_KEY

pytestmark = pytest.mark.slow

SECONDS_PER_PHASE = 12.0


def test_mixed_traffic_with_hot_swaps_fails_no_request(
    start_server: Any, own_registry: Any, trained_run: Path
) -> None:
    from pipeline.registry import publish_run

    second = publish_run(trained_run, own_registry.folder)  # now current
    server = start_server(
        registry_folder=own_registry.folder, COLDSTART_MODEL_POLL_SECONDS="1"
    ).start()

    results = soak(
        server.url,
        API_KEY,
        own_registry.folder,
        server.process.pid,
        clients=[1, 4],
        seconds_per_phase=SECONDS_PER_PHASE,
        sample_seconds=1.0,
    )

    assert server.alive() and results["healthz_after"] == 200
    assert set(results["versions"]) == {own_registry.version_id, second}
    for phase in results["phases"]:
        assert phase["server_errors"] == phase["transport_errors"] == 0, phase
        assert phase["unexpected"] == 0, phase
        assert all(phase["routes"][route]["requests"] > 0 for route in ROUTES), phase
        assert phase["swap"]["observed"], phase["swap"]
        assert phase["clients_stuck"] == 0
    first, then = (phase["swap"] for phase in results["phases"])
    assert (first["previous"], first["version"]) == (second, own_registry.version_id)
    assert (then["previous"], then["version"]) == (own_registry.version_id, second)
    assert results["memory"]["rss_end_mib"] > 0
    assert "Traceback" not in server.log.read_text()
