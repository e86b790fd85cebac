"""`python -m tests.faults` (or `./dev faults`): a seeded run of faults under load, then the checkers.

    ./dev faults --seed 7 --commands 2000 --kills 20            # a short run
    ./dev faults --seed 7 --commands 10000 --kills 100 --rate 20  # the long run of docs/reliability.md
    ./dev faults --seed 7 --kinds kill,pause                    # only some faults

Exit code 0 when the checkers found nothing, 1 otherwise. The same seed replays the same
commands and the same faults at the same moments of the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tests.faults import harness


def main(argv: list[str] | None = None) -> int:
    """Parse the bounds, run, print the outcome."""
    parser = argparse.ArgumentParser(prog="./dev faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="replays the same commands and faults (default: 1)")
    parser.add_argument("--commands", type=int, default=2000, help="commands to send at most (default: 2000)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load at most (default: 600)")
    parser.add_argument("--kills", type=int, default=20, help="faults to inject (default: 20)")
    parser.add_argument("--rate", type=float, default=20.0, help="commands per second (default: 20)")
    parser.add_argument(
        "--kinds", default=",".join(harness.KINDS), help=f"faults to draw from (default: {','.join(harness.KINDS)})"
    )
    parser.add_argument("--workdir", type=Path, help="keep logs and data here (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the outcome here as JSON")
    args = parser.parse_args(argv)
    kinds = {kind: harness.KINDS[kind] for kind in args.kinds.split(",")}
    with harness.platform(args.workdir) as running:
        outcome = asyncio.run(
            harness.run(
                running,
                seed=args.seed,
                commands=args.commands,
                duration=args.duration,
                kills=args.kills,
                rate=args.rate,
                kinds=kinds,
            )
        )
    sys.stdout.write(outcome.report() + "\n")
    if args.json:
        args.json.write_text(json.dumps(outcome.as_dict(), indent=2))
    return 0 if outcome.findings.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
