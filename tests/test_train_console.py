"""What a training run shows and leaves behind: the resolved config at start, a compact metrics line every
``logging_steps``, and ``<output_dir>/config.yaml``, which repeats the run through ``mmdps train --config``."""

from pathlib import Path

import pytest
import yaml

from mmdps.cli import main
from mmdps.config import GRPOConfig, load_config
from mmdps.logging_utils import config_yaml, metrics_line, read_metrics

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_metrics_line_is_compact_and_skips_missing_or_non_finite_values():
    line = metrics_line(3, 10, {"reward_mean": 0.41, "acc_mean": 0.375, "effective_ratio": 0.625, "lr": 1e-4,
                                "grad_norm": float("nan"), "rollouts_total": 2048, "time/step": 1.234,
                                "selector/prediction_accuracy": None, "nan_updates": 0.0})
    assert line == ("step 3/10 | reward 0.410 | acc 0.375 | effective 62% | lr 1.00e-04 | rollouts 2,048 | "
                    "s/step 1.23")


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
