"""Traversal plugins and their registry.

A plugin is a class with a unique ``name`` and an ``attempt`` coroutine::

    from warpgate import AttemptContext, AttemptFailed, Pipe, Plugin, register

    @register
    class Knock(Plugin):
        name = "knock"

        def applicable(self, ctx: AttemptContext) -> str | None:
            return None                      # or a reason why this plugin cannot apply

        async def attempt(self, ctx: AttemptContext) -> Pipe:
            for ep in ctx.dest.endpoints("tcp"):
                return await ctx.connect_tcp(ep.host, ep.port)
            raise AttemptFailed("no TCP endpoint")

``attempt`` returns an authenticated ``Pipe`` (the ``ctx.dial*`` / ``ctx.connect_*`` helpers
authenticate; a plugin with a channel of its own passes it through ``ctx.authenticate_stream``) or
raises ``AttemptFailed(reason)``. The race cancels it when another plugin wins: it must clean up in
``finally`` (or through ``ctx.resources``). A plugin that needs the peer's help declares the signal
messages it answers (``messages``, typed in ``warpgate.proto.messages``) and implements
``respond(ctx, msg)``; see ``warpgate.plugins.base``. Third-party packages register plugins
through the entry-point group ``warpgate.plugins`` (the entry point names a ``Plugin`` subclass).
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import dataclass
from importlib.metadata import entry_points

from warpgate.errors import PluginError
from warpgate.plugins.base import AttemptContext, Plugin, RacePolicy, ResponderContext

__all__ = [
    "AttemptContext",
    "Broken",
    "Plugin",
    "RacePolicy",
    "ResponderContext",
    "available",
    "broken",
    "create",
    "register",
    "unregister",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "warpgate.plugins"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_registry: dict[str, type[Plugin]] = {}
_loaded = False


def register(cls: type[Plugin]) -> type[Plugin]:
    """Class decorator: add a plugin to the registry; a malformed plugin or a taken name raises."""
    if not isinstance(cls, type) or not issubclass(cls, Plugin):
        raise PluginError(f"{cls!r} is not a subclass of warpgate.Plugin")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginError(f"{cls.__qualname__}.name must match {_NAME.pattern}, got {name!r}")
    if inspect.isabstract(cls):
        raise PluginError(f"plugin {name!r} leaves abstract methods: {sorted(cls.__abstractmethods__)}")
    if not inspect.iscoroutinefunction(cls.attempt):
        raise PluginError(f"plugin {name!r}: attempt must be an async def")
    params = list(inspect.signature(cls.attempt).parameters)
    if len(params) != 2:
        raise PluginError(f"plugin {name!r}: attempt must take (self, ctx), not {tuple(params)}")
    policy = cls.policy
    if not isinstance(policy, RacePolicy):
        raise PluginError(f"plugin {name!r}: policy must be a warpgate.RacePolicy, not {policy!r}")
    if policy.behind != "*" and (
        not isinstance(policy.behind, tuple) or not all(isinstance(p, str) for p in policy.behind)
    ):
        raise PluginError(f"plugin {name!r}: policy.behind must be '*' or a tuple of plugin names")
    if policy.patience not in ("handshake", "relay"):
        raise PluginError(
            f"plugin {name!r}: policy.patience is 'handshake' or 'relay', not {policy.patience!r}"
        )
    if cls.messages and cls.respond is Plugin.respond:
        raise PluginError(f"plugin {name!r} lists messages but does not implement respond")
    existing = _registry.get(name)
    if existing is not None and existing is not cls:
        raise PluginError(f"plugin name {name!r} is taken by {existing.__module__}.{existing.__qualname__}")
    _registry[name] = cls
    return cls


def unregister(name: str) -> None:
    _registry.pop(name, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from warpgate.plugins import (  # noqa: F401  (built-ins register on import)
        direct,
        portmap,
        random_probe,
        reverse,
        tcp_punch,
        turn,
        udp_punch,
    )

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        package = ep.dist.name if ep.dist is not None else "?"
        try:
            cls = ep.load()
            if _registry.get(getattr(cls, "name", None)) is not cls:  # type: ignore[arg-type]
                register(cls)
        except Exception as exc:  # noqa: BLE001  a broken third-party plugin: listed, never fatal
            reason = f"{type(exc).__name__}: {exc}"
            _broken[ep.name] = Broken(ep.name, package, ep.value, reason)
            log.error("plugin %s from %s not loaded: %s", ep.name, package, reason)


@dataclass(frozen=True)
class Broken:
    """A plugin entry point that did not load: which, from which package, and why."""

    name: str
    package: str
    target: str
    reason: str


_broken: dict[str, Broken] = {}


def broken() -> dict[str, Broken]:
    """Entry points that failed to load (import error, malformed plugin, taken name)."""
    _load()
    return dict(sorted(_broken.items()))


def available() -> dict[str, type[Plugin]]:
    """Every registered plugin by name (built-ins, entry points, and ``@register`` calls)."""
    _load()
    return dict(sorted(_registry.items()))


def create(name: str) -> Plugin:
    _load()
    try:
        return _registry[name]()
    except KeyError:
        raise PluginError(f"no plugin named {name!r}; known: {', '.join(sorted(_registry))}") from None
