"""The front ends of the ``mmdps`` subcommands, one module each (``mmdps/cli.py`` maps names to them).

Each module exposes ``configure_parser(parser)`` and ``run(args) -> int`` and holds only argument
parsing, printing and plotting; the work is done by the library modules it calls.
"""
