"""Scenario files (TOML), validated strictly: an unknown key or a bad value names file, line and key.

name = "quick"
description = "small matrix for the README's main job"
trials = 3                 # per cell
timeout = 2.0              # seconds per auto_connect
mode = "race"              # race: all plugins at once; solo: each plugin alone, one after another
observe = 0.5              # race: losers run on 0.5 s after the winner (reach counts late completions)
portmap = "start"          # nodes map their port at start ("start"), when a peer asks ("demand"), or never

[options.random_probe]     # a plugin's options (what auto_connect(options=...) passes it)
sockets = 256

[sweep]                    # run each trial once per value of one plugin option (records carry it)
plugin = "random_probe"
option = "budget"
values = [64, 256, 1024]
plugins = ["direct", "reverse"]
payload = 1024             # bytes echoed through each pipe
seed = 1

[sites.home]               # optional: a site (router) to name in the matrix beside the presets
profile = { mapping = "ADM", filtering = "APDF", allocation = "sequential", delta = 2 }
hairpin = true             # RFC 4787 §6
mapping_lifetime = 30      # seconds
port_range = [40000, 40999]
upnp = true                # miniupnpd on the router answers UPnP IGD,
natpmp = true              # ... NAT-PMP (RFC 6886),
pcp = true                 # ... PCP (RFC 6887): each on or off alone
behind = "symmetric"       # a carrier-grade NAT in front (a preset or an inline tuple)
# ipv6 = "firewall6"       # dual stack (not behind a carrier): open6, firewall6, firewall6-eif, blocked6

[matrix]                   # every a x b pair is a cell; B calls auto_connect to A
a = ["open", "full-cone", "port-restricted-cone", "symmetric"]
b = ["open", "home", "port-restricted-cone", "symmetric"]

[impairment]               # applied to every router's WAN link
delay_ms = 0
jitter_ms = 0
loss = 0.0

[expect]                   # optional: override the theory for a cell ("A/B" = plugins that must connect)
"symmetric/symmetric" = []

[fault]                    # optional: break something during the run (see netsim/model/faults.py)
what = "link-flap"
when = "mid-pipe"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsim.errors import ScenarioError
from netsim.model.faults import SIDES, WHEN, Fault
from netsim.model.nat import PROFILES, Profile, behind, from_table
from netsim.model.topology import IPV6, Impairment, Site
from warpgate.proto.nat import FIREWALLS6, Behaviours

MODES = ("race", "solo")
_TOP = {
    "name",
    "description",
    "trials",
    "timeout",
    "mode",
    "plugins",
    "payload",
    "seed",
    "flake",
    "matrix",
    "impairment",
    "expect",
    "capture",
    "fault",
    "sites",
    "observe",
    "portmap",
    "options",
    "sweep",
    "workers",
}
_SWEEP = {"plugin", "option", "values"}
MAX_SWEEP = 64
PORTMAP = ("start", "demand", "off")
_SITE = {"profile", "hairpin", "mapping_lifetime", "port_range", "upnp", "natpmp", "pcp", "behind", "ipv6"}
_FAULT = {"what", "when", "sites", "down_s", "trials", "survives"}
_MATRIX = {"a", "b"}
_IMPAIRMENT = {"delay_ms", "jitter_ms", "loss", "rate_mbit"}


@dataclass(frozen=True)
class SiteSpec:
    """A router as a scenario declares it (``[sites.NAME]``), or a preset named in the matrix."""

    nat: Profile
    hairpin: bool = False
    mapping_lifetime: int | None = None
    port_range: tuple[int, int] | None = None
    upnp: bool = False
    natpmp: bool = False
    pcp: bool = False
    behind: Profile | None = None
    """A carrier-grade NAT in front of this router (double NAT)."""
    ipv6: str | None = None
    """The router's IPv6 behaviour (``netsim.model.topology.IPV6``); None: no IPv6."""

    @property
    def seen(self) -> Profile:
        """The behaviour the internet sees: through the carrier's NAT too, when there is one."""
        return behind(self.nat, self.behind) if self.behind is not None else self.nat

    def behaviours(self, portmap: str = "start") -> Behaviours:
        """What plugin reach rules see of this site: its NAT as the internet sees it, and whether
        its node holds (``portmap = "start"``) or gets on request (``"demand"``) a mapping from
        the router. A mapping at a router behind a carrier opens only the inner NAT: none."""
        seen = self.seen
        grants = (self.upnp or self.natpmp or self.pcp) and self.behind is None
        v6 = None
        if self.ipv6 is not None and self.ipv6 != "blocked6":  # broken IPv6 joins nothing
            fw = FIREWALLS6[self.ipv6]
            # PCP or UPnP IGD v2 opens a pinhole for the node's port at start (miniupnpd)
            v6 = Behaviours(fw, fw, mapped=(self.pcp or self.upnp) and portmap == "start")
        return Behaviours(
            seen.udp,
            seen.tcp,
            mapped=grants and portmap == "start",
            maps=grants and portmap in ("start", "demand"),
            ipv6=v6,
        )

    def sites(self, name: str, wan: Impairment, hosts: int = 1) -> list[Site]:
        """The lab sites that make it: the router (and its carrier, ``NAME-cgn``, first)."""
        carrier = [Site(f"{name}-cgn", self.behind, hosts=0, wan=wan)] if self.behind is not None else []
        return [
            *carrier,
            Site(
                name,
                self.nat,
                upstream=carrier[0].name if carrier else None,
                hairpin=self.hairpin,
                hosts=hosts,
                mapping_lifetime=self.mapping_lifetime,
                port_range=self.port_range,
                upnp=self.upnp,
                natpmp=self.natpmp,
                pcp=self.pcp,
                wan=Impairment() if carrier else wan,
                ipv6=self.ipv6,
            ),
        ]


