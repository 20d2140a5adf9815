"""Countdown: the last ``<answer>...</answer>`` must be an arithmetic expression that uses every given
number exactly once and evaluates to the target.

Score rule (the paper's / TinyZero's): 1.0 correct; 0.1 when an ``<answer>`` tag is present but the
answer is wrong or malformed; 0.0 without a tag. ``format`` is 1 whenever the tag is present.

The expression is parsed with :mod:`ast` (never evaluated by Python): only integer literals, binary
``+ - * /`` and parentheses are allowed; it is evaluated with exact :class:`fractions.Fraction`
arithmetic, so ``|value - target| < 1e-5`` is decided without float error. The literal count is
checked against the given numbers *before* evaluation, and literals and expression length are
capped, so the work is bounded for any input.
"""

from __future__ import annotations

import ast
import operator
from collections import Counter
from fractions import Fraction
from typing import Any

from mmdps.verifiers.base import GroundTruthError, VerdictDict, never_raise, verdict

#: Longest answer expression considered (characters). 4-6 numbers need a few dozen.
MAX_EXPRESSION_CHARS = 500
#: Largest integer literal accepted (Countdown numbers are small).
MAX_LITERAL = 10**9
#: Score of a present-but-wrong answer (the paper's format score).
FORMAT_SCORE = 0.1
TOLERANCE = 1e-5

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class InvalidExpression(ValueError):
    """The answer is not an allowed Countdown expression (the message says why)."""


def extract_answer(completion: str) -> str | None:
    """Content of the last complete ``<answer>...</answer>``, or None."""
    end = completion.rfind("</answer>")
    if end < 0:
        return None
    start = completion.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return completion[start + len("<answer>"):end].strip()


def parse_ground_truth(ground_truth: Any, item: dict[str, Any]) -> tuple[Fraction, list[int]]:
    """``(target, numbers)`` from ``{"target": int, "numbers"|"nums": [...]}`` or the item metadata."""
    if isinstance(ground_truth, dict):
        source = ground_truth
    else:
        source = {} if ground_truth is None else {"target": ground_truth}
    target = source.get("target", item.get("target"))
    numbers = source.get("numbers", source.get("nums", item.get("numbers", item.get("nums"))))
    if target is None or numbers is None:
        raise GroundTruthError("countdown ground truth needs a target and numbers: pass "
                               "{'target': 24, 'numbers': [2, 3, 4, 1]} (or 'nums'); got "
                               f"{ground_truth!r:.120}")
    if hasattr(target, "tolist"):  # numpy scalars and arrays from parquet rows: python values
        target = target.tolist()
    if hasattr(numbers, "tolist"):
        numbers = numbers.tolist()
    try:
        target_q = Fraction(target) if not isinstance(target, float) else Fraction(str(target))
        numbers_i = [int(n) for n in numbers]
    except (TypeError, ValueError) as exc:
        raise GroundTruthError(f"countdown ground truth {ground_truth!r:.120} is not numeric: {exc}") from exc
    if any(int(n) != n for n in numbers):
        raise GroundTruthError(f"countdown numbers must be integers, got {numbers!r:.120}")
    return target_q, numbers_i


def parse_expression(expression: str) -> ast.expr:
    """The expression's AST after checking that it only holds integers, ``+ - * /`` and parentheses."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise InvalidExpression(f"longer than {MAX_EXPRESSION_CHARS} characters")
    # Cheap character screen before ast (which can recurse deeply on nested parentheses).
    if not expression or any(ch not in "0123456789+-*/() \t\n" for ch in expression):
        raise InvalidExpression("only digits, + - * / and parentheses are allowed")
    if "**" in expression or "//" in expression:
        raise InvalidExpression("only + - * / are allowed")
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        raise InvalidExpression(f"not an expression: {exc}") from exc
    for node in ast.walk(tree.body):
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _OPS:
                raise InvalidExpression(f"operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.Constant):
            if type(node.value) is not int or node.value > MAX_LITERAL:
                raise InvalidExpression(f"literal {node.value!r:.20} is not an allowed integer")
        elif type(node) not in _OPS:  # ast.walk also yields the operator nodes themselves
            raise InvalidExpression(f"{type(node).__name__} is not allowed")
    return tree.body


def literals(node: ast.expr) -> list[int]:
    """The integer literals of a checked expression, left to right."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, int)]


def evaluate(node: ast.expr) -> Fraction:
    """Exact value of a checked expression; ``ZeroDivisionError`` on division by zero."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return Fraction(node.value)
    if isinstance(node, ast.BinOp):
        return _OPS[type(node.op)](evaluate(node.left), evaluate(node.right))
    raise InvalidExpression(f"{type(node).__name__} is not allowed")  # unreachable for checked expressions


@never_raise
def verify_countdown(completion: str, ground_truth: Any, /, **item: Any) -> VerdictDict:
    """Grade a Countdown answer; ``ground_truth`` is ``{"target": int, "numbers": [int, ...]}``.

    ``numbers``/``nums``/``target`` may also come as item metadata. Other keyword arguments are ignored.
    """
    target, numbers = parse_ground_truth(ground_truth, item)
    expression = extract_answer(completion)
    if expression is None:
        return verdict(acc=False, format=False)
    wrong = verdict(acc=False, format=True, score=FORMAT_SCORE)
    try:
        tree = parse_expression(expression)
    except InvalidExpression:
        return wrong
    if Counter(literals(tree)) != Counter(numbers):
        return wrong
    try:
        value = evaluate(tree)
    except ZeroDivisionError:
        return wrong
    correct = abs(value - target) < TOLERANCE
    return verdict(acc=True, format=True) if correct else wrong
