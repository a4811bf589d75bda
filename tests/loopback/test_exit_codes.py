"""Exit codes of every command of both CLIs, in real processes: 0 ok, 1 failed, 2 bad input, and
never a traceback. (netsim's lab-building commands are run in the lab tests; here each gets its
bad-input case, which is refused before any lab is built. ``netsim clean`` is not run here: it
would remove the leftovers of a lab that another process might be running.)"""

import ipaddress
import subprocess
import sys

import pytest

from warpgate import Identity
from warpgate.proto.address import Address, Interface

DEAD = Address(
    Identity.generate().public_key, 9, 9, (Interface(private4=ipaddress.IPv4Address("127.0.0.1")),)
).to_text()

CASES = [
    # (argv, exit code, a piece of what stderr says)
    (["warpgate", "--version"], 0, ""),
    (["warpgate", "plugins", "-v"], 0, ""),
    (["warpgate", "address", DEAD], 0, ""),
    (["warpgate", "address", "wg1nonsense"], 2, "AddressError"),
    (["warpgate", "connect", DEAD, "--timeout", "1"], 1, "every plugin failed"),
    (["warpgate", "connect", DEAD, "--plugin", "nosuch"], 2, "no plugin named 'nosuch'"),
    (["warpgate", "connect", DEAD, "--broker", "mqtt://127.0.0.1:9", "--timeout", "1"], 1, "not reached"),
    (
        ["warpgate", "connect", DEAD, "--stun", "127.0.0.1:9", "--timeout", "1"],
        1,
        "no --stun server answered",
    ),
    (["warpgate", "connect", "nonsense"], 2, "AddressError"),
    (["warpgate", "connect", DEAD, "--timeout", "-1"], 2, "must be more than 0"),
    (["warpgate", "connect", DEAD, "--timeout", "0"], 2, "must be more than 0"),
    (["warpgate", "connect", DEAD, "--timeout", "nan"], 2, "not a finite number"),
    (["warpgate", "connect", DEAD, "--timeout", "soon"], 2, "is not a number"),
    (["warpgate", "connect", DEAD, "--wait", "-0.5"], 2, "must not be negative"),
    (["warpgate", "connect", DEAD, "-4", "-6"], 2, "not allowed with argument -4"),
    (["warpgate", "connect", DEAD, "--key", "/nonexistent/dir/key.pem"], 2, "does not exist"),
    (["warpgate", "connect", DEAD, "--turn", "http://relay"], 2, "not a turn:// URL"),
    (["warpgate", "node", "--portmap-lease", "0"], 2, "must be 1..4294967295"),
    (["warpgate", "node", "--port", "-1"], 2, "outside 0..65535"),
    (["warpgate", "nat", "--stun", "127.0.0.1", "--timeout", "inf"], 2, "not a finite number"),
    (["warpgate", "names-server", "--quota", "0"], 2, "must be at least 1"),
    (["warpgate", "names-server", "--db", "/nonexistent/dir/x.sqlite"], 2, "does not exist"),
    (["warpgate", "name", "lookup", "alice", "--server", "127.0.0.1:9", "--ttl", "-5"], 2, "must be 1.."),
    (["warpgate", "nat", "--stun", "127.0.0.1:9", "--timeout", "0.5"], 1, "no STUN server answered"),
    (["warpgate", "nat", "--stun", "127.0.0.1:99999"], 2, "is not host[:port]"),
    (["warpgate", "node", "--port", "70000"], 2, "outside 0..65535"),
    (["warpgate", "names-server", "--port", "70000"], 2, "outside 0..65535"),
    (["warpgate", "name", "lookup", "Not_A_Name", "--server", "127.0.0.1:9"], 2, "invalid_name"),
    (["warpgate", "name", "lookup", "nobody", "--server", "127.0.0.1:9"], 1, "unreachable"),
    (["warpgate", "name", "register", "alice", "--server", "127.0.0.1:9"], 2, "needs --key"),
    (["warpgate", "bogus"], 2, "invalid choice"),
    (["netsim", "--version"], 0, ""),
    (["netsim", "bogus"], 2, "invalid choice"),
    (["netsim", "run", "nosuch"], 2, "nor a shipped scenario"),
    (["netsim", "run", "quick", "--shard", "3/2"], 2, "need 1 <= K <= N"),
    (["netsim", "run", "quick", "--resume"], 2, "--resume needs --out"),
    (["netsim", "run", "quick", "--trials", "0"], 2, "must be at least 1"),
    (["netsim", "run", "quick", "--trials", "-2"], 2, "must be at least 1"),
    (["netsim", "compare", "/nonexistent", "/nonexistent", "--max-drop", "2"], 2, "outside 0..1"),
    (["netsim", "compare", "/nonexistent", "/nonexistent", "--max-slowdown", "nan"], 2, "not a finite"),
    (["netsim", "verify", "--lifetime", "-1"], 2, "must be at least 0"),
    (["netsim", "expect", "quick"], 0, ""),
    (["netsim", "expect", "nosuch"], 2, "nor a shipped scenario"),
    (["netsim", "rules", "symmetric"], 0, ""),
    (["netsim", "rules", "full-cone", "--iptables"], 0, "see the '# lost:' lines"),
    (["netsim", "rules", "portmap:sym-pcp"], 0, ""),
    (["netsim", "rules", "portmap"], 2, "has 3 sites: name one"),
    (["netsim", "rules", "portmap:nope"], 2, "no site 'nope'"),
    (["netsim", "rules", "nosuch"], 2, "is no preset"),
    (["netsim", "rules", "symmetric", "--wan", "eth0;reboot"], 2, "an interface name is"),
    (["netsim", "rules", "symmetric", "--public", "10.0.0.300"], 2, "not an IPv4 address"),
    (["netsim", "rules", "symmetric", "--wan", "eth1"], 2, "the same interface"),
    (["netsim", "report", "/nonexistent"], 2, "no records.jsonl"),
    (["netsim", "report", "/etc/hostname"], 2, "no records.jsonl"),
    (
        ["netsim", "compare", "/nonexistent", "/nonexistent", "--json", "/nonexistent/x.json"],
        2,
        "no directory",
    ),
    (
        ["netsim", "compare", "/nonexistent", "/nonexistent", "--junit", "/nonexistent/x.xml"],
        2,
        "no directory",
    ),
    (["netsim", "compare", "/nonexistent", "/nonexistent"], 2, "no records.jsonl"),
    (["netsim", "merge", "/nonexistent", "--out", "/tmp/never-written"], 2, "no meta.json"),
    (["netsim", "shell", "nosuch"], 2, "unknown topology"),
    (["netsim", "verify", "nosuchprofile"], 2, "unknown profile"),
]


