"""Which version is current: rollbacks by hand, their log, the withdrawn versions the gate's
floor leaves out, the versions described, and `coldstart model list | use`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifacts.manifest import ArtifactError
from catalogue import open_catalogue
from catalogue.runs import list_runs
from cli.main import app
from pipeline.nightly import recorded_scores
from pipeline.registry import (
    RegistryError,
    activate_version,
    current_version_id,
    describe_versions,
    load_current,
    prune_versions,
    publish_run,
    read_activations,
    withdrawn_versions,
)

pytestmark = pytest.mark.slow


def gate_record(cnn_map: float, test_songs: str = "songs-digest") -> dict[str, object]:
    """What the nightly run records in a version it published (`provenance["gate"]`)."""
    numbers = {"cnn": {"map": cnn_map, "auc": 0.7}, "hybrid": {"map": cnn_map, "auc": 0.7}}
    return {"passed": True, "decided_by": "current", "test_songs": test_songs, "candidate": numbers}


@pytest.fixture(scope="module")
def template(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A registry: V1 by hand, V2 and V3 as nightly runs that passed their gates (V2 with
    the best numbers); V3 current."""
    folder = tmp_path_factory.mktemp("registry")
    first = publish_run(trained_run, folder)
    second = publish_run(
        trained_run, folder, parent_version=first, provenance={"gate": gate_record(0.5)}
    )
    third = publish_run(
        trained_run, folder, parent_version=second, provenance={"gate": gate_record(0.3)}
    )
    return folder, [first, second, third]


@pytest.fixture()
def registry(template: tuple[Path, list[str]], tmp_path: Path) -> tuple[Path, list[str]]:
    folder = tmp_path / "registry"
    shutil.copytree(template[0], folder)
    return folder, template[1]


def test_a_rollback_is_logged_and_withdraws_the_version_from_the_floor(registry) -> None:
    folder, (first, second, third) = registry
    assert {score.version_id for score in recorded_scores(folder)} == {second, third}

    rolled = activate_version(folder, second, requested_by="key:0123abcd", note="V3 is bad")
    assert rolled.changed and (rolled.version, rolled.previous) == (second, third)
    assert current_version_id(folder) == second == load_current(folder).version_id
    assert read_activations(folder) == [rolled]
    assert withdrawn_versions(folder) == {third}
    # V3 counts for nothing now; V2's numbers remain the floor.
    assert {score.version_id for score in recorded_scores(folder)} == {second}

    # Rolled back further, then forward again to V3: it counts again, V1 and V2 do not.
    activate_version(folder, first)
    assert withdrawn_versions(folder) == {second, third}
    again = activate_version(folder, third, note="fixed after all")
    assert withdrawn_versions(folder) == {first, second}
    assert {score.version_id for score in recorded_scores(folder)} == {third}
    assert [a.version for a in read_activations(folder)] == [second, first, third]
    assert again.previous == first

    same = activate_version(folder, third)
    assert not same.changed and len(read_activations(folder)) == 3  # nothing to log


def test_retention_never_deletes_the_current_version(registry) -> None:
    folder, (first, _, third) = registry
    activate_version(folder, first)
    assert prune_versions(folder, keep=1) == [registry[1][1]]
    assert current_version_id(folder) == first
    assert {v.id for v in describe_versions(folder)} == {first, third}


def test_bad_activations_change_nothing(registry) -> None:
    folder, (first, _, third) = registry
    with pytest.raises(RegistryError, match="no version"):
        activate_version(folder, "20990101T000000Z-0000000000")
    with pytest.raises(RegistryError, match="no version"):
        activate_version(folder, "../../etc")
    manifest = folder / "versions" / first / "user_ids.json"
    manifest.write_text(manifest.read_text().replace('"', "'", 2))  # edited behind its back
    with pytest.raises(ArtifactError, match="sha256"):
        activate_version(folder, first)
    assert current_version_id(folder) == third and read_activations(folder) == []


def test_versions_are_described_newest_first(registry, trained_run: Path) -> None:
    folder, (first, second, third) = registry
    activate_version(folder, second)
    described = describe_versions(folder)
    assert [v.id for v in described] == [third, second, first]
    assert [(v.current, v.withdrawn) for v in described] == [
        (False, True),
        (True, False),
        (False, False),
    ]
    assert described[0].replaced == second and described[2].replaced is None
    assert described[1].gate is not None and described[1].gate["candidate"]["cnn"]["map"] == 0.5
    assert described[2].gate is None  # published by hand
    report = json.loads((trained_run / "report.json").read_text())
    assert described[2].evaluation["cnn"] == {
        "map": report["models"]["cnn"]["map"],
        "auc": report["models"]["cnn"]["auc"],
    }
    assert json.loads(json.dumps(described[0].to_json()))["id"] == third


def test_model_list_and_use_on_the_command_line(registry, tmp_path: Path) -> None:
    folder, (first, second, third) = registry
    runner = CliRunner()
    listed = runner.invoke(app, ["model", "list", "--registry", str(folder), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [v["id"] for v in json.loads(listed.output)] == [third, second, first]
    table = runner.invoke(app, ["model", "list", "--registry", str(folder)])
    assert table.exit_code == 0 and "0.5000 / 0.700" in table.output and "passed" in table.output
    star = [line for line in table.output.splitlines() if third in line]
    assert star and "*" in star[0]

    database = tmp_path / "catalogue.db"
    used = runner.invoke(
        app,
        ["model", "use", first, "--registry", str(folder)]
        + ["--database", str(database), "--note", "a bad night"],
    )
    assert used.exit_code == 0, used.output
    assert f"{first} is current (was {third})" in used.output
    assert current_version_id(folder) == first
    with open_catalogue(f"sqlite:///{database}") as catalogue:
        (run,) = list_runs(catalogue)
    assert (run.status, run.trigger, run.version_id) == ("activated", "cli", first)
    assert run.requested_by.startswith("cli:") and run.message.endswith(": a bad night")
    assert read_activations(folder)[-1].requested_by == run.requested_by

    again = runner.invoke(app, ["model", "use", first, "--registry", str(folder)])
    assert again.exit_code == 0 and "current already" in again.output
    unknown = runner.invoke(app, ["model", "use", "nonsense", "--registry", str(folder)])
    assert unknown.exit_code == 1 and "no version 'nonsense'" in unknown.output
