"""A real mosquitto broker on loopback for the tests, started and stopped by PID with the lab's
daemon helper (it ships with warpgate; mosquitto comes from the system: apt install mosquitto)."""

import shutil
import socket
from dataclasses import dataclass

import pytest


@dataclass
class Broker:
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@pytest.fixture
def broker(tmp_path):
    if shutil.which("mosquitto") is None:
        pytest.skip("needs mosquitto (apt install mosquitto)")
    from netsim.control.daemons import Daemon, mosquitto

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = Daemon(mosquitto("127.0.0.1", port), tmp_path / "mosquitto")
    daemon.start()
    try:
        yield Broker(port)
    finally:
        daemon.stop()
