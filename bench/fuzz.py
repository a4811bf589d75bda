"""Fuzz every decoder of network bytes (``tests/fuzz.py``): 1,000,000 inputs each by default.

    .venv/bin/python bench/fuzz.py [--inputs 1000000] [--seed 1] [--only NAME ...]

Prints one line per decoder: inputs, accepted, rejected with the decoder's typed error, and
untyped exceptions (findings, each with the input that raised it). Exit code 1 on any finding.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo's tests/

from tests import fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per decoder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="decoders to run (default: all)")
    args = parser.parse_args(argv)
    bad = 0
    print(f"{'decoder':10} {'inputs':>9} {'accepted':>9} {'typed':>9} {'untyped':>8} {'seconds':>8}")
    for target in fuzz.targets():
        if args.only and target.name not in args.only:
            continue
        r = fuzz.run(target, args.inputs, args.seed)
        untyped = sum(r.findings.values())
        bad += untyped
        print(
            f"{r.name:10} {r.inputs:9} {r.accepted:9} {r.rejected:9} {untyped:8} {r.seconds:8.1f}", flush=True
        )
        for kind, (data, text) in r.examples.items():
            print(f"  {kind}: {text}\n    input {data.hex()}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
