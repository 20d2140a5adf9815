"""Step metrics: the rollout accounting (:class:`RolloutStats`) and selector diagnostics of a step
(:func:`step_metrics`), the statistics of one optimizer update summed over its micro-batches
(:class:`UpdateStats`), sample logs."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from mmdps.rollout.scoring import Group

# policy_loss statistics averaged over tokens (each micro-batch weighted by its token count)
TOKEN_MEANS = ("clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl", "ratio_mean")
SUMMED = ("pg_loss", "kl", "entropy")  # each micro-batch's term is its share of the full-batch value


@dataclass
class RolloutStats:
    """Accounting of one step's rollout phase (all rounds, all processes)."""

    rounds: int = 0
    prompts_generated: int = 0
    rollouts: int = 0
    tokens: int = 0
    truncated: int = 0
    scores: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)
    formats: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    zero_variance_groups: int = 0
    time_select: float = 0.0
    time_rollout: float = 0.0
    time_reward: float = 0.0
    verifier_errors: int = 0  # verifier calls that raised or returned an invalid verdict (scored 0), all processes
    verifier_timeouts: int = 0  # verifier calls past their time limit or their wait for a worker (scored 0)
    allocation: dict[str, float] = field(default_factory=dict)  # allocation/* (rollout_allocation other than fixed)

    def add(self, groups: Sequence[Group]) -> None:
        for group in groups:
            lengths = group.lengths
            self.prompts_generated += 1
            self.rollouts += group.size
            self.tokens += sum(lengths)
            self.lengths.extend(lengths)
            self.truncated += sum(c.truncated for c in group.completions)
            self.scores.extend(group.score.tolist())
            self.accs.extend(group.acc.tolist())
            self.formats.extend(group.format.tolist())
            self.zero_variance_groups += group.zero_variance


class UpdateStats:
    """The metrics of one optimizer update, accumulated over its micro-batches."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.tokens = 0.0

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value

    def _max(self, key: str, value: float) -> None:
        self.sums[key] = max(self.sums.get(key, 0.0), value)

    def add_micro(self, loss: torch.Tensor, loss_stats: dict[str, torch.Tensor],
                  rollout_stats: dict[str, torch.Tensor], *, tokens: float) -> None:
        for key in SUMMED:
            if key in loss_stats:
                self._add(key, float(loss_stats[key]))
        self._add("loss", float(loss.detach()))
        self.tokens += tokens
        for key in TOKEN_MEANS:
            self._add(key, float(loss_stats[key]) * tokens)
        self._max("ratio_max", float(loss_stats["ratio_max"]))
        for key, stat in rollout_stats.items():
            if key == "logprob_diff_max":
                self._max("rollout/logprob_diff_max", float(stat))
            elif key != "ratio_mean":
                self._add(f"rollout/{key}", float(stat) * tokens)

    def result(self, grad_norm: float, *, skipped: bool) -> dict[str, float]:
        out = dict(self.sums)
        weighted = list(TOKEN_MEANS) + [key for key in out if key.startswith("rollout/")
                                        and key != "rollout/logprob_diff_max"]
        for key in weighted:
            out[key] = out[key] / self.tokens if self.tokens else 0.0
        out["grad_norm"] = grad_norm
        out["nan_updates"] = float(skipped)
        return out


def step_metrics(groups: Sequence[Group], stats: RolloutStats, selector, *, rollouts_total: int,
                 tokens_total: int) -> dict[str, Any]:
    """What a step logs about its rollouts and the selector."""
    trained_zero_var = sum(group.zero_variance for group in groups)
    metrics: dict[str, Any] = {
        "prompts_selected": len(groups),
        "prompts_generated": stats.prompts_generated,
        "rollout_rounds": stats.rounds,
        "rollouts": stats.rollouts,
        "rollouts_total": rollouts_total,
        "tokens_generated": stats.tokens,
        "tokens_total": tokens_total,
        "reward_mean": _mean(stats.scores),
        "reward_std": float(np.std(stats.scores)) if stats.scores else float("nan"),
        "acc_mean": _mean(stats.accs),
        "format_mean": _mean(stats.formats),
        "completion_length_mean": _mean(stats.lengths),
        "truncated_share": stats.truncated / stats.rollouts if stats.rollouts else 0.0,
        "zero_variance_share": stats.zero_variance_groups / stats.prompts_generated
        if stats.prompts_generated else 0.0,
        "effective_ratio": 1.0 - trained_zero_var / len(groups) if groups else 0.0,
        "reward/verifier_errors": stats.verifier_errors,
        "reward/verifier_timeouts": stats.verifier_timeouts,
    }
    metrics.update(stats.allocation)
    metrics.update({f"selector/{key}": value for key, value in selector.diagnostics().items()})
    metrics.update(selector.training_diagnostics())
    return metrics


def write_samples(output_dir: Path, step: int, groups: Sequence[Group], count: int) -> None:
    """Log ``count`` completions of the step, drawn reproducibly, to ``<output_dir>/samples``."""
    from mmdps.logging_utils import write_samples as write

    records = []
    for group in groups:
        item = group.item
        assert item is not None
        for j, completion in enumerate(group.completions):
            records.append({"step": step, "position": group.position, "id": item.id, "prompt": item.text,
                            "ground_truth": item.ground_truth, "completion": completion.text,
                            "score": group.score[j], "acc": group.acc[j], "format": group.format[j],
                            "finish_reason": completion.finish_reason, "tokens": len(completion.token_ids)})
    if records:
        write(output_dir, step, random.Random(step).sample(records, min(count, len(records))))


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
