"""The rollout-engine interface. The trainer and the evaluator only ever see this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from mmdps.data.item import Item


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None


@dataclass
class Completion:
    """One sampled completion of one prompt."""

    text: str
    token_ids: list[int]
    finish_reason: str = "stop"  # "stop" (EOS / stop string) or "length" (hit max_new_tokens)
    # The sampler's log-prob of each token in token_ids, under the distribution it sampled from
    # (temperature, top-k, top-p applied); None when the engine does not report them (greedy decoding).
    logprobs: list[float] | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class NonFiniteLogitsError(RuntimeError):
    """The policy produced NaN or infinite logits while sampling: its weights have diverged (or the
    dtype overflowed). Raised before sampling from them, which would fail inside ``torch.multinomial``."""


class RolloutEngine(ABC):
    """Generates ``k`` completions for each item. Prompts are rendered by the engine with the model's
    chat template and processor, so callers pass :class:`~mmdps.data.item.Item` objects."""

    @abstractmethod
    def generate(self, items: Sequence[Item], k: int, sampling: SamplingParams) -> list[list[Completion]]:
        """Return a ``len(items) x k`` nested list of completions, in item order."""

    def sync_weights(self, model) -> None:  # noqa: B027 - optional hook
        """Push the trainer's current weights to the engine (no-op when the engine shares the model)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources."""
