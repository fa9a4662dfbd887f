"""`schemathesis run --checks all`, every phase (examples, coverage, fuzzing, stateful),
against a live tiny-world server on loopback, bounded in examples and time: zero failures,
zero server errors. The committed schemathesis.toml (exclusions, the audio hooks) applies;
the test adds the world's user and song ids as dictionaries, so that generated requests
reach real users' recommendations and real tracks, not only 404s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import API_KEY

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 25
MAX_SECONDS = 180
KNOWN_IDS = 30


def known_ids(registry: Any) -> str:
    """TOML dictionaries of the served version's users and songs, bound to the path ids."""
    folder = registry.folder / "versions" / registry.version_id
    users = json.loads((folder / "user_ids.json").read_text())[:KNOWN_IDS]
    songs = json.loads((folder / "index" / "cf_cosine" / "ids.json").read_text())
    songs = [song for song in songs if song is not None][:KNOWN_IDS]
    return (
        f"\n[dictionaries.users]\nvalues = {json.dumps(users)}\n"
        f"[dictionaries.tracks]\nvalues = {json.dumps(songs)}\n"
        "[parameters]\n"
        '"path.user_id" = { dictionary = "users", probability = 0.7 }\n'
        '"path.track_id" = { dictionary = "tracks", probability = 0.7 }\n'
    )


def test_schemathesis_finds_nothing_in_any_phase(
    start_server: Any, registry: Any, tmp_path: Path
) -> None:
    server = start_server().start()
    config = tmp_path / "schemathesis.toml"
    config.write_text((REPO / "schemathesis.toml").read_text() + known_ids(registry))
    reports = tmp_path / "reports"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_SECONDS),
        "--seed",
        "15",
        "--workers",
        "1",
        "--output-truncate",
        "true",
        "--report",
        "junit",
        "--report-dir",
        str(reports),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=MAX_SECONDS + 300
    )
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    (junit,) = reports.glob("junit*.xml")
    problems = [
        f"{case.get('name')}: {child.tag}: {(child.get('message') or child.text or '')[:300]}"
        for case in ET.parse(junit).getroot().iter("testcase")
        for child in case
        if child.tag in ("failure", "error")
    ]
    assert problems == [], tail
    assert run.returncode == 0, tail
    assert "Stateful" in run.stdout and "Coverage" in run.stdout
    assert "unhandled error" not in server.log.read_text()
    assert server.alive()
