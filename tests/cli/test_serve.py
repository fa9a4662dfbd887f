"""`coldstart serve --workers N`: the supervisor checks the settings (in a child process,
so that it never imports the catalogue's or the model's libraries) before any worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_invalid_settings_stop_the_workers_supervisor_with_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "COLDSTART_MAX_UPLOAD_BYTES": "5"}
    command = [sys.executable, "-c", "from cli.main import app; app()", "serve"]
    command += ["--registry", str(tmp_path), "--database", str(tmp_path / "c.db")]
    done = subprocess.run(
        command + ["--workers", "2"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "invalid settings: max_upload_bytes" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "c.db").exists()  # nothing opened, nothing migrated
