"""scripts/check-arm64.sh says exactly why it skips where it cannot run (the full check takes minutes: its
result is recorded in docs/arm64-check.md)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO


def test_without_root_it_skips_with_the_reason_and_exit_0():
    command = ["bash", "scripts/check-arm64.sh"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing to drop root")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped: needs root"), result.stdout + result.stderr


def test_without_a_clip_it_skips_naming_the_file(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the clip is checked after root")
    result = subprocess.run(["bash", "scripts/check-arm64.sh"], cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "ARM64_CLIP": str(tmp_path / "none.mp4"),
                                              "ARM64_ROOT": str(tmp_path / "root")})
    assert result.returncode == 0, result.stderr
    missing = tmp_path / "none.mp4"
    assert result.stdout.strip() == f"skipped: no clip at {missing} (set ARM64_CLIP=<a video with a face>)"
    assert not (tmp_path / "root").exists()
