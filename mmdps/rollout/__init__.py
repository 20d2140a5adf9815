"""Rollout engines behind one interface: HF ``generate`` everywhere, vLLM where installed."""

from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams

__all__ = ["Completion", "RolloutEngine", "SamplingParams"]
