"""Use mmdps verifiers as the reward of other trainers: TRL, verl and EasyR1.

TRL ``GRPOTrainer``::

    from mmdps.verifiers.adapters import trl_reward_func
    trainer = GRPOTrainer(..., reward_funcs=[trl_reward_func("math")])

verl (``custom_reward_function.path=<this file>``, ``custom_reward_function.name=verl_compute_score``)::

    verl_compute_score("openai/gsm8k", "... #### 18", "18")  # -> {"score": 1.0, "acc": 1.0, "format": 1.0}

EasyR1 (``worker.reward.reward_function=<this file>:easyr1_compute_score``, batch type).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from mmdps.verifiers import get
from mmdps.verifiers.base import VerdictDict

#: Dataset columns that TRL passes and that may hold the ground truth, in order of preference.
GROUND_TRUTH_COLUMNS = ("ground_truth", "solution", "answer")
_NOT_METADATA = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
                 "environments"}


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or the last message's content in a message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else ""
        if isinstance(content, list):  # content parts
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content if isinstance(content, str) else ""
    return ""


def trl_reward_func(name: str, key: str = "score", **verifier_kwargs: Any) -> Callable[..., list[float | None]]:
    """A TRL reward function ``f(prompts, completions, **kwargs) -> list[float | None]`` for verifier ``name``.

    The ground truth of completion ``i`` is ``kwargs[c][i]`` for the first present column ``c`` of
    ``ground_truth``, ``solution``, ``answer``; the row's other per-completion columns (``choices``,
    ``target``, ``nums``...) are passed to the verifier as item metadata. A row whose ground truth
    is None gets None ("not applicable", ignored by TRL). ``key`` picks the verdict field returned
    (``"score"``, ``"acc"`` or ``"format"``); ``verifier_kwargs`` go to every call.

    The function carries ``mmdps_verifier`` (the verifier name), ``mmdps_key`` and
    ``mmdps_verifier_kwargs``, so that a trainer can tell which verifier it wraps and ask
    :func:`trl_accuracy_reward` for the matching 0/1 accuracy.
    """
    if key not in ("score", "acc", "format"):
        raise ValueError(f"key must be 'score', 'acc' or 'format', got {key!r}")
    return _trl_reward(name, key, verifier_kwargs, cache={})


def trl_accuracy_reward(reward_func: Callable[..., Any]) -> Callable[..., list[float | None]]:
    """The ``acc`` (0/1) reward of the verifier that ``reward_func`` (made by :func:`trl_reward_func`) wraps.

    Both share their verdicts: called by TRL on the same completions right after ``reward_func``, it
    reads them instead of grading again.
    """
    name = getattr(reward_func, "mmdps_verifier", None)
    if name is None:
        raise ValueError(f"{getattr(reward_func, '__name__', reward_func)!r} is not an mmdps trl_reward_func")
    return _trl_reward(name, "acc", reward_func.mmdps_verifier_kwargs,  # type: ignore[attr-defined]
                       cache=reward_func.mmdps_cache)  # type: ignore[attr-defined]


def _trl_reward(name: str, key: str, verifier_kwargs: dict[str, Any], cache: dict[str, Any]
                ) -> Callable[..., list[float | None]]:
    verifier = get(name)

    def verdicts(completions: Sequence[Any], kwargs: dict[str, Any]) -> list[VerdictDict | None]:
        inputs = (completions, sorted(kwargs.items(), key=lambda kv: kv[0]))
        last = cache.get("inputs")
        if last is not None and last[0] is completions and [k for k, _ in last[1]] == [k for k, _ in inputs[1]] \
                and all(a is b for (_, a), (_, b) in zip(last[1], inputs[1], strict=True)):
            return cast(list, cache["verdicts"])  # the same call graded for a sibling reward (same objects)
        n = len(completions)
        column = next((c for c in GROUND_TRUTH_COLUMNS if c in kwargs), None)
        columns = {k: v for k, v in kwargs.items()
                   if k not in _NOT_METADATA and k != column and isinstance(v, (list, tuple)) and len(v) == n}
        if column is None and name != "countdown":
            raise ValueError(f"TRL reward {reward.__name__}: the dataset needs a ground-truth column, one of "
                             f"{', '.join(GROUND_TRUTH_COLUMNS)}; got columns {sorted(kwargs)}")
        truths = kwargs[column] if column else [None] * n
        if len(truths) != n:
            raise ValueError(f"TRL reward {reward.__name__}: column {column!r} has {len(truths)} values "
                             f"for {n} completions")
        out: list[VerdictDict | None] = []
        for i, completion in enumerate(completions):
            item = {k: v[i] for k, v in columns.items()}
            if truths[i] is None and column is not None:
                out.append(None)
                continue
            out.append(verifier(completion_text(completion), truths[i], **{**item, **verifier_kwargs}))
        cache["inputs"], cache["verdicts"] = inputs, out
        return out

    def reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
               ) -> list[float | None]:
        return [None if v is None else v[key] for v in verdicts(completions, kwargs)]

    reward.__name__ = f"{name}_{key}" if key != "score" else name  # TRL logs rewards/<__name__>/mean
    reward.__qualname__ = reward.__name__
    meta: Any = reward  # attributes a trainer reads to find the verifier behind this reward
    meta.mmdps_verifier, meta.mmdps_key, meta.mmdps_verifier_kwargs, meta.mmdps_cache = (
        name, key, dict(verifier_kwargs), cache)
    return reward


#: verl ``data_source`` -> verifier, for the sources verl's own preprocess scripts write, reading the
#: answer where each script's instruction asks for it (as ``verl.utils.reward_score`` does).
DATA_SOURCE_VERIFIERS: dict[str, str] = {
    "openai/gsm8k": "math_hashes",  # 'output the final answer after "####"'
    "lighteval/MATH": "math",  # 'output the final answer within \\boxed{}'
    "DigitalLearningGmbH/MATH-lighteval": "math",
    "HuggingFaceH4/MATH-500": "math",
    "math_dapo": "math_answer",  # DAPO: 'Answer: $Answer' on the last line
    "math_dapo_reasoning": "math_answer",
    "hiyouga/geometry3k": "geometry",  # '<think>...</think>', answer in \\boxed{}
}


def verifier_for_data_source(data_source: str | None) -> str:
    """Verifier name for a verl ``data_source``: :data:`DATA_SOURCE_VERIFIERS` for verl's own sources
    (``aime*`` as DAPO's), else ``countdown`` or ``geometry`` (geo3k) when the name says so, else ``math``
    (the last ``\\boxed{}``)."""
    source = data_source or ""
    if source in DATA_SOURCE_VERIFIERS:
        return DATA_SOURCE_VERIFIERS[source]
    lowered = source.lower()
    if lowered.startswith("aime"):
        return "math_answer"
    if "countdown" in lowered:
        return "countdown"
    if "geo3k" in lowered or "geometry" in lowered:
        return "geometry"
    if "gsm8k" in lowered:
        return "math_hashes"
    return "math"


def _item_metadata(extra_info: Any) -> dict[str, Any]:
    if not isinstance(extra_info, dict):
        return {}
    return {k: v for k, v in extra_info.items() if isinstance(k, str) and k.isidentifier()}


def verl_compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                       **kwargs: Any) -> VerdictDict:
    """verl ``compute_score``: picks the verifier from ``data_source`` (or ``extra_info["verifier"]``).

    ``extra_info`` entries (e.g. ``choices``) are passed to the verifier as item metadata, and so are
    ``custom_reward_function.reward_kwargs``. Returns the verdict dict (with ``score``, ``acc``,
    ``format``; verl logs every key and can filter groups on ``acc``).
    """
    item = _item_metadata(extra_info)
    name = item.pop("verifier", None) or verifier_for_data_source(data_source)
    return get(name)(solution_str, ground_truth, **{**item, **kwargs})


def make_verl_compute_score(name: str) -> Callable[..., VerdictDict]:
    """A verl ``compute_score`` bound to verifier ``name`` whatever the ``data_source``."""
    verifier = get(name)

    def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                      **kwargs: Any) -> VerdictDict:
        return verifier(solution_str, ground_truth, **{**_item_metadata(extra_info), **kwargs})

    compute_score.__name__ = compute_score.__qualname__ = f"{name}_compute_score"
    return compute_score


def verl_compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str],
                             ground_truths: Sequence[Any], extra_infos: Sequence[dict | None] | None = None,
                             **kwargs: Any) -> list[VerdictDict]:
    """verl ``batch`` reward manager form of :func:`verl_compute_score`."""
    extra_infos = extra_infos if extra_infos is not None else [None] * len(solution_strs)
    return [verl_compute_score(d, s, g, e, **kwargs)
            for d, s, g, e in zip(data_sources, solution_strs, ground_truths, extra_infos, strict=True)]


def easyr1_compute_score(reward_inputs: list[dict[str, Any]], verifier: str = "math", **kwargs: Any
                         ) -> list[dict[str, float]]:
    """EasyR1 batch reward (``REWARD_TYPE = "batch"``): ``{"overall", "format", "accuracy"}`` per input.

    Pick the verifier with ``worker.reward.reward_function_kwargs={"verifier": "geometry"}``.
    """
    fn = get(verifier)
    out = []
    for reward_input in reward_inputs:
        v = fn(reward_input["response"], reward_input["ground_truth"], **kwargs)
        out.append({"overall": v["score"], "format": v["format"], "accuracy": v["acc"]})
    return out


REWARD_NAME = "mmdps"
REWARD_TYPE = "batch"  # read by EasyR1 to pick the calling convention of easyr1_compute_score
