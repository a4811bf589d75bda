"""The Vagrantfile: valid for Vagrant, and provisioned by scripts/setup.sh alone."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_vagrant_validates_it(tmp_path):
    if shutil.which("vagrant") is None:
        if os.environ.get("WARPGATE_CI"):
            pytest.fail("vagrant is missing in CI (.ci/run installs it)")
        pytest.skip("vagrant is not installed (CI installs it)")
    env = {**os.environ, "VAGRANT_CWD": str(ROOT), "VAGRANT_DOTFILE_PATH": str(tmp_path / ".vagrant")}
    out = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "validated successfully" in out.stdout


def test_it_provisions_through_setup_sh_only():
    text = (ROOT / "Vagrantfile").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    provisions = re.findall(r'config\.vm\.provision\s+"shell".*?inline:\s*"([^"]*)"', code)
    assert provisions == ["cd /vagrant && bash scripts/setup.sh"]
    for other in ("apt-get", "apt ", "pip ", "pip3"):  # no second install path
        assert other not in code
    assert 'config.vm.box = "bento/ubuntu-24.04"' in code
