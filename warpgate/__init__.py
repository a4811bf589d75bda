"""warpgate: connect two machines that may each sit behind a NAT.

    async with Node() as node:
        pipe, plugin = await auto_connect(node, dest_addr)
        await pipe.send(b"hello")
        reply = await pipe.recv(SUB_ALL)

The engine has no networking code of its own beyond ``channels`` (sockets for pipes); protocol
logic lives in ``warpgate.proto`` as pure functions of bytes.
"""

import logging
from importlib import metadata as _metadata

from warpgate.errors import (
    AddressError,
    AttemptFailed,
    ConnectError,
    HandshakeError,
    NotApplicable,
    PipeClosed,
    PluginError,
    WarpgateError,
)
from warpgate.events import AttemptEvent, Outcome
from warpgate.identity import Identity
from warpgate.node import Node
from warpgate.pipe import SUB_ALL, Pipe, Sub
from warpgate.plugins import AttemptContext, Plugin, RacePolicy, ResponderContext, register
from warpgate.plugins.sessions import Sessions
from warpgate.proto.address import Address, Endpoint, Interface
from warpgate.proto.messages import Candidate, Message, MessageError, message
from warpgate.proto.nat import PRESETS, Behaviours, Filtering, Mapping, NatBehaviour, PortAllocation
from warpgate.proto.timers import Liveness
from warpgate.race import auto_connect

try:
    __version__ = _metadata.version("warpgate")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "PRESETS",
    "SUB_ALL",
    "Address",
    "AddressError",
    "AttemptContext",
    "AttemptEvent",
    "AttemptFailed",
    "Behaviours",
    "Candidate",
    "ConnectError",
    "Endpoint",
    "Filtering",
    "HandshakeError",
    "Identity",
    "Interface",
    "Liveness",
    "Mapping",
    "Message",
    "MessageError",
    "NatBehaviour",
    "Node",
    "NotApplicable",
    "Outcome",
    "Pipe",
    "PipeClosed",
    "Plugin",
    "PluginError",
    "PortAllocation",
    "RacePolicy",
    "ResponderContext",
    "Sessions",
    "Sub",
    "WarpgateError",
    "__version__",
    "auto_connect",
    "message",
    "register",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
