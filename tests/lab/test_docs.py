"""Every command in a ``sh`` block of docs/*.md runs as written, in order, from the repository's
root, as root; a line that says ``# checked by PATH`` is run by that test instead (it installs
into the environment), and PATH must exist. The Python and TOML the docs show must parse."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.lab]

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))


def blocks(page: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_command_runs_as_written(page):
    shutil.rmtree("/tmp/warpgate-docs", ignore_errors=True)
    try:
        for block in blocks(page, "sh"):
            for line in block.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                checked = re.search(r"# checked by (\S+)", line)
                if checked:
                    assert (ROOT / checked.group(1)).exists(), line
                    continue
                out = subprocess.run(
                    ["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=600
                )
                assert out.returncode == 0, (line, out.stdout[-1500:], out.stderr[-1500:])
    finally:
        shutil.rmtree("/tmp/warpgate-docs", ignore_errors=True)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_what_the_docs_show_parses(page):
    for code in blocks(page, "python"):
        compile(code, str(page), "exec")
    for text in blocks(page, "toml"):
        tomllib.loads(text)
