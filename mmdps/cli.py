"""The ``mmdps`` command. Each subcommand lives in its own module of :mod:`mmdps.commands` and is
imported only when used, so ``mmdps --help`` stays fast and a broken optional dependency never breaks
unrelated commands.

A subcommand module exposes ``configure_parser(parser)`` and ``run(args) -> int``; the library code it
calls lives in the library modules (the simulator engine in :mod:`mmdps.selection.simulator`, the
evaluation in :mod:`mmdps.eval`, ...).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("mmdps.commands.simulate", "compare prompt selectors on a simulated prompt population"),
    "tasks": ("mmdps.commands.tasks", "list and inspect task packs"),
    "train": ("mmdps.commands.train", "GRPO training from a YAML config"),
    "tiny-model": ("mmdps.commands.tiny_model", "write a tiny random-weight model (offline) for tests and demos"),
    "eval": ("mmdps.commands.eval", "evaluate a model on a benchmark, or compare reports"),
    "demo": ("mmdps.commands.demo", "the CPU demo: SFT warm-up then GRPO with DPS on Countdown"),
    "data": ("mmdps.commands.data", "prepare the paper's datasets (geometry3k, math, gsm8k, countdown) for training"),
}


#: Library keyword spellings in error messages, as the command line spells them (``--skip-invalid``).
CLI_SPELLINGS = {"pass skip_invalid=True": "pass --skip-invalid", "skip_invalid=True": "--skip-invalid"}


def fail(command: str, error: object, code: int = 2, *, cli_flags: bool = False) -> int:
    """Print the one-line ``mmdps <command>: error: <message>`` every subcommand uses for bad input,
    to stderr, and return ``code`` (the exit status). ``cli_flags``: the command has the flags of
    :data:`CLI_SPELLINGS`, so the library's advice names them as the user types them."""
    if isinstance(error, KeyError) and error.args:  # str(KeyError) adds quotes
        error = error.args[0]
    message = str(error)
    if cli_flags:
        for library, flag in CLI_SPELLINGS.items():
            message = message.replace(library, flag)
    print(f"mmdps {command}: error: {message}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmdps", description="Active RL finetuning (GRPO) with Dynamics-Predictive Sampling.",
        epilog="Run `mmdps COMMAND --help` for the options of one command.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        args = parser.parse_args(argv)
        if args.version:
            from mmdps import __version__

            print(__version__)
            return 0
        parser.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub_parser = argparse.ArgumentParser(prog=f"mmdps {name}", description=help_text)
    module.configure_parser(sub_parser)
    args = sub_parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
