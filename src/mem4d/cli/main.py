"""The `mem4d` console script: one parser, one thin module per subcommand.

Each module in `SUBCOMMANDS` defines `add_parser(subparsers)` and `run(args) -> int`. Modules
import heavy or optional dependencies inside `run`, so `mem4d --help` works with only the core
install.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mem4d import __version__
from mem4d.cli.threads import prefer_passive_waiting

# subcommand name -> module (mem4d.cli.<module>)
SUBCOMMANDS = {
    "demo": "demo",
    "synth": "synth",
    "train": "train",
    "eval": "eval",
    "scene": "scene",
    "bench": "bench",
    "reconstruct": "reconstruct",
    "view": "view",
}


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback, exit code 2 (as ValueError,
    FileNotFoundError and other OSErrors: a path that cannot be read or written)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mem4d",
        description="Online 4D reconstruction of dynamic scenes from monocular video (Mem4D).",
    )
    parser.add_argument("--version", action="version", version=f"mem4d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(f"mem4d.cli.{module_name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    prefer_passive_waiting()  # before any subcommand imports torch (OpenMP reads it once)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"mem4d {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path that cannot be read or written: an input error too, no traceback
        where = f": {err.filename}" if err.filename else ""
        print(f"mem4d {args.command}: error: {err.strerror or err}{where}; check that the path exists, "
              "is of the right kind (file or folder) and is writable", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mem4d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
