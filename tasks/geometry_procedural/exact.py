"""Exact answers of the procedural geometry problems: integers, fractions and surds (``5\\sqrt{3}``,
``49\\pi``) kept exact with :class:`fractions.Fraction`, printed as LaTeX."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


def _split_square(n: int) -> tuple[int, int]:
    """``n = outside**2 * inside`` with ``inside`` square-free."""
    outside, inside, factor = 1, n, 2
    while factor * factor <= inside:
        while inside % (factor * factor) == 0:
            inside //= factor * factor
            outside *= factor
        factor += 1
    return outside, inside


def _plain_number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    if 100 % value.denominator == 0:  # terminates within two decimals: 3.5, 12.25
        return f"{float(value):.2f}".rstrip("0").rstrip(".")
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


@dataclass(frozen=True)
class Exact:
    """An exact answer ``coef * sqrt(radicand) * (pi if pi)``; ``latex()`` is its answer string."""

    coef: Fraction
    radicand: int = 1
    pi: bool = False

    @classmethod
    def of(cls, value: int | Fraction | Exact) -> Exact:
        return value if isinstance(value, Exact) else cls(Fraction(value))

    @classmethod
    def surd(cls, coef: int | Fraction, radicand: int) -> Exact:
        """``coef * sqrt(radicand)``, simplified (``2*sqrt(20)`` -> ``4*sqrt(5)``)."""
        outside, inside = _split_square(radicand)
        return cls(Fraction(coef) * outside, inside)

    @property
    def value(self) -> float:
        return float(self.coef) * math.sqrt(self.radicand) * (math.pi if self.pi else 1.0)

    def scaled(self, factor: int | Fraction) -> Exact:
        return Exact(self.coef * Fraction(factor), self.radicand, self.pi)

    def shifted(self, delta: int | Fraction) -> Exact:
        return Exact(self.coef + Fraction(delta), self.radicand, self.pi)

    def latex(self) -> str:
        symbol = (f"\\sqrt{{{self.radicand}}}" if self.radicand != 1 else "") + ("\\pi" if self.pi else "")
        if not symbol:
            return _plain_number(self.coef)
        coef = self.coef
        if coef.denominator == 1:
            return symbol if coef == 1 else f"{coef.numerator}{symbol}"
        top = symbol if coef.numerator == 1 else f"{coef.numerator}{symbol}"
        return f"\\frac{{{top}}}{{{coef.denominator}}}"


def format_number(value: int | Fraction) -> str:
    """A number as printed in the figure and the question (no LaTeX)."""
    return _plain_number(Fraction(value)).replace("\\frac", "")
