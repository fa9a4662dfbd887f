"""Fixtures shared by every test package: the real recordings and a tiny seeded world."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_audio_dir() -> Path:
    """`../shared/audio/` beside the checkout: real, freely licensed recordings (see MANIFEST.md)."""
    folder = Path(os.environ.get("COLDSTART_SHARED_AUDIO", REPO_ROOT.parent / "shared" / "audio"))
    if not (folder / "MANIFEST.md").is_file():
        pytest.fail(f"real recordings not found at {folder} (set COLDSTART_SHARED_AUDIO)")
    return folder


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic dataset (seeded), generated once per test session."""
    from corpus.world import generate_world

    out = tmp_path_factory.mktemp("tiny_world")
    generate_world(out, n_songs=120, n_users=300, clip_seconds=6.0, seed=7, workers=2)
    return out
