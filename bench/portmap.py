"""Port-mapping benchmark (root, lab): a mapping at start, and connects that ride one.

    .venv/bin/python bench/portmap.py [--trials 20]

Four symmetric NATs whose routers (miniupnpd) answer PCP alone, NAT-PMP alone, UPnP IGD alone,
and all three; the caller sits behind a plain symmetric NAT, so only a mapping joins the pair.

- Nodes that map at start (``portmap = "start"``): the callee's time from its first probe to the
  granted lease (``portmap_ms`` of its start), and ``direct``'s time to connect to the mapping.
- Nodes that map on demand (``portmap = "demand"``): ``portmap``'s time to connect: one
  signalling round trip in which the callee's gateway maps, then what ``direct`` needs.

The floor is measured in the same trials: the round trip of the caller's MapRequest (signalling
plus the callee's gateway mapping its port, which is most of it) and direct's time to connect to a
mapping that already exists; portmap on demand costs about their sum.
Targets: a mapping at start <= 50 ms; a portmap-won connect <= 30 ms.
"""

from __future__ import annotations

import time

from labrun import arguments, median, run

from netsim.control.signals import torn_down
from netsim.model.nat import PROFILES
from netsim.model.scenario import SiteSpec

SITES = {
    "sym-pcp": SiteSpec(PROFILES["symmetric"], pcp=True),
    "sym-natpmp": SiteSpec(PROFILES["symmetric"], natpmp=True),
    "sym-upnp": SiteSpec(PROFILES["symmetric"], upnp=True),
    "sym-all": SiteSpec(PROFILES["symmetric"], pcp=True, natpmp=True, upnp=True),
}


def p90(values: list[float]) -> float:
    values = sorted(values)
    return values[int(0.9 * (len(values) - 1))] if values else float("nan")


def main() -> int:
    args = arguments(__doc__)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# port-mapping benchmark, {when}, {args.trials} trials")
    a, b = list(SITES), ["symmetric"]
    start = run("pm-start", a, b, ("direct",), trials=args.trials, sites=SITES, timeout=1.5)
    demand = run(
        "pm-demand", a, b, ("portmap",), trials=args.trials, sites=SITES, portmap="demand", timeout=1.5
    )
    print(
        "\n| router offers | mapped by | mapping at start, median / p90 | direct to it"
        " | portmap on demand, median / p90 | its MapRequest round trip | ok |"
    )
    print("|---|---|---|---|---|---|---|")
    for site in SITES:
        s = [r for r in start if r["a"] == site]
        d = [r for r in demand if r["a"] == site]
        maps = [r["a_portmap_ms"] for r in s if r.get("a_portmap_ms") is not None]
        by = sorted({r["a_portmap"] for r in s if r.get("a_portmap")})
        direct = [r["ttc_ms"] for r in s if r["outcome"] == "connected"]
        pm = [r["ttc_ms"] for r in d if r["outcome"] == "connected"]
        signal = median([r["signal_rtt_ms"] for r in d if r.get("signal_rtt_ms")])
        ok = f"{len(direct)}/{len(s)} + {len(pm)}/{len(d)}"
        print(
            f"| {site} | {', '.join(by) or '-'} | {median(maps):.1f} / {p90(maps):.1f} ms"
            f" | {median(direct):.1f} ms | {median(pm):.1f} / {p90(pm):.1f} ms | {signal:.1f} ms | {ok} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(torn_down(main))
