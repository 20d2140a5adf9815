"""Evaluation: ``mmdps eval`` (:mod:`mmdps.commands.eval`) and the functions the trainer calls to
evaluate during training.

Every problem gets ``n`` sampled completions, each scored by the item's verifier. The report gives

* ``mean_at_n``: the mean accuracy over all ``n`` samples of all problems (the paper's "Pass@1, mean
  of 16 samples"), with its standard error across problems;
* ``pass_at_k``: the unbiased pass@k estimator of Chen et al. (2021) for each ``k <= n``;
* accuracy by problem type (``by_type``) and difficulty (``by_difficulty``) when items carry them,
  the format-error rate, tokens generated, the truncation rate and timings.

Library use (the trainer's eval-every-N-steps)::

    result = evaluate_items(engine, items, n=16, sampling=SamplingParams(max_new_tokens=1024, temperature=0.6))
    logger.log(flat_metrics(result.report, prefix="eval"), step=step)
    write_report(result, "runs/x/eval/step_100")

Modules: :mod:`~mmdps.eval.metrics` (pass@k, grouping), :mod:`~mmdps.eval.runner` (sampling and
scoring), :mod:`~mmdps.eval.report` (writing and reading reports), :mod:`~mmdps.eval.compare`.
"""

from mmdps.eval.compare import COMPARISON_PLOT_FILE, COMPARISON_TABLE_FILE, Comparison, compare_reports
from mmdps.eval.metrics import default_ks, pass_at_k, pass_at_k_per_problem, problem_difficulty, problem_types
from mmdps.eval.report import (
    REPORT_FILE,
    REQUIRED_REPORT_FIELDS,
    SAMPLES_FILE,
    SUMMARY_FILE,
    flat_metrics,
    load_report,
    summary_markdown,
    write_report,
)
from mmdps.eval.runner import EvalResult, evaluate_items, load_benchmark_items, load_eval_items

__all__ = [
    "COMPARISON_PLOT_FILE", "COMPARISON_TABLE_FILE", "REPORT_FILE", "REQUIRED_REPORT_FIELDS", "SAMPLES_FILE",
    "SUMMARY_FILE", "Comparison", "EvalResult", "compare_reports", "default_ks", "evaluate_items", "flat_metrics",
    "load_benchmark_items", "load_eval_items", "load_report", "pass_at_k", "pass_at_k_per_problem",
    "problem_difficulty", "problem_types",    "summary_markdown", "write_report",
]
