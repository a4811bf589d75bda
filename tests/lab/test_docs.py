"""Every command in a ``sh`` block of docs/*.md and of the README runs as written, in order, from
the repository's root, as root; a line that says ``# checked by PATH`` is run by that test instead
(it installs into the environment), and PATH must exist. In the README, the commands that need a
VM, a second shell or are this very test command are listed below with the test that covers
them. The Python and TOML the docs show must parse."""

import ast
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.lab]

ROOT = Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
COVERED = {
    # README lines not run here, and what runs or checks them instead
    r"-m pytest": ".ci/run",  # the test command runs us
    r"^vagrant ": "tests/unit/test_vagrant.py",  # needs a hypervisor; validated there
    r"warpgate (node|connect) ": "tests/loopback/test_cli.py",  # two shells at once
}


def blocks(page: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_command_runs_as_written(page):
    shutil.rmtree("/tmp/warpgate-docs", ignore_errors=True)
    reports = ROOT / "reports"
    before = set(reports.iterdir()) if reports.exists() else set()
    try:
        for block in blocks(page, "sh"):
            for line in block.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                checked = re.search(r"# checked by (\S+)", line)
                covered = [path for pattern, path in COVERED.items() if re.search(pattern, line)]
                if checked or covered:
                    assert (ROOT / (checked.group(1) if checked else covered[0])).exists(), line
                    continue
                out = subprocess.run(
                    ["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=600
                )
                assert out.returncode == 0, (line, out.stdout[-1500:], out.stderr[-1500:])
    finally:
        shutil.rmtree("/tmp/warpgate-docs", ignore_errors=True)
        for made in (set(reports.iterdir()) if reports.exists() else set()) - before:
            shutil.rmtree(made)  # the main job's report directory


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_what_the_docs_show_parses(page):
    for code in blocks(page, "python"):
        compile(code, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for text in blocks(page, "toml"):
        tomllib.loads(text)
