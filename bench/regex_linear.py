"""Time growth of every regex that meets attacker text (the code's and the rule pack's), at two sizes 8x apart.

    PYTHONPATH=. python bench/regex_linear.py [--small 2000] [--factor 8] [--examples 4] [--only SUBSTRING]

Texts are built the way tests/test_regex_linear.py builds them (a prefix, a repeated piece and a suffix
drawn from the pattern's own words and punctuation), timed by thread CPU time (best of 5, least of 3
tries). Prints each regex's worst ratio; linear is about the factor, quadratic about its square.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.regex_inventory import all_regexes, growth_ratio, tokens  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--factor", type=int, default=8)
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    rng = random.Random(13)
    worst_overall = []
    for where, pattern in all_regexes():
        if args.only not in where:
            continue
        parts = tokens(pattern.pattern)
        worst = (0.0, 0.0, 0.0, "")
        for _ in range(args.examples):
            seed = "".join(rng.choice(parts) for _ in range(rng.randint(1, 4)))
            prefix = rng.choice(["", *parts])
            ratio, small, big = growth_ratio(pattern, prefix, seed, "", args.small, args.factor)
            if big >= 0.002 and ratio > worst[0]:
                worst = (ratio, small, big, repr(prefix + seed)[:40])
        flag = "SUPERLINEAR" if worst[0] >= args.factor * 3 else ""
        print(f"{where:60} x{worst[0]:6.1f}  {worst[2] * 1000:8.1f} ms at {args.small * args.factor} chars "
              f"{worst[3]} {flag}", flush=True)
        if flag:
            worst_overall.append(where)
    print(f"super-linear: {len(worst_overall)}: {', '.join(worst_overall)}")
    return 1 if worst_overall else 0


if __name__ == "__main__":
    raise SystemExit(main())
