"""``mmdps tasks``: list the task packs, or show a few items of one.

    mmdps tasks list
    mmdps tasks show countdown --split cd34 --n 3
    mmdps tasks show math --source data/math/test/math500.json --n 2
    mmdps tasks show geometry --source data/geometry3k --split test --n 2   # after `mmdps data prepare geometry3k`
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mmdps.data.item import Item


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the known task packs (built-in and entry points)")
    show = sub.add_parser("show", help="load a few items of a pack and print them")
    show.add_argument("name", help="pack name or alias, e.g. math, countdown, geometry")
    show.add_argument("--source", default=None, help="data file or folder (default: the pack's generator)")
    show.add_argument("--split", default="train", help="split to load or generate (default: train)")
    show.add_argument("--n", type=int, default=3, help="how many items to show (default: 3)")
    show.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    show.add_argument("--template", default=None, help="prompt template name or format string")
    show.add_argument("--skip-invalid", action="store_true", help="skip bad rows instead of stopping")
    show.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="extra load option; VALUE is parsed as JSON when it can be (repeatable)")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["num=10", "levels=[0,1]", "name=x"]`` -> ``{"num": 10, "levels": [0, 1], "name": "x"}``."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def describe_content(content: Any) -> str:
    """Message content as text, with images shown as ``<image WxH>``."""
    if isinstance(content, str):
        return content
    chunks = []
    for part in content:
        if part.get("type") == "image":
            image = part.get("image")
            size = getattr(image, "size", None)
            chunks.append(f"<image {size[0]}x{size[1]}>" if size else "<image>")
        else:
            chunks.append(str(part.get("text", "")))
    return "\n".join(chunks)


def format_item(item: Item) -> str:
    lines = [f"--- item {item.id} (task {item.task}, verifier {item.verifier})"]
    for message in item.messages:
        lines.append(f"[{message['role']}]")
        lines.append(describe_content(message["content"]))
    lines.append(f"ground truth: {json.dumps(item.ground_truth, ensure_ascii=False, default=str)}")
    lines.append(f"metadata: {json.dumps(item.metadata, ensure_ascii=False, default=str)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mmdps import tasks

    if args.action == "list":
        packs = tasks.available()
        aliases: dict[str, list[str]] = {}
        for alias, target in tasks.ALIASES.items():
            aliases.setdefault(target, []).append(alias)
        for name, cls in packs.items():
            origin = "built-in" if name in tasks.BUILTIN else f"entry point ({cls.__module__})"
            also = f" (aliases: {', '.join(sorted(aliases[name]))})" if name in aliases else ""
            print(f"{name}{also}: {cls.description or cls.__doc__ or ''}".rstrip())
            print(f"    verifier: {cls.verifier}; templates: {', '.join(cls.templates)} "
                  f"(default {cls.default_template}); {origin}")
        for name, error in tasks.broken().items():
            print(f"{name}: BROKEN, cannot be loaded")
            print(f"    entry point {error}")
        from mmdps import verifiers

        for key, error in verifiers.broken().items():
            if key.startswith(f"{verifiers.ENTRY_POINT_GROUP}:"):  # the packs' own failures are listed above
                print(f"verifier {key.partition(':')[2]}: BROKEN, cannot be loaded")
                print(f"    entry point {error}")
        return 0
    if args.n < 1:
        raise SystemExit("--n must be at least 1")
    pack_options = {"template": args.template} if args.template else {}
    try:
        pack = tasks.get(args.name, **pack_options)
        items = pack.load(args.source, split=args.split, limit=args.n, skip_invalid=args.skip_invalid,
                          seed=args.seed, **parse_options(args.option))
    except (KeyError, ValueError, TypeError, OSError) as exc:
        from mmdps.cli import fail

        return fail("tasks", exc, cli_flags=True)
    for item in items:
        print(format_item(item))
    print(f"({len(items)} item(s) shown)")
    return 0