@pytest.mark.parametrize(
    ("argv", "code", "says"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_exit_code(argv, code, says):
    module = {"warpgate": "warpgate", "netsim": "netsim"}[argv[0]]
    out = subprocess.run(
        [sys.executable, "-m", module, *argv[1:]], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == code, (out.stdout[-500:], out.stderr[-500:])
    assert "Traceback" not in out.stderr, out.stderr
    assert says in out.stderr, out.stderr


def test_a_names_database_that_is_not_one_exits_2(tmp_path):
    db = tmp_path / "names.sqlite"
    db.write_text("not a database\n")
    out = subprocess.run(
        [sys.executable, "-m", "warpgate", "names-server", "--db", str(db), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "is not a database" in out.stderr and "Traceback" not in out.stderr
    assert db.read_text() == "not a database\n"  # nothing lost


FOREIGN = {
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe" * 50, "not a records file"),
    "other JSON lines": (b'{"type": "trial", "hello": 1}\n[1, 2]\n{"x": "y"}\n', "no trial record in it"),
    "a gzip that is not one": (None, "not a records file"),
}


@pytest.mark.parametrize("kind", list(FOREIGN))
@pytest.mark.parametrize("command", ["report", "compare", "merge"])
def test_a_foreign_file_in_a_run_directory_exits_2(tmp_path, kind, command):
    """report, compare and merge read records.jsonl (or .gz) and meta.json written by someone
    else: one line and exit 2, the file left as it was."""
    data, says = FOREIGN[kind]
    run = tmp_path / "run"
    run.mkdir()
    name = "records.jsonl.gz" if data is None else "records.jsonl"
    (run / name).write_bytes(data if data is not None else b"not gzip at all")
    (run / "meta.json").write_text('{"scenario": {"name": "x"}}')
    argv = {
        "report": ["report", str(run)],
        "compare": ["compare", str(run), str(run)],
        "merge": ["merge", str(run), "--out", str(tmp_path / "merged")],
    }[command]
    out = subprocess.run([sys.executable, "-m", "netsim", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (out.stdout[-500:], out.stderr[-500:])
    assert says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_meta_json_that_is_not_one_exits_2(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_text(
        '{"type": "trial", "a": "open", "b": "open", "trial": 0, "run": "d"}\n'
    )
    (run / "meta.json").write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "netsim", "report", str(run)], capture_output=True, text=True)
    assert out.returncode == 2 and "not a run's meta.json" in out.stderr and "Traceback" not in out.stderr