def preset(name: str) -> SiteSpec:
    return SiteSpec(PROFILES[name])


@dataclass(frozen=True)
class Sweep:
    """``[sweep]``: ``plugin``'s ``option`` at each of ``values``."""

    plugin: str
    option: str
    values: tuple[int | float | str, ...]


@dataclass(frozen=True)
class Variant:
    """One way a trial runs: its label in records, the plugins, their options, the swept value."""

    label: str
    plugins: tuple[str, ...] | None
    options: dict[str, dict[str, Any]]
    value: int | float | str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    plugins: tuple[str, ...]
    trials: int = 3
    timeout: float = 5.0
    mode: str = "race"
    payload: int = 1024
    seed: int = 1
    description: str = ""
    impairment: Impairment = field(default_factory=Impairment)
    expect: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    fault: Fault | None = None
    capture: bool = False
    """Record each trial on both routers' WAN links (tcpdump) and count what went on the wire."""
    sites: dict[str, SiteSpec] = field(default_factory=dict)
    """Routers declared in ``[sites.NAME]``; the matrix names these or presets."""
    observe: float = 0.0
    """Race mode: seconds the losers run on after the winner, so each plugin's reach counts its
    late completions (``auto_connect(observe=...)``); 0 cancels them at once (reach is then a
    lower bound)."""
    portmap: str = "start"
    """When the nodes ask their router for a port mapping (``Node(portmap=...)``)."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per plugin, the options its attempts get (``[options.NAME]``)."""
    sweep: Sweep | None = None
    """One plugin option run at each of several values (``[sweep]``)."""
    workers: int = 0
    """Cells run at once (never two sharing a router); 0: as many as the matrix and the CPUs allow.
    1 runs the cells one after another: what a timing benchmark needs, since a neighbouring cell
    on a 2-core machine measures its own CPU in ours."""
    flake: float = 0.0
    """The declared flake rate: a cell still agrees with theory when its trials against the
    expectation fit this rate (a one-sided binomial test at 5 %, ``netsim.model.stats.within_flake``)."""
    path: str = ""

    @property
    def cells(self) -> list[tuple[str, str]]:
        return [(pa, pb) for pa in self.a for pb in self.b]

    def site(self, name: str) -> SiteSpec:
        """A matrix entry: a declared site, else the preset of that name."""
        return self.sites[name] if name in self.sites else preset(name)

    def variants(self) -> list[Variant]:
        """What one trial of a cell runs: each run (``runs``), once per swept value when the
        sweep's plugin is in it; the label names the run (and the value) in records."""
        out = []
        for plugins in self.runs():
            label = ",".join(plugins or ())
            sweep = self.sweep
            if sweep is None or sweep.plugin not in (plugins or ()):
                out.append(Variant(label, plugins, self.options))
                continue
            for value in sweep.values:
                opts = {
                    **self.options,
                    sweep.plugin: {**self.options.get(sweep.plugin, {}), sweep.option: value},
                }
                out.append(Variant(f"{label} {sweep.option}={value}", plugins, opts, value))
        return out

    def trial_variants(self, trial: int) -> list[Variant]:
        """The variants of trial ``trial``, in the order it runs them (the same every trial)."""
        return self.variants()

    def runs(self) -> list[tuple[str, ...] | None]:
        """What one trial races: all plugins at once, or (solo) each plugin on its own."""
        return [tuple(self.plugins)] if self.mode == "race" else [(p,) for p in self.plugins]


