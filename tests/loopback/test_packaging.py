"""The wheel as a user installs it: built from this tree, installed without extras in a clean venv
(no system packages) together with the example plugin package and a broken plugin package."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "warpgate-tcp-only"


def run(*argv, ok=True, **kw):
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kw)
    if ok:
        assert out.returncode == 0, (argv, out.stdout[-2000:], out.stderr[-2000:])
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp / "dist", ROOT)
    (wheel,) = (tmp / "dist").glob("warpgate-*.whl")
    broken = tmp / "broken-plugin"
    (broken / "broken_plugin").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["setuptools>=77"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "broken-plugin"
            version = "0.0.1"
            [project.entry-points."warpgate.plugins"]
            broken = "broken_plugin:Nope"
            direct = "broken_plugin:Impostor"
            """
        )
    )
    (broken / "broken_plugin" / "__init__.py").write_text(
        "import warpgate\n\nclass Impostor(warpgate.plugins.base.Plugin):\n"
        "    name = 'direct'\n\n    async def attempt(self, ctx):\n        raise NotImplementedError\n"
    )
    example = tmp / "example"  # built from a copy: pip's build leaves build/ and egg-info behind
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env = tmp / "venv"
    run("/usr/bin/python3", "-m", "venv", env)
    # the example with its test extra, as docs/plugins.md has its author run its tests
    run(env / "bin" / "pip", "install", "--quiet", wheel, f"{example}[test]", broken)
    return env


def test_versions_and_module_entry_points(venv):
    from warpgate import __version__

    assert run(venv / "bin" / "warpgate", "--version").stdout.strip() == f"warpgate {__version__}"
    assert __version__ in run(venv / "bin" / "netsim", "--version").stdout
    assert run(venv / "bin" / "python", "-m", "warpgate", "--version").stdout.startswith("warpgate ")


def test_netsim_without_the_lab_extra_says_what_to_install(venv, tmp_path):
    out = run(venv / "bin" / "netsim", "report", tmp_path, ok=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "pip install 'warpgate[lab]'" in out.stderr and "pandas" in out.stderr


def test_the_example_plugin_is_listed_and_raced_and_a_broken_one_breaks_nothing(venv):
    listing = run(venv / "bin" / "warpgate", "plugins").stdout
    assert "tcp_only" in listing and "warpgate-tcp-only" in listing
    broken = [line for line in listing.splitlines() if "NOT LOADED" in line]
    assert any(line.startswith("broken") and "broken-plugin" in line for line in broken), listing
    assert any("taken" in line for line in broken), listing  # the impostor named "direct"
    demo = run(venv / "bin" / "warpgate", "demo").stdout
    assert "echo: hello through warpgate" in demo
    assert any(line.startswith("tcp_only") for line in demo.splitlines()), demo  # raced


def test_the_example_plugins_own_tests_pass(venv):
    out = run(
        venv / "bin" / "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        EXAMPLE / "tests",
        cwd=EXAMPLE,
    )
    assert " passed" in out.stdout and "skipped" not in out.stdout and "failed" not in out.stdout, out.stdout


def test_shipped_scenarios_are_in_the_wheel(venv):
    code = "from netsim.model.scenario import shipped, resolve; print(shipped(), resolve('quick'))"
    out = run(venv / "bin" / "python", "-c", code).stdout
    assert "quick" in out and "full-matrix" in out and out.strip().endswith("quick.toml")


def test_the_example_scenario_races_the_installed_plugin(venv):
    """The example's scenario validates where the plugin is installed (its name must be known)."""
    code = (
        "from netsim.model.scenario import load; from netsim.model import theory; "
        f"sc = load({str(EXAMPLE / 'scenario.toml')!r}); "
        "print(sc.plugins, theory.expected('tcp_only', 'full-cone', 'open'))"
    )
    out = run(venv / "bin" / "python", "-c", code).stdout
    assert "'tcp_only'" in out and out.strip().endswith("True")
