"""GRPOConfig: YAML with base includes, key=value overrides, type coercion, clear errors; shipped configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mmdps import cli
from mmdps.config import GRPOConfig, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_every_field_is_documented_beside_its_declaration():
    missing = [f.name for f in dataclasses.fields(GRPOConfig) if len(f.metadata.get("help", "").strip()) < 10]
    assert not missing, f"fields without a help text (field(..., metadata={{'help': ...}})): {missing}"


def test_train_help_lists_every_key_with_its_default_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(GRPOConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert f"  {f.name} (" in text and f"default {default!r})" in text, f.name
        assert " ".join(f.metadata["help"].split()[:4]) in " ".join(text.split()), f.name
    assert "one of: token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm" in " ".join(
        text.split())
    assert "0 = greedy, otherwise at least 0.01 (smaller values overflow the scaled logits; vLLM clamps them to the " \
           "same floor); allowed: 0 or >= 0.01" in " ".join(text.split())


def test_choice_fields_accept_exactly_what_the_code_implements():
    from mmdps.config import field_choices
    from mmdps.rl import KL_KINDS, LOSS_AGG_MODES
    from mmdps.rollout import ENGINES

    choices = field_choices()
    assert choices["loss_agg_mode"] == LOSS_AGG_MODES and choices["kl_estimator"] == KL_KINDS
    assert choices["engine"] == ENGINES
    for name, values in choices.items():
        for value in values:
            assert getattr(GRPOConfig(model_name_or_path="m", **{name: value}), name) == value
        with pytest.raises(ValueError, match=f"{name} must be one of {', '.join(values)}, got 'bogus'"):
            GRPOConfig(model_name_or_path="m", **{name: "bogus"})


def test_yaml_base_include_merges_dicts_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "model_name_or_path: tiny:qwen2\nselector_kwargs: {decay: 0.7, strategy: topk}\n"
                                  "max_steps: 100\nlearning_rate: 1.0e-6\n")
    config_file = write(tmp_path / "run.yaml", "base: base.yaml\nselector_kwargs: {decay: 0.5}\nbatch_size: 16\n")
    config = load_config(config_file, ["max_steps=7", "output_dir=/tmp/x", "selector_kwargs.prior_pi=uniform",
                                       "learning_rate=3e-6", "bf16=false", "resume=none", "report_to=tensorboard",
                                       "mini_batch_size=null", "clip_c=null"])
    assert config.selector_kwargs == {"decay": 0.5, "strategy": "topk", "prior_pi": "uniform"}
    assert (config.batch_size, config.max_steps, config.output_dir) == (16, 7, "/tmp/x")
    assert config.learning_rate == pytest.approx(3e-6) and isinstance(config.learning_rate, float)
    assert config.bf16 is False and config.resume is None and config.report_to == ["tensorboard"]
    assert config.mini_batch_size is None and config.clip_c is None


def test_yaml_numbers_written_as_text_are_coerced(tmp_path):
    # YAML 1.1 reads "1e-6" (no dot) as a string; the config still gets a float.
    config = load_config(write(tmp_path / "c.yaml", "model_name_or_path: m\nlearning_rate: 1e-6\nmax_steps: '3'\n"))
    assert config.learning_rate == pytest.approx(1e-6) and config.max_steps == 3


def test_unknown_key_in_yaml_lists_valid_keys_and_suggestion(tmp_path):
    bad = write(tmp_path / "bad.yaml", "model_name_or_path: m\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError) as info:
        load_config(bad)
    message = str(info.value)
    assert "learning_rat" in message and "did you mean learning_rate" in message
    assert "Valid keys:" in message and "max_steps" in message and str(bad) in message


def test_unknown_override_key_and_bad_value():
    with pytest.raises(ValueError, match=r"'max_step'.*did you mean max_steps"):
        load_config(None, ["model_name_or_path=m", "max_step=3"])
    with pytest.raises(ValueError, match="max_steps: cannot use 'ten'"):
        load_config(None, ["model_name_or_path=m", "max_steps=ten"])
    with pytest.raises(ValueError, match="not of the form key=value"):
        load_config(None, ["model_name_or_path=m", "max_steps"])
    with pytest.raises(ValueError, match="batch_size is not a dictionary field"):
        load_config(None, ["model_name_or_path=m", "batch_size.x=1"])


@pytest.mark.parametrize("override, match", [
    ("num_generations=1", "num_generations must be an integer >= 2: group advantages"),
    ("loss_agg_mode=sum", "loss_agg_mode must be one of"),
    ("mini_batch_size=999", "mini_batch_size must be in"),
    ("overlong_buffer_len=2000", "overlong_buffer_len"),
    ("report_to=[mlflow]", "report_to entries"),
])
def test_inconsistent_values_are_rejected(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, ["model_name_or_path=m", "max_new_tokens=1024", override])


def test_model_is_required():
    with pytest.raises(ValueError, match="model_name_or_path is required"):
        GRPOConfig()


def test_include_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ValueError, match="include cycle"):
        load_config(tmp_path / "a.yaml")


def test_shipped_configs_load_and_mirror_the_paper():
    names = [f"{domain}_{selector}.yaml" for domain in ("math", "countdown", "geometry")
             for selector in ("uniform", "ds", "mopps", "dps")]
    configs = {name: load_config(CONFIGS / name) for name in names}
    assert configs["math_dps.yaml"].model_name_or_path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert configs["math_dps.yaml"].selector_kwargs["decay"] == 0.7
    assert configs["countdown_dps.yaml"].selector_kwargs["decay"] == 0.5
    assert configs["math_ds.yaml"].selector_kwargs["max_rounds"] == 4
    assert configs["geometry_ds.yaml"].selector_kwargs["max_rounds"] == 10
    assert configs["geometry_uniform.yaml"].batch_size == 512 and configs["geometry_uniform.yaml"].beta == 0.01
    assert configs["countdown_mopps.yaml"].selector == "mopps"
    for config in configs.values():
        assert (config.num_generations, config.clip_low, config.clip_high) == (8, 0.2, 0.28)
        assert config.learning_rate == pytest.approx(1e-6)
    for path in sorted((CONFIGS / "tiny").glob("*.yaml")):
        tiny = load_config(path)
        assert tiny.model_name_or_path.startswith("tiny:") and tiny.max_steps <= 10


def test_cli_print_config_and_bad_key(tmp_path, capsys):
    config_file = CONFIGS / "tiny" / "countdown_dps.yaml"
    assert cli.main(["train", "--config", str(config_file), "--print-config", "max_steps=2",
                     f"output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert '"max_steps": 2' in out and str(tmp_path) in out
    assert cli.main(["train", "--config", str(config_file), "max_stepz=2"]) == 2
    assert "did you mean max_steps" in capsys.readouterr().err


def test_clip_low_of_one_or_more_is_refused_at_config_time():
    with pytest.raises(ValueError, match=r"clip_low must be in \[0, 1\)"):
        GRPOConfig(model_name_or_path="tiny:qwen2", clip_low=1.0)


@pytest.mark.parametrize("overrides, match", [
    (["selector=uniform", "candidate_ratio=4"], "selector 'uniform' does not rank candidates"),
    (["selector=dps", "candidate_ratio=4", "selector_kwargs.candidate_ratio=2"], "candidate_ratio is set twice"),
    (["selector=dps", "candidate_ratio=0.5"], "candidate_ratio must be None"),
    (["selector=dpss"], "unknown selector 'dpss'"),
    (["selector_kwargs.decay=high"], "option decay must be a number, got 'high'"),
    (["selector_kwargs.decay=1.5"], r"decay \(lambda\) must be in \(0, 1\]"),
    (["selector_kwargs.seed=3"], "seed given twice"),
    (["engine_kwargs.gpu_memory_utilisation=0.5"], "engine 'hf': unknown option"),
])
def test_selector_and_engine_options_are_checked_when_the_config_loads(overrides, match):
    """Before any model loads: these used to pass load_config and fail in the trainer (or in a CLI-only check)."""
    with pytest.raises(ValueError, match=match):
        load_config(None, ["model_name_or_path=m", *overrides])


def test_mopps_configs_set_their_candidate_ratio_explicitly():
    # None ranks the whole pool for every selector: the shipped MoPPS configs keep the official ts_ratio
    ratios = {domain: load_config(CONFIGS / f"{domain}_mopps.yaml").selector_kwargs.get("candidate_ratio")
              for domain in ("math", "countdown", "geometry")}
    assert ratios == {"math": 16, "countdown": 8, "geometry": 8}
