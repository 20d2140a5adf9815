"""Geometry3K test (Lu et al., 2021, "Inter-GPS: Interpretable Geometry Problem Solving with Formal
Language and Symbolic Reasoning"), in both layouts the geometry pack reads:

* **InterGPS release** (``lupantech/InterGPS``, ``data/geometry3k/test/<id>/data.json`` with
  ``img_diagram.png``): ``problem_text``, ``choices``, ``answer`` (a letter), ``problem_type_goal``,
  ``problem_type_graph``, ... The official breakdown (``symbolic_solver/sub_acc.py``) is by goal type
  (Angle, Length, Area, Ratio; "Other" dropped when a problem has another goal) and by diagram type
  (Line, Triangle, Quad (any quadrilateral), Circle, Other).
* **hiyouga / EasyR1 rows** (hub ``hiyouga/geometry3k``: ``problem`` with ``<image>``, ``answer`` (the
  value), ``images``): no problem types, so no breakdowns.

Graded by ``geometry`` (a boxed value or choice letter), the reward the paper trains with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdps.data.item import Item
from mmdps.presets import register
from mmdps.presets.base import BREAKDOWNS_KEY, BenchmarkPreset
from mmdps.tasks.base import check_options, loader_options
from mmdps.tasks.geometry import GeometryPack

QUADS = ("Rectangle", "Rhombus", "Parallelogram", "Trapezoid", "Square")


def goal_types(goals: Sequence[str]) -> list[str]:
    """sub_acc.py's goal types: "Other" only when it is the problem's only goal."""
    goals = [str(g) for g in goals]
    return [g for g in goals if g != "Other"] if len(goals) > 1 else goals


def diagram_types(graphs: Sequence[str]) -> list[str]:
    """sub_acc.py's diagram types: every quadrilateral is "Quad"."""
    return list(dict.fromkeys("Quad" if str(g) in QUADS else str(g) for g in graphs))


@register
class Geometry3K(BenchmarkPreset):
    """Geometry3K test (601 problems), graded by ``geometry``.

    ``load`` options are the geometry pack's: ``show_choices`` (default True under the official
    protocol: the benchmark is multiple choice; False under ``dps``, as in the paper's runs; rows
    without choices list none), ``columns``, ``layout``, ``raw_prompt``, ``image_dir``.
    """

    name = "geometry3k"
    title = "Geometry3K"
    verifier = "geometry"
    description = "Geometry3K test: InterGPS problem folders or hiyouga/EasyR1 rows"
    hub_id = "hiyouga/geometry3k"
    default_split = "test"
    breakdowns = ("problem_type_goal", "problem_type_graph")

    def load(self, source: str | os.PathLike | None = None, *, split: str | None = None, limit: int | None = None,
             skip_invalid: bool = False, seed: int | str = 0, **options: Any) -> list[Item]:
        del seed  # a benchmark is fixed
        split = split or self.default_split
        source = str(source) if source not in (None, "") else self.hub_id
        options = self.protocol_options(options)
        pack = GeometryPack(template=self.template, system_prompt=self.system_prompt)
        path = Path(source).expanduser()
        if path.exists():
            items = pack.load(path, split=split, limit=limit, skip_invalid=skip_invalid, **options)
        else:
            rows, _ = self.rows(source, split)  # a hub id (read lazily), or a clear error for a missing path
            check_options(self.name, options, loader_options(pack.row_items, exclude=("rows", "source", "limit",
                                                                                      "skip_invalid")))
            items = pack.row_items(rows, source=source, limit=limit, skip_invalid=skip_invalid, **options)
        for item in items:
            item.task = self.name
            goals, graphs = item.metadata.get("problem_type_goal"), item.metadata.get("problem_type_graph")
            breakdowns = {"problem_type_goal": goal_types(goals or []),
                          "problem_type_graph": diagram_types(graphs or [])}
            item.metadata[BREAKDOWNS_KEY] = {name: labels for name, labels in breakdowns.items() if labels}
        return items


__all__ = ["Geometry3K", "diagram_types", "goal_types"]
