"""The scripts/ folder: the benchmark scripts' defaults and the evaluation shell scripts' arguments."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_bench_selectors_all_covers_every_registered_selector(tmp_path):
    from mmdps.selection import SELECTORS

    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_selectors.py"), "--selectors", "all",
                           "--sizes", "1000", "--phases", "start", "--steps", "1", "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    timed = [row["selector"] for row in json.loads(out.read_text())["results"]]
    assert "greso" in timed
    assert sorted({SELECTORS[name] for name in timed}, key=str) == sorted(set(SELECTORS.values()), key=str)
    assert len(timed) == len(set(SELECTORS.values()))  # an alias (dapo = ds) is timed once


def test_bench_verifiers_writes_into_outputs_by_default():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_verifiers.py"), "--help"],
                          capture_output=True, text=True, check=True)
    assert "default outputs/bench_verifiers.json" in " ".join(proc.stdout.split())


@pytest.mark.parametrize("script, report_root", [("eval_geometry.sh", "runs/eval/geometry3k"),
                                                 ("eval_math.sh", "runs/eval/math")])
def test_eval_scripts_name_a_checkpoint_report_after_its_run_and_step(tmp_path, script, report_root):
    # a stand-in `mmdps` that records its arguments, so the script runs without a model
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    fake = bin_dir / "mmdps"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "aime.json").write_text("[]")
    model = "outputs/geometry_dps/checkpoints/checkpoint-000120/model"
    data = str(tests) if script == "eval_math.sh" else "data/geometry3k"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(REPO / "scripts" / script), model, data], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    first_call = log.read_text().splitlines()[0]
    assert f"--model {model} " in first_call
    assert f"--output {report_root}/geometry_dps-checkpoint-000120" in first_call


@pytest.mark.parametrize("script, args", [("train.sh", ["countdown", "ds"]), ("train_countdown.sh", ["ds"])])
def test_train_scripts_run_from_the_callers_directory_and_find_their_configs_in_the_checkout(tmp_path, script, args):
    # a stand-in `accelerate` that records where it runs and its arguments
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    fake = bin_dir / "accelerate"
    fake.write_text(f'#!/usr/bin/env bash\npwd > {log}\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", NUM_PROCESSES="2")
    proc = subprocess.run(["bash", str(REPO / "scripts" / script), *args, "output_dir=outputs/try",
                           "train_source=data/countdown/train.jsonl"], cwd=work, env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    cwd, call = log.read_text().splitlines()
    assert Path(cwd) == work  # relative output_dir / data resolve where the user called the script
    assert call == (f"launch --config_file {REPO}/configs/accelerate/ddp.yaml --num_processes 2 -m mmdps train "
                    f"--config {REPO}/configs/countdown_ds.yaml output_dir=outputs/try "
                    "train_source=data/countdown/train.jsonl")


def test_train_script_reads_a_relative_accelerate_config_from_the_callers_directory(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    (bin_dir / "accelerate").write_text(f'#!/usr/bin/env bash\necho "$*" > {log}\n')
    (bin_dir / "accelerate").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", NUM_PROCESSES="1",
               ACCELERATE_CONFIG="my/fsdp.yaml")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "train.sh"), "math"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().startswith(f"launch --config_file my/fsdp.yaml --num_processes 1 -m mmdps train "
                                      f"--config {REPO}/configs/math_dps.yaml")


SCRIPTS = sorted(path.name for path in (REPO / "scripts").glob("*.py"))
# Sibling modules the scripts import that are not scripts themselves (no command line of their own).
SCRIPT_LIBRARIES = {"selection_e2e_runs.py"}
# Runs in a fresh interpreter with every DeprecationWarning an error: imports each mmdps module a script
# names (in function bodies too, where the benchmarks import lazily), looks up each name it takes from it
# and each attribute it reads from such a module bound to a name (``bench.TASKS``, ``update.drop_...``).
_IMPORT_CHECK = r"""
import ast, importlib, sys, types, warnings
from pathlib import Path
warnings.simplefilter("error", DeprecationWarning)
script = Path(sys.argv[1])
sys.path.insert(0, str(script.parent))
siblings = {p.stem for p in script.parent.glob("*.py")}
tree = ast.parse(script.read_text())
aliases = {}  # a name bound to a checked module -> the module
for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in {"mmdps", *siblings}:
        module = importlib.import_module(node.module)
        for alias in node.names:
            value = getattr(module, alias.name, None)
            if value is None:
                value = importlib.import_module(f"{node.module}.{alias.name}")  # a submodule, or ImportError
            if isinstance(value, types.ModuleType):
                aliases[alias.asname or alias.name] = value
    elif isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] in {"mmdps", *siblings}:
                module = importlib.import_module(alias.name)
                if alias.asname or "." not in alias.name:
                    aliases[alias.asname or alias.name] = module
for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
        if not hasattr(aliases[node.value.id], node.attr):
            raise AttributeError(f"{script.name}: {node.value.id}.{node.attr} does not exist")
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_imports_without_deprecation_and_answers_help(script):
    path = REPO / "scripts" / script
    env = dict(os.environ, PYTHONWARNINGS="error::DeprecationWarning")
    checked = subprocess.run([sys.executable, "-c", _IMPORT_CHECK, str(path)], capture_output=True, text=True,
                             env=env, check=False)
    assert checked.returncode == 0, checked.stderr
    if script in SCRIPT_LIBRARIES:
        return
    helped = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, env=env,
                            check=False)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage:"), helped.stdout
    assert "Warning" not in helped.stderr, helped.stderr


@pytest.mark.slow  # the benchmark's tiny data, a 1-step SFT warm start and four 1-step runs: ~15 s
def test_bench_loss_normaliser_runs_every_case_on_the_benchmarks_pool(tmp_path, monkeypatch):
    import importlib.util

    from mmdps.demos import RECIPES, warm_start

    spec = importlib.util.spec_from_file_location("bench_selection_e2e", REPO / "scripts" / "bench_selection_e2e.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up when defined
    spec.loader.exec_module(bench)
    data = bench.TASKS["countdown"].build_data(bench.parse_args(["--tiny"]))
    recipe = RECIPES["countdown"]
    warm_start(recipe, recipe.settings(sft_steps=1, threads=1, progress=False), data["sft"], tmp_path / "warm",
               log=lambda line: None)
    env = dict(os.environ, PYTHONWARNINGS="error::DeprecationWarning")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_loss_normaliser.py"), "--warm-start",
                           str(tmp_path / "warm"), "--tiny", "--steps", "1", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "normaliser.json").read_text())
    assert list(results) == ["uniform", "dps", "ds", "uniform, normaliser = informative tokens"]
    for row in results.values():
        assert row["steps"] >= 1 and len(row["update_norm_per_step"]) == row["steps"]
        assert row["skipped_updates"] <= row["steps"]


def test_bench_loss_normaliser_refuses_a_warm_start_without_a_model(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_loss_normaliser.py"), "--warm-start",
                           str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "holds no model (config.json)" in proc.stderr
    assert "bench_selection_e2e.py" in proc.stderr
