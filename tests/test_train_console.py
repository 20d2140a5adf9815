"""What a training run shows and leaves behind: the resolved config at start, a compact metrics line every
``logging_steps``, and ``<output_dir>/config.yaml``, which repeats the run through ``mmdps train --config``."""

from pathlib import Path

import pytest
import yaml

from mmdps.cli import main
from mmdps.config import GRPOConfig, load_config
from mmdps.logging_utils import config_yaml, eval_line, metrics_line, read_metrics

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_metrics_line_is_compact_and_skips_missing_or_non_finite_values():
    line = metrics_line(3, 10, {"reward_mean": 0.41, "acc_mean": 0.375, "effective_ratio": 0.625, "lr": 1e-4,
                                "grad_norm": float("nan"), "rollouts_total": 2048, "time/step": 1.234,
                                "selector/prediction_accuracy": None, "nan_updates": 0.0})
    assert line == ("step 3/10 | reward 0.410 | acc 0.375 | effective 62% | lr 1.00e-04 | rollouts 2,048 | "
                    "s/step 1.23")


def test_metrics_line_names_both_kls_and_shows_verifier_problems_only_when_there_are_some():
    line = metrics_line(1, 2, {"kl": 0.02, "approx_kl": 1e-3, "reward/verifier_errors": 0,
                               "reward/verifier_timeouts": 3})
    assert line == "step 1/2 | kl_ref 2.00e-02 | kl_old 1.00e-03 | verifier_timeouts 3"


def test_eval_line_prints_the_in_training_evaluation():
    assert eval_line(5, {"reward_mean": 0.1}) is None
    line = eval_line(5, {"eval/mean_at_n": 0.25, "eval/mean_at_n_stderr": 0.05, "eval/pass@4": 0.5,
                         "eval/pass@1": 0.25, "eval/format_error_rate": 0.1, "eval/seconds": 2.0})
    assert line == ("eval at step 5: mean@n 0.250 ± 0.050 | pass@1 0.250 | pass@4 0.500 | format errors 10.0% | "
                    "s 2.0")


@pytest.mark.parametrize("path", sorted((CONFIGS / "tiny").glob("*.yaml")) + sorted(CONFIGS.glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_written_config_reads_back_as_the_same_config(path, tmp_path):
    config = load_config(path)
    written = tmp_path / "config.yaml"
    written.write_text(config_yaml(config.to_dict()))
    assert load_config(written) == config
    assert GRPOConfig.from_dict(yaml.safe_load(written.read_text())) == config


@pytest.mark.slow
def test_a_run_prints_its_config_and_metrics_and_its_config_yaml_repeats_it(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--config", str(CONFIGS / "tiny" / "countdown_dps.yaml"), "max_steps=3", "save_steps=0",
                 "save_final=false", "log_completions_steps=0", "logging_steps=2", f"output_dir={first}"]) == 0
    out = capsys.readouterr().out
    assert f"resolved config (also in {first / 'config.yaml'}):" in out and "selector: dps" in out
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in lines] == ["step 2/3", "step 3/3"]  # every 2 steps, and the last
    assert all(" | reward " in line and " | s/step " in line for line in lines)

    assert main(["train", "--config", str(first / "config.yaml"), f"output_dir={second}"]) == 0

    def trained(run):
        return [{k: v for k, v in record.items() if not k.startswith("time/")} for record in read_metrics(run)]

    assert trained(second) == trained(first) and len(trained(first)) == 2
    assert load_config(second / "config.yaml") == load_config(first / "config.yaml", [f"output_dir={second}"])


@pytest.mark.slow
def test_log_lines_print_without_the_progress_bar_and_eval_results_print(tmp_path, capsys):
    out_dir = tmp_path / "quiet"
    assert main(["train", "--config", str(CONFIGS / "tiny" / "countdown_dps.yaml"), "max_steps=2", "save_steps=0",
                 "save_final=false", "log_completions_steps=0", "progress_bar=false", "eval_steps=2",
                 "eval_options={num: 4}", "eval_num_samples=2", f"output_dir={out_dir}"]) == 0
    out = capsys.readouterr().out
    assert "resolved config" in out
    assert [line.split(" | ")[0] for line in out.splitlines() if line.startswith("step ")] == ["step 1/2", "step 2/2"]
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("eval at")] == ["eval at step 2"]


@pytest.mark.slow
def test_console_log_false_leaves_only_the_files(tmp_path, capsys):
    out_dir = tmp_path / "silent"
    assert main(["train", "--config", str(CONFIGS / "tiny" / "countdown_dps.yaml"), "max_steps=1", "save_steps=0",
                 "save_final=false", "log_completions_steps=0", "progress_bar=false", "console_log=false",
                 f"output_dir={out_dir}"]) == 0
    out = capsys.readouterr().out
    assert "resolved config" not in out and not [line for line in out.splitlines() if line.startswith("step ")]
    assert [r["step"] for r in read_metrics(out_dir)] == [1]
