"""The pieces of :class:`mmdps.trainer.GRPOTrainer`, one concern per module:

- :mod:`~mmdps.training.builders`: what a run is built from (processor, items, selector, policy, optimizer,
  engine) and the checks on them;
- :mod:`~mmdps.training.rollout`: the rollout phase (select, generate and verify, selector update, refills);
- :mod:`~mmdps.training.update`: advantages and the optimizer updates (micro-batches, guarded step);
- :mod:`~mmdps.training.metrics`: step metrics and sample logs.
"""
