"""Obvious mistakes on the command line end with exit code 2 and a one-line message, not a traceback,
and before any model is loaded."""

from pathlib import Path

import pytest

from mmdps.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_GEOMETRY = str(REPO / "configs" / "tiny" / "geometry_dps.yaml")


@pytest.mark.parametrize("override, expected", [
    ("task=geometri", "unknown task pack 'geometri'; known packs: countdown, geometry, math"),
    ("selector=dpss", "unknown selector 'dpss'"),
    ("selector_kwargs.decayy=0.3", "unexpected keyword argument 'decayy' (did you mean 'decay'?)"),
    ("selector=uniform candidate_ratio=4", "selector 'uniform' does not rank candidates, so candidate_ratio does "
                                           "not apply; leave it unset"),
    ("selector_kwargs.decay=fast", "selector 'dps': option decay must be a number, got 'fast'"),
    ("engine_kwargs.gpu_memory_utilisation=0.5", "engine 'hf': unknown option(s) 'gpu_memory_utilisation'"),
])
def test_train_rejects_bad_names_before_loading_anything(tmp_path, capsys, override, expected):
    out = tmp_path / "run"
    assert main(["train", "--config", TINY_GEOMETRY, *override.split(), f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps train: error: ") and err.count("\n") == 1
    assert expected in err and "Traceback" not in err
    assert not out.exists()  # failed at the config check, before the trainer made its folder


def test_train_names_the_config_keys_when_a_pack_option_does_not_fit_the_source(tmp_path, capsys, shared_data):
    # the tiny geometry config generates diagrams with task_options {num: 32}; a folder source takes no `num`
    code = main(["train", "--config", TINY_GEOMETRY, f"train_source={shared_data / 'geometry3k_sample'}",
                 f"output_dir={tmp_path / 'run'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps train: error: task pack 'geometry' (Geometry3K folder ")
    assert "unknown load option 'num'; valid options: show_choices" in err and "task_options" in err


def test_eval_reports_a_missing_model_folder(tmp_path, capsys):
    code = main(["eval", "--model", str(tmp_path / "no-such-model"), "--task", "countdown", "--num", "2",
                 "--output", str(tmp_path / "eval"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps eval: error: ") and err.count("\n") == 1
    assert "no-such-model" in err and "neither a local folder" in err


def test_eval_reports_an_option_the_pack_does_not_take(tmp_path, capsys):
    code = main(["eval", "--model", str(tmp_path / "unused"), "--task", "geometry", "--num", "2",
                 "--option", "bogus=1", "--output", str(tmp_path / "eval")])
    assert code == 2
    assert capsys.readouterr().err.startswith(
        "mmdps eval: error: task pack 'geometry' (generator, source=None): unknown load option 'bogus'; valid options:")


def test_simulate_rejects_an_unknown_selector_and_a_batch_larger_than_the_pool(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--selectors", "dps", "bogus", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    assert main(["simulate", "--num-prompts", "10", "--batch-size", "20", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps simulate: error: ") and "must not exceed num_prompts" in err


def test_load_policy_names_a_missing_folder(tmp_path):
    from mmdps.models.loading import load_policy

    with pytest.raises(FileNotFoundError, match="neither a local folder"):
        load_policy(tmp_path / "missing")


def test_load_policy_points_from_a_checkpoint_to_its_model_folder(tmp_path):
    from mmdps.models.loading import load_policy

    checkpoint = tmp_path / "checkpoints" / "checkpoint-000002"
    (checkpoint / "model").mkdir(parents=True)
    (checkpoint / "model" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="pass its model folder .*checkpoint-000002/model"):
        load_policy(checkpoint)


@pytest.mark.parametrize("command", ["eval", "tasks"])
def test_bad_row_advice_names_the_command_line_flag(tmp_path, capsys, command):
    rows = tmp_path / "math.jsonl"
    rows.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": ""}\n')
    if command == "eval":
        argv = ["eval", "--model", str(tmp_path / "unused"), "--task", "math", "--data", str(rows),
                "--output", str(tmp_path / "eval")]
    else:
        argv = ["tasks", "show", "math", "--source", str(rows)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "--skip-invalid" in err and "skip_invalid=True" not in err