class _Where:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def err(self, key: str, message: str) -> ScenarioError:
        table, _, leaf = key.rpartition(".")
        leaf = leaf.strip('"')
        if '"' in key:  # 'expect."a/b"': the table is what precedes the quoted leaf
            table, leaf = key.split('."', 1)[0], key.split('."', 1)[1].rstrip('"')
        pattern = re.compile(rf'^\s*"?{re.escape(leaf)}"?\s*=|^\s*\[{re.escape(key)}\]')
        # a key inside a table is searched for after the table's header, not at the top
        header = re.compile(rf"^\s*\[{re.escape(table)}\]") if table else None
        start = next((i for i, text in enumerate(self.lines) if header and header.search(text)), 0)
        line = next((i + 1 for i, text in enumerate(self.lines) if i >= start and pattern.search(text)), None)
        where = f"{self.path}:{line}" if line else self.path
        return ScenarioError(f"{where}: {key}: {message}")


def _check_keys(w: _Where, table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise w.err(f"{prefix}{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _get(
    w: _Where, table: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, prefix: str = ""
) -> Any:
    value = table.get(key, default)
    if value is None:
        raise w.err(prefix + key, "is required")
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise w.err(prefix + key, f"must be {names}, got {value!r}")
    return value


def _profiles(w: _Where, value: Any, key: str, sites: dict[str, SiteSpec]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise w.err(key, "must be a non-empty list of profile or site names")
    for p in value:
        if p not in PROFILES and p not in sites:
            known = ", ".join([*PROFILES, *sites])
            raise w.err(key, f"unknown profile or site {p!r} (known: {known})")
    if len(set(value)) != len(value):
        raise w.err(key, "lists a profile twice")
    return tuple(value)


def parse(text: str, path: str = "<scenario>") -> Scenario:
    w = _Where(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    _check_keys(w, data, _TOP, "")
    matrix = _get(w, data, "matrix", dict, None)
    _check_keys(w, matrix, _MATRIX, "matrix.")
    sites = _sites(w, _get(w, data, "sites", dict, {}))
    a = _profiles(w, matrix.get("a"), "matrix.a", sites)
    b = _profiles(w, matrix.get("b"), "matrix.b", sites)
    plugins = _get(w, data, "plugins", list, None)
    if not plugins or not all(isinstance(p, str) for p in plugins):
        raise w.err("plugins", "must be a non-empty list of plugin names")
    from warpgate import plugins as registry

    known = registry.available()
    for p in plugins:
        if p not in known:
            raise w.err("plugins", f"unknown plugin {p!r} (known: {', '.join(known)})")
    trials = _get(w, data, "trials", int, 3)
    if not 1 <= trials <= 10_000:
        raise w.err("trials", "must be 1..10000")
    timeout = float(_get(w, data, "timeout", (int, float), 5.0))
    if not 0.1 <= timeout <= 300:
        raise w.err("timeout", "must be 0.1..300 seconds")
    mode = _get(w, data, "mode", str, "race")
    if mode not in MODES:
        raise w.err("mode", f"must be one of {', '.join(MODES)}")
    payload = _get(w, data, "payload", int, 1024)
    if not 1 <= payload <= 1_000_000:
        raise w.err("payload", "must be 1..1000000 bytes")
    imp_table = _get(w, data, "impairment", dict, {})
    _check_keys(w, imp_table, _IMPAIRMENT, "impairment.")
    for key, value in imp_table.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise w.err(f"impairment.{key}", f"must be a number, got {value!r}")
    try:
        impairment = Impairment(**imp_table)
    except ScenarioError as exc:
        raise w.err("impairment", str(exc)) from None
    expect: dict[tuple[str, str], frozenset[str]] = {}
    for key, value in _get(w, data, "expect", dict, {}).items():
        pa, sep, pb = key.partition("/")
        if not sep or pa not in a or pb not in b:
            raise w.err(f'expect."{key}"', 'must be "A/B" with A from matrix.a and B from matrix.b')
        if not isinstance(value, list) or not set(value) <= set(plugins):
            raise w.err(f'expect."{key}"', "must be a list of this scenario's plugins")
        expect[(pa, pb)] = frozenset(value)
    fault = _fault(w, data.get("fault"), a, b, trials) if "fault" in data else None
    return Scenario(
        name=_get(w, data, "name", str, Path(path).stem),
        description=_get(w, data, "description", str, ""),
        a=a,
        b=b,
        plugins=tuple(plugins),
        trials=trials,
        timeout=timeout,
        mode=mode,
        payload=payload,
        seed=_get(w, data, "seed", int, 1),
        impairment=impairment,
        expect=expect,
        capture=_get(w, data, "capture", bool, False),
        flake=_flake(w, data),
        sites=sites,
        observe=_observe(w, data, mode),
        portmap=_portmap(w, data),
        options=_options(w, data, tuple(plugins)),
        sweep=_sweep(w, data, tuple(plugins)),
        fault=fault,
        workers=_workers(w, data),
        path=path,
    )


def _workers(w: _Where, data: dict[str, Any]) -> int:
    value: int = _get(w, data, "workers", int, 0)
    if not 0 <= value <= 256:
        raise w.err("workers", "must be 0 (as many as allowed) .. 256 cells at once")
    return value


def _nat(w: _Where, value: Any, key: str, name: str) -> Profile:
    """A preset's name or an inline RFC 4787 tuple."""
    if isinstance(value, str):
        if value not in PROFILES:
            raise w.err(key, f"unknown profile {value!r} (known: {', '.join(PROFILES)})")
        return PROFILES[value]
    if isinstance(value, dict):
        try:
            return from_table(value, name)
        except ScenarioError as exc:
            raise w.err(key, str(exc)) from None
    raise w.err(key, f"must be a preset's name or an inline table of axes, got {value!r}")


def _sites(w: _Where, table: dict[str, Any]) -> dict[str, SiteSpec]:
    """``[sites.NAME]`` tables: every value checked, every error with file, line and key."""
    out: dict[str, SiteSpec] = {}
    for name, site in table.items():
        at = f"sites.{name}"
        if not isinstance(site, dict):
            raise w.err(at, "must be a table")
        if name in PROFILES:
            raise w.err(at, "is a preset's name; give the site its own name")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", name):
            raise w.err(at, "a site name is 1-40 of a-z, 0-9 and '-'")
        _check_keys(w, site, _SITE, at + ".")
        ipv6 = site.get("ipv6")
        if ipv6 is not None and ipv6 not in IPV6:
            raise w.err(f"{at}.ipv6", f"must be one of {', '.join(IPV6)}, got {ipv6!r}")
        nat = _nat(w, site.get("profile"), f"{at}.profile", name) if "profile" in site else None
        if nat is None:
            raise w.err(f"{at}.profile", "is required")
        carrier = _nat(w, site["behind"], f"{at}.behind", f"{name}-cgn") if "behind" in site else None
        if carrier is not None and not (nat.translates and carrier.translates):
            raise w.err(f"{at}.behind", "a site behind a carrier and its carrier must both NAT")
        natpmp = _get(w, site, "natpmp", bool, False, at + ".")
        pcp = _get(w, site, "pcp", bool, False, at + ".")
        lifetime = site.get("mapping_lifetime")
        if lifetime is not None and (
            isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1
        ):
            raise w.err(f"{at}.mapping_lifetime", f"must be whole seconds >= 1, got {lifetime!r}")
        port_range = site.get("port_range")
        if port_range is not None:
            if not (
                isinstance(port_range, list)
                and len(port_range) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in port_range)
                and 1024 <= port_range[0] <= port_range[1] <= 65535
            ):
                raise w.err(f"{at}.port_range", f"must be [low, high] within 1024..65535, got {port_range!r}")
            port_range = (port_range[0], port_range[1])
        upnp = _get(w, site, "upnp", bool, False, at + ".")
        for key, on in (("upnp", upnp), ("natpmp", natpmp), ("pcp", pcp)):
            if on and not nat.translates:
                raise w.err(f"{at}.{key}", "port mapping needs a NAT")
        out[name] = SiteSpec(
            nat,
            hairpin=_get(w, site, "hairpin", bool, False, at + "."),
            mapping_lifetime=lifetime,
            port_range=port_range,
            upnp=upnp,
            natpmp=natpmp,
            pcp=pcp,
            behind=carrier,
            ipv6=ipv6,
        )
        try:
            out[name].sites(name, Impairment())  # the topology's own checks, now rather than at run time
        except ScenarioError as exc:
            raise w.err(at, str(exc)) from None
    return out


def load_sites(path: str | Path) -> dict[str, SiteSpec]:
    """The ``[sites]`` of a file (a scenario, or a file of sites alone such as ``warpgate nat
    --export`` writes); nothing else in it is read."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror}") from None
    w = _Where(str(p), text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    sites = _sites(w, _get(w, data, "sites", dict, {}))
    if not sites:
        raise ScenarioError(f"{p}: no [sites.NAME] table")
    return sites


def _observe(w: _Where, data: dict[str, Any], mode: str) -> float:
    value = float(_get(w, data, "observe", (int, float), 0.0))
    if not 0.0 <= value <= 30.0:
        raise w.err("observe", "must be 0..30 seconds")
    if value and mode != "race":
        raise w.err("observe", 'only a race has losers to observe (mode = "race")')
    return value


def _options(w: _Where, data: dict[str, Any], plugins: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    table = _get(w, data, "options", dict, {})
    out: dict[str, dict[str, Any]] = {}
    for name, opts in table.items():
        if name not in plugins:
            raise w.err(f"options.{name}", f"is not one of this scenario's plugins ({', '.join(plugins)})")
        if not isinstance(opts, dict):
            raise w.err(f"options.{name}", "must be a table of option = value")
        for key, value in opts.items():
            if not isinstance(value, int | float | str | bool):
                raise w.err(f"options.{name}.{key}", f"must be a number, string or boolean, got {value!r}")
        out[name] = dict(opts)
    return out


def _sweep(w: _Where, data: dict[str, Any], plugins: tuple[str, ...]) -> Sweep | None:
    table = _get(w, data, "sweep", dict, {})
    if not table:
        return None
    _check_keys(w, table, _SWEEP, "sweep.")
    plugin = _get(w, table, "plugin", str, None, "sweep.")
    if plugin not in plugins:
        raise w.err("sweep.plugin", f"{plugin!r} is not one of this scenario's plugins")
    option = _get(w, table, "option", str, None, "sweep.")
    values = _get(w, table, "values", list, None, "sweep.")
    if not 1 <= len(values) <= MAX_SWEEP or len(set(map(str, values))) != len(values):
        raise w.err("sweep.values", f"must list 1..{MAX_SWEEP} distinct values")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise w.err("sweep.values", f"must be numbers or strings, got {v!r}")
    return Sweep(plugin, option, tuple(values))


def _portmap(w: _Where, data: dict[str, Any]) -> str:
    value = _get(w, data, "portmap", str, "start")
    if value not in PORTMAP:
        raise w.err("portmap", f"must be one of {', '.join(PORTMAP)}, got {value!r}")
    return str(value)


def _flake(w: _Where, data: dict[str, Any]) -> float:
    value = _get(w, data, "flake", (int, float), 0.0)
    if isinstance(value, bool) or not 0.0 <= float(value) < 1.0:
        raise w.err("flake", "must be a rate in [0, 1)")
    return float(value)


def _fault(w: _Where, table: Any, a: tuple[str, ...], b: tuple[str, ...], trials: int) -> Fault:
    if not isinstance(table, dict):
        raise w.err("fault", "must be a table")
    _check_keys(w, table, _FAULT, "fault.")
    what = _get(w, table, "what", str, None, "fault.")
    if what not in WHEN:
        raise w.err("fault.what", f"must be one of {', '.join(WHEN)}")
    when = _get(w, table, "when", str, WHEN[what][0], "fault.")
    if when not in WHEN[what]:
        raise w.err("fault.when", f"{what} happens {' or '.join(WHEN[what])}")
    sites = _get(w, table, "sites", str, "both", "fault.")
    if sites not in SIDES:
        raise w.err("fault.sites", f"must be one of {', '.join(SIDES)}")
    down_s = float(_get(w, table, "down_s", (int, float), 1.0, "fault."))
    if not 0.05 <= down_s <= 60:
        raise w.err("fault.down_s", "must be 0.05..60 seconds")
    chosen = None
    if "trials" in table:
        chosen = table["trials"]
        if not isinstance(chosen, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < trials for t in chosen
        ):
            raise w.err("fault.trials", f"must be a list of trial numbers in 0..{trials - 1}")
        chosen = tuple(chosen)
    survives: dict[tuple[str, str], bool] = {}
    for key, value in _get(w, table, "survives", dict, {}, "fault.").items():
        pa, sep, pb = key.partition("/")
        if not sep or pa not in a or pb not in b:
            raise w.err(f'fault.survives."{key}"', 'must be "A/B" with A from matrix.a and B from matrix.b')
        if not isinstance(value, bool):
            raise w.err(f'fault.survives."{key}"', f"must be true or false, got {value!r}")
        survives[(pa, pb)] = value
    if survives and when != "mid-pipe":
        raise w.err("fault.survives", "only mid-pipe faults have a pipe to survive")
    return Fault(what, when, sites, down_s, chosen, survives)


SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"
"""The scenarios that ship with netsim (package data; ``scenarios/`` in a clone links here)."""


def shipped() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.toml"))


def resolve(name: str | Path) -> Path:
    """A scenario file, or the name of a shipped one (``quick`` is ``scenarios/quick.toml``)."""
    p = Path(name)
    try:
        here = p.exists()
    except OSError:  # a working directory this user may not read: then it is not a file here
        here = False
    if here or p.suffix or len(p.parts) > 1:
        return p
    if (SHIPPED / f"{p}.toml").exists():
        return SHIPPED / f"{p}.toml"
    raise ScenarioError(f"{name}: no such file, nor a shipped scenario ({', '.join(shipped())})")


def load(path: str | Path) -> Scenario:
    p = resolve(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror}") from None
    return parse(text, str(p))
