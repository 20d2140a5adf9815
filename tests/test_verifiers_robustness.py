"""Every verifier on hostile and random input: always a verdict, never an exception, bounded time."""

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdps import verifiers
from mmdps.verifiers import isolation
from mmdps.verifiers.base import TimeLimitExceeded
from mmdps.verifiers.math import is_equivalent

# (verifier, ground truth, item metadata) for every built-in verifier
CASES = {
    "math": ("5", {}),
    "math_think": ("5", {}),
    "math_hashes": ("5", {}),
    "math_answer": ("5", {}),
    "countdown": ({"target": 24, "numbers": [2, 3, 4, 1]}, {}),
    "geometry": ("B", {"choices": ["1", "5", "7", "9"]}),
    "format_boxed": (None, {}),
    "format_answer": (None, {}),
}

ADVERSARIAL = [
    r"\boxed{9^{9^{9}}}",
    r"\boxed{10^{10^{10}}}",
    r"\boxed{(10^{8})!}",
    r"\boxed{99999999999999999999^{99999999999}}",
    r"\boxed{\int_0^1 e^{x^{x^{x}}} dx}",
    r"\boxed{" + "(" * 300 + "1" + ")" * 300 + "}",
    r"\boxed{" + "{" * 100_000,
    r"\boxed{" + "9" * 999 + "}",
    r"\boxed{__import__('os').system('echo pwned')}",
    r"\boxed{().__class__.__bases__[0].__subclasses__()}",
    r"\boxed{exec('1')}",
    "<answer>9**9**9**9</answer>",
    "<answer>__import__('os').system('echo pwned')</answer>",
    "<answer>" + "(" * 10_000 + "1" + ")" * 10_000 + "</answer>",
    "<answer>" + "1+" * 200_000 + "1</answer>",
    "x" * 1_000_000,
    "\\boxed{1}" * 100_000,
    "<think>" * 50_000 + "</think>" * 50_000,
    "\x00\ud800\U0010ffff" * 1000,
    "#### 9^{9^{9}}",
    "Answer: (10^{8})!",
    "#### " + "9" * 100_000,
    "####" * 100_000,
    "Answer:" * 100_000 + "1+" * 100_000,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_strings_score_zero_fast(text):
    for name, (gold, item) in CASES.items():
        start = time.perf_counter()
        # a short limit keeps the test fast; the default (2 s) is covered by test_default_time_limit
        verdict = verifiers.get(name)(text, gold, time_limit=0.5, **item)
        elapsed = time.perf_counter() - start
        assert set(verdict) == {"score", "acc", "format"}, name
        assert verdict["acc"] == 0.0 or name.startswith("format"), (name, text[:60])
        assert elapsed < 5.0, (name, text[:60], elapsed)


def test_default_time_limit_bounds_sympy():
    start = time.perf_counter()
    assert verifiers.get("math")(r"\boxed{9^{9^{9}}}", "5")["acc"] == 0.0
    assert time.perf_counter() - start < 5.0


def test_adversarial_from_a_worker_thread():
    """Off the main thread the worker process enforces the limit (and stays usable afterwards)."""
    out = {}

    def run():
        start = time.perf_counter()
        out["hostile"] = verifiers.get("math")(r"\boxed{10^{10^{10}}}", "5", time_limit=0.5)["acc"]
        out["elapsed"] = time.perf_counter() - start
        out["after"] = verifiers.get("math")(r"\boxed{\frac{10}{2}}", "5")["acc"]

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert out["hostile"] == 0.0 and out["after"] == 1.0
    assert out["elapsed"] < 5.0


def test_worker_is_killed_when_it_overruns(monkeypatch):
    """If a worker cannot stop itself in time (a long C call), the parent kills and replaces it."""
    pool = isolation.WorkerPool(size=1)
    try:
        assert pool.call(is_equivalent, ("5", ("5",)), 5.0) is True
        first = pool._idle[0].proc.pid
        monkeypatch.setattr(isolation, "KILL_GRACE_S", -0.4)  # parent deadline before the worker's own alarm
        start = time.perf_counter()
        with pytest.raises(TimeLimitExceeded):
            pool.call(is_equivalent, (r"9^{9^{9}}", ("5",)), 0.5)
        assert time.perf_counter() - start < 2.0
        assert pool._alive == 0
        monkeypatch.setattr(isolation, "KILL_GRACE_S", 1.0)
        assert pool.call(is_equivalent, (r"\frac{10}{2}", ("5",)), 5.0) is True
        assert pool._idle[0].proc.pid != first
    finally:
        pool.close()


def test_worker_refuses_functions_it_cannot_import_by_name():
    def local(x):
        return x

    for fn in (local, lambda x: x):
        with pytest.raises(ValueError, match="cannot run in a verifier worker process.*only module-level functions"):
            isolation.WorkerPool(size=1).call(fn, (1,), 1.0)


def test_non_string_completion_is_zero():
    for name, (gold, item) in CASES.items():
        assert verifiers.get(name)(None, gold, **item) == {"score": 0.0, "acc": 0.0, "format": 0.0}


FRAGMENTS = st.sampled_from(["\\boxed{", "}", "{", "\\fbox{", "<think>", "</think>", "<answer>", "</answer>",
                             "\\frac{", "^", "**", "(", ")", "=", "9", "1", "+", "-", "*", "/", "\\sqrt{",
                             "A", "(B)", "Answer: ", "\\circ", "x", " ", "\n", ".", ",", "\\text{cm}"])
TEXT = st.one_of(st.text(max_size=300), st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=60).map("".join))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_random_text_always_gets_a_verdict(text):
    for name, (gold, item) in CASES.items():
        verdict = verifiers.get(name)(text, gold, time_limit=0.5, **item)
        assert set(verdict) == {"score", "acc", "format"}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in verdict.values()), (name, verdict)


def test_registry():
    names = verifiers.available()
    assert {"math", "countdown", "geometry", "format_boxed", "format_answer", "gsm8k", "geo3k"} <= set(names)
    assert verifiers.get("gsm8k") is verifiers.get("math_hashes")  # verl's gsm8k layout: "#### answer"
    with pytest.raises(KeyError, match="known: "):
        verifiers.get("nope")

    @verifiers.register("always_right_test")
    def always(completion, ground_truth=None, /, **item):
        return verifiers.verdict(acc=True, format=True)

    assert verifiers.get("always_right_test")("x", None) == {"score": 1.0, "acc": 1.0, "format": 1.0}
    with pytest.raises(TypeError):
        verifiers.register("bad", 3)


def test_format_rewards():
    boxed, answer = verifiers.get("format_boxed"), verifiers.get("format_answer")
    assert boxed("<think>a</think> so \\boxed{1}")["score"] == 1.0
    assert boxed("a</think> so \\boxed{1}")["score"] == 1.0  # the prompt opened <think>
    assert boxed("\\boxed{1}")["score"] == 0.0
    assert boxed("<think>a \\boxed{1}</think>")["score"] == 0.0
    assert boxed("<think>a</think><think>b</think>\\boxed{1}")["score"] == 0.0
    assert answer("<think>a</think>\n<answer>1+2</answer>")["score"] == 1.0
    assert answer("<think>a</think>\n<answer>1+2")["score"] == 0.0
    assert answer("<answer>1+2</answer>")["score"] == 0.0
