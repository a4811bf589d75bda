"""The runner <-> agent protocol and the records: one definition each, for both sides."""

import json
import subprocess
import sys

import pytest

from netsim.model import protocol, records


@pytest.mark.parametrize(
    "req",
    [
        protocol.Listen("a/b#0"),
        protocol.Connect("wg1abc", ("direct", "udp_punch"), timeout=1.5, payload=64, pause=True, trial="a/b"),
        protocol.Connect("wg1abc"),
        protocol.Reset(),
        protocol.Resume(),
        protocol.Quit(),
    ],
)
def test_requests_round_trip(req):
    line = protocol.encode(req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode(line) == req


@pytest.mark.parametrize(
    "line, match",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "a JSON object"),
        (b'{"cmd": "teleport"}', "unknown command"),
        (b'{"cmd": "listen", "colour": 1}', "unknown field 'colour'"),
        (b'{"cmd": "connect"}', "connect: .*address"),
        (b'{"cmd": "connect", "address": "x", "plugins": "direct"}', "plugins must be a list"),
        (b'{"cmd": "connect", "address": "x", "payload": "many"}', "payload has the wrong type"),
        (b'{"cmd": "connect", "address": "x", "pause": 1}', "pause has the wrong type"),
        (b'{"cmd": "connect", "address": "x", "timeout": true}', "timeout has the wrong type"),
        (b"{" + b" " * protocol.MAX_LINE + b"}", "at most"),
    ],
)
def test_bad_requests_are_typed_errors(line, match):
    with pytest.raises(protocol.AgentProtocolError, match=match):
        protocol.decode(line)


def test_the_agent_answers_a_bad_line_and_goes_on():
    """An agent (no lab needed: it only reads its control channel here) answers each line it cannot
    read with a failure, and still obeys the next request."""
    lines = [
        b"garbage\n",
        b'{"cmd": "resume"}\n',
        protocol.encode(protocol.Reset()),
        protocol.encode(protocol.Quit()),
    ]
    out = subprocess.run(
        [sys.executable, "-m", "netsim.hosts.agent", "--interface", "lo"],
        input=b"".join(lines),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answers = [json.loads(x) for x in out.stdout.splitlines()]
    assert answers[0] == protocol.READY
    assert answers[1]["error_class"] == "AgentProtocolError" and "not JSON" in answers[1]["error"]
    assert answers[2]["error_class"] == "AgentProtocolError" and "not a request here" in answers[2]["error"]
    assert answers[3] == {"ok": True}
    assert len(answers) == 4


def test_records_key_and_reading(tmp_path):
    ctx = records.Context("r1", "s", 1, "race")
    k1, k2 = records.Key("open", "symmetric", 0, "direct"), records.Key("open", "symmetric", 1, "direct")
    path = tmp_path / records.RECORDS
    rec = records.Recorder(path)
    rec.append(
        [records.trial(ctx, k1, {"outcome": "failed"}), records.attempt(ctx, k1, {"plugin": "direct"})]
    )
    rec.append([records.trial(ctx, k2, {"outcome": "connected"})])
    rec.append([records.trial(ctx, k1, {"outcome": "connected"})])  # a resumed run recorded it again
    with open(path, "a") as fh:
        fh.write('{"type": "trial", "a": "cut by a ki')  # a kill mid-line
    assert rec.done_keys() == {k1, k2}
    trials, attempts = records.read(path)
    assert [(records.Key.of(t), t["outcome"]) for t in trials] == [(k2, "connected"), (k1, "connected")]
    assert attempts[0]["plugin"] == "direct" and records.Key.of(attempts[0]) == k1
    assert trials[0]["run_id"] == "r1" and trials[0]["type"] == "trial"


def test_connect_carries_plugin_options():
    req = protocol.Connect("wg1x", ("random_probe",), options={"random_probe": {"budget": 64}})
    assert protocol.decode(protocol.encode(req)) == req
    for bad in ('"options": [1]', '"options": {"random_probe": {"budget": [1]}}', '"options": {"x": 3}'):
        line = b'{"cmd": "connect", "address": "wg1x", ' + bad.encode() + b"}"
        with pytest.raises(protocol.AgentProtocolError, match="options must map plugin names"):
            protocol.decode(line)
