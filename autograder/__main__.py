"""Command line: ``python -m autograder release [ASSIGNMENT ...]``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    rel = commands.add_parser("release", help="generate course/ from solutions/")
    rel.add_argument("assignments", nargs="*", help="assignment folders (default: all)")
    args = parser.parse_args(argv)

    if args.command == "release":
        from autograder.release import release

        for name in release(args.assignments):
            print(f"released {name} -> course/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
