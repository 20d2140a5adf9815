"""mmdps: active RL finetuning (GRPO) of text and vision-language reasoning models.

The pieces are usable on their own:

* ``mmdps.selection`` prompt selectors (DPS and baselines); numpy only.
* ``mmdps.rl`` the GRPO/DAPO math as pure torch functions.
* ``mmdps.tasks`` task packs (math, countdown, geometry) and ``mmdps.verifiers`` rule-based rewards.
* ``mmdps.rollout`` generation engines (HF ``generate``, vLLM) behind one interface.
* ``mmdps.trainer`` the accelerate-based GRPO trainer; ``mmdps.cli`` the ``mmdps`` command.
"""

__version__ = "0.1.0"
