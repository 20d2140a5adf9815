"""How each benchmark is run: samples, sampling, length limit and prompt, in one table.

``mmdps eval --benchmark NAME`` follows the benchmark's published protocol (:data:`OFFICIAL`);
``--protocol dps`` switches to the DPS paper's validation protocol (:data:`DPS`, also the setting of
``mmdps eval --task``). A flag given explicitly (``--n``, ``--temperature``, ``--top-p``,
``--max-new-tokens``, ``--template``, ``--option``) overrides the protocol's value.

Where a benchmark publishes no value (GeoQA and Geometry3K publish no prompt or decoding for language
models; MathVerse no decoding settings), the entry is our choice and its ``note`` says so;
docs/evaluation.md has the table with the sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
        name: ``"official"`` or ``"dps"`` (one of :data:`PROTOCOL_NAMES`).
        samples: completions per problem (``--n``).
        temperature: sampling temperature (0: greedy).
        top_p: nucleus sampling (1.0: off).
        max_new_tokens: completion length limit.
        template: the preset's answer template: ``plain`` keeps the published prompt as it is,
            ``think_boxed`` / ``boxed`` add the answer instruction after it.
        options: load options of the preset (``--option`` overrides them), e.g. Geometry3K's
            ``show_choices``.
        note: where the values come from, in one line (printed with the results).
    """

    name: str
    samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    template: str
    options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def describe(self, template: str | None = None) -> str:
        """``"official: 1 sample, greedy, top-p 1, max 512 new tokens, template plain"`` (``template``: the
        one shown instead of the protocol's)."""
        decoding = "greedy" if self.temperature == 0 else f"temperature {self.temperature:g}"
        options = "".join(f", {key}={value}" for key, value in self.options.items())
        return (f"{self.name}: {self.samples} sample{'s' if self.samples != 1 else ''}, {decoding}, "
                f"top-p {self.top_p:g}, max {self.max_new_tokens} new tokens, "
                f"template {template or self.template}{options}")


PROTOCOL_NAMES = ("official", "dps")

#: the DPS paper's validation protocol (mean of 16 samples at T=0.6), with the training prompt
DPS = Protocol("dps", samples=16, temperature=0.6, top_p=1.0, max_new_tokens=1024, template="think_boxed",
               note="the DPS paper's validation protocol: mean@16 at temperature 0.6, top-p 1.0")

_GEOMETRY_NOTE = ("one answer per problem, graded against the right choice, as the benchmark's accuracy; "
                  "the benchmark publishes no prompt or decoding for language models: greedy, 1024 tokens and the "
                  "think_boxed instruction are our choice")

#: benchmark name -> its published protocol; a preset registered elsewhere adds its own entry here
OFFICIAL: dict[str, Protocol] = {
    "mathvista": Protocol(
        "official", samples=1, temperature=0.0, top_p=1.0, max_new_tokens=512, template="plain",
        note="MathVista testmini: one answer per problem to the published query (hint, question, choices), "
             "512 new tokens as the official generate_response.py; greedy is our choice (its local-model "
             "default is temperature 0.2); rule-based answer extraction instead of GPT-4's"),
    "mathverse": Protocol(
        "official", samples=1, temperature=0.0, top_p=1.0, max_new_tokens=1024, template="plain",
        note="MathVerse testmini: one answer per problem to the published query_cot prompt; the release publishes "
             "no decoding settings: greedy and 1024 tokens are our choice; rule-based extraction and matching "
             "instead of GPT-4's"),
    "geoqa": Protocol("official", samples=1, temperature=0.0, top_p=1.0, max_new_tokens=1024,
                      template="think_boxed", note=f"GeoQA test: {_GEOMETRY_NOTE}"),
    "geoqa_plus": Protocol("official", samples=1, temperature=0.0, top_p=1.0, max_new_tokens=1024,
                           template="think_boxed", note=f"GeoQA+ test: {_GEOMETRY_NOTE}"),
    "geometry3k": Protocol("official", samples=1, temperature=0.0, top_p=1.0, max_new_tokens=1024,
                           template="think_boxed", options=MappingProxyType({"show_choices": True}),
                           note=f"Geometry3K test, multiple choice as published (the choices are listed when the "
                                f"rows have them): {_GEOMETRY_NOTE}"),
}


def protocol(benchmark: str, name: str = "official") -> Protocol:
    """The protocol ``name`` (``official`` or ``dps``) of the preset ``benchmark`` (its registered name)."""
    if name not in PROTOCOL_NAMES:
        raise ValueError(f"unknown protocol {name!r}; use one of {', '.join(PROTOCOL_NAMES)}")
    if name == "dps":
        return DPS
    if benchmark not in OFFICIAL:
        raise ValueError(f"benchmark {benchmark!r} has no official protocol in mmdps.presets.protocols.OFFICIAL: "
                         "add one there, or use protocol 'dps'")
    return OFFICIAL[benchmark]


__all__ = ["DPS", "OFFICIAL", "PROTOCOL_NAMES", "Protocol", "protocol"]
