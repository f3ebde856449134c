"""The ``invlab`` command: a small dispatcher, one subcommand per module.

    invlab bench CONFIG            # invlab.bench: the resumable, shardable sweep
    invlab bench plot TABLE        # its figures
    invlab invert IMAGE ...        # invlab.invert_cli: invert an image file, write the report
    invlab diagnose IMAGE ...      # the same with every step's local error

A subcommand is a name mapped to ``"module:function"``; the function takes the remaining
arguments and returns an exit status. Modules are imported only when their subcommand runs.
"""

from __future__ import annotations

import importlib
import sys

#: subcommand -> ("module", "function", one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "bench": ("invlab.bench", "main", "run a bench config (resumable, shardable); `bench plot TABLE` draws it"),
    "invert": ("invlab.invert_cli", "main_invert", "invert an image file; write its reconstruction, noise and report"),
    "diagnose": ("invlab.invert_cli", "main_diagnose", "invert an image file and diagnose every step (no ground truth)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: invlab COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`invlab COMMAND --help` for a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"invlab {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"invlab: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[argv[0]]
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
