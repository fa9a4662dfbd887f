"""The scale rehearsal at a tiny fraction, end to end, so that it cannot rot: most songs have
audio (a few rendered, the rest recombined from them), every stage runs, the second night
warm-starts, fine-tunes and featurizes only the new tracks, and the hot swap fails no
request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audio.config import FRONT_END
from audio.decode import decode_usable

# Five CLI processes that each import torch, three pipeline runs and two services: several
# minutes on a busy two-core machine, beyond the suite's default 600 s bound.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_the_rehearsal_runs_every_stage_at_a_tiny_fraction(
    tmp_path: Path, postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`postgres_admin_url`: skipped, saying why, when no PostgreSQL server answers."""
    from bench import scale_rehearsal

    results = scale_rehearsal.main(
        [
            "--fraction", "0.0005",
            "--audio-songs", "150",
            "--rendered-songs", "20",
            "--epochs", "1",
            "--fine-tune-epochs", "1",
            "--max-minutes", "0.2",
            "--clip-seconds", "3",
            "--new-tracks", "3",
            "--requests", "3",
            "--work", str(tmp_path),
        ]
    )  # fmt: skip
    assert json.loads((tmp_path / "results.json").read_text())["stages"] == results["stages"]
    stages = {stage["name"]: stage for stage in results["stages"]}
    catalogue = results["catalogue"]
    assert catalogue["songs_with_audio"] == 150 > catalogue["songs"] / 2
    assert (catalogue["rendered_songs"], catalogue["recombined_songs"]) == (20, 130)
    recombined = sorted((tmp_path / "dataset" / "audio").glob("*.opus"))
    recombined = [path for path in recombined if not path.is_symlink()]
    assert len(recombined) == 130
    assert len({path.read_bytes() for path in recombined}) == 130  # distinct files
    clip = decode_usable(recombined[0]).samples  # that decode, at the clip's length
    assert clip.size == pytest.approx(3.0 * FRONT_END.sample_rate, rel=0.02)
    assert catalogue["listens"] > 24_000 and catalogue["users"] > 500
    for name in ("import into PostgreSQL", "import into SQLite", "bare psql \\copy of listens.tsv"):
        assert stages[name]["seconds"] > 0 and stages[name]["peak_rss_mib"] > 0
        # where in the stage its peak fell, from the samples
        assert 0 <= stages[name]["detail"]["peak_at_s"] <= stages[name]["seconds"]
    assert results["complete"] and stages["snapshot alone"]["seconds"] > 0
    sums = tmp_path / "runs" / "bare-sums.tsv"  # the bare export: the same bytes as the snapshot
    assert (tmp_path / "runs" / "snapshot" / "listens.tsv").read_bytes() == sums.read_bytes()
    first = stages["pipeline, first night (from scratch)"]["detail"]
    second = stages["pipeline, second night (warm, fine-tune)"]["detail"]
    assert first["version"] and second["outcome"] == "published"
    steps = [stage for stage in results["stages"] if stage["name"].startswith("  ")]
    assert {"  snapshot", "  featurize", "  factorize", "  train", "  publish"} <= {
        stage["name"] for stage in steps
    }
    assert any(s["name"] == "  factorize" and s["detail"]["warm_start_from"] for s in steps)
    assert any(s["name"] == "  train" and s["detail"]["fine_tuned_from"] for s in steps)
    # the first night featurizes every song with audio; the second only the 3 new tracks
    featurized = [s["detail"] for s in steps if s["name"] == "  featurize"]
    assert featurized[0]["computed"] == 150
    assert featurized[-1]["computed"] == 3 and featurized[-1]["up_to_date"] >= 150
    assert set(results["disk_gib"]) == {
        "audio", "mel_caches", "audio_store", "registry", "postgres"
    }  # fmt: skip
    day = stages["API: a day of listens and new tracks"]["detail"]
    assert day["listens_stored"] == day["listens_posted"] and day["tracks_added"] == 3
    swap = stages["serve: hot swap under a request loop"]["detail"]
    assert swap["failed"] == 0 and swap["requests"] > 0
    assert swap["versions"].get(swap["swapped_to"], 0) >= 1
    assert stages["serve: start to /readyz"]["detail"]["p50_ms"] > 0


def test_stages_are_chosen_by_name() -> None:
    import argparse

    from bench.scale_rehearsal import _stages

    assert _stages("snapshot, sqlite") == ("snapshot", "sqlite")
    assert _stages("bare-copy,nightly") == ("bare-copy", "nightly")
    with pytest.raises(argparse.ArgumentTypeError, match="nightlly"):
        _stages("sqlite,nightlly")
