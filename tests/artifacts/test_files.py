"""The one atomic write and the one lock: what readers and a second holder see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifacts.files import (
    TMP_SUFFIX,
    LockHeld,
    file_lock,
    write_atomic,
    write_json_atomic,
    write_text_atomic,
)


@pytest.mark.parametrize("sync", [True, False])
def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path, sync: bool) -> None:
    target = tmp_path / "deep" / "state.json"
    write_json_atomic(target, {"b": 1, "a": [1, 2]}, sync=sync)
    assert target.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n"

    def half_then_fail(handle: object) -> None:
        handle.write(b'{"torn": ')  # type: ignore[attr-defined]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail, sync=sync)
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert list(target.parent.iterdir()) == [target]


def test_temporaries_end_with_the_shared_suffix(tmp_path: Path) -> None:
    seen: list[Path] = []

    def look(handle: object) -> None:
        seen.extend(tmp_path.iterdir())

    write_atomic(tmp_path / "x.npy", look)
    assert len(seen) == 1 and seen[0].name.endswith(TMP_SUFFIX)
    write_text_atomic(tmp_path / "x.npy", "replaced")
    assert (tmp_path / "x.npy").read_text() == "replaced"


def test_a_held_lock_names_its_holder_and_is_free_after(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    with file_lock(path) as handle:
        handle.write("run 7")
        handle.flush()
        with pytest.raises(LockHeld) as busy:  # another open file: another holder
            with file_lock(path, wait=False):
                pass
        assert busy.value.holder == "run 7" and busy.value.path == path
    with file_lock(path, wait=False):
        pass
