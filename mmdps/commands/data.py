"""``mmdps data``: prepare the paper's datasets into the files the configs read (docs/tasks.md).

    mmdps data prepare geometry3k                          # hiyouga/geometry3k -> data/geometry3k/*.parquet
    mmdps data prepare math --source path/to/deepscaler    # train.json + test/*.json -> data/math
    mmdps data prepare countdown --limit 2000              # Countdown-Tasks-3to4 rows 0-1999
    mmdps data list

The library side is :mod:`mmdps.data.prepare`.
"""

from __future__ import annotations

import warnings


def configure_parser(parser) -> None:
    """Arguments of ``mmdps data``."""
    parser.description = "Prepare published datasets into the files mmdps's configs read."
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prepare = sub.add_parser("prepare", help="write a dataset's splits (with stable row ids) into a folder")
    prepare.add_argument("name", help="dataset: geometry3k, math, math500, aime, gsm8k, countdown "
                                      "(see `mmdps data list`)")
    prepare.add_argument("--source", default=None,
                         help="hub dataset id (owner/name, optionally @split) or a local copy in the hub's layout "
                              "(a file, or a folder of split files); default: the dataset's hub id")
    prepare.add_argument("--out", default=None, help="output folder (default: the one the configs read, e.g. "
                                                     "data/geometry3k)")
    prepare.add_argument("--limit", type=int, default=None, help="at most N rows per split")
    prepare.add_argument("--no-check", action="store_true",
                         help="skip the ground-truth self-check of the written training split")
    sub.add_parser("list", help="the datasets `prepare` knows, with their sources and outputs")


def fail(message: object) -> int:
    from mmdps.cli import fail as cli_fail

    return cli_fail("data", message)


def _list() -> int:
    from mmdps.data.prepare import SPECS

    for spec in SPECS.values():
        files = ", ".join(f"{split} -> {out}" for split, out in spec.outputs)
        print(f"{spec.name}: {spec.description}\n  default source {spec.hub_id}"
              f"{f' ({spec.hub_config})' if spec.hub_config else ''}; writes {spec.default_out}/: {files}")
    return 0


def _self_check(report) -> str:
    """Load the first written split through its task pack and score its own ground truths."""
    from mmdps import tasks
    from mmdps.data.prepare import get_spec
    from mmdps.data.sanity import check_reward_on_ground_truth

    first = report.splits[0]
    pack = tasks.get(get_spec(report.name).task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rows prepare wrote are valid; a skip here shows in the check anyway
        items = pack.load(first.path, split=first.split, limit=256, skip_invalid=True)
    return f"{first.split}: " + check_reward_on_ground_truth(items, pack).summary()


def run(args) -> int:
    """Entry point of ``mmdps data``."""
    if args.action == "list":
        return _list()
    from mmdps.data.prepare import prepare

    if args.limit is not None and args.limit < 1:
        return fail("--limit must be >= 1")
    try:
        report = prepare(args.name, args.source, args.out, limit=args.limit)
    except (FileNotFoundError, KeyError, ValueError) as error:
        return fail(error)
    print("\n".join(report.lines()))
    if not args.no_check and any(split.rows for split in report.splits[:1]):
        try:
            print(_self_check(report))
        except ValueError as error:
            return fail(error)
    return 0
