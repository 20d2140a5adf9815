"""The dependency rules of docs/architecture.md: each piece must stay usable on its own."""

import subprocess
import sys

import pytest

RULES = {
    # package: modules it must never pull in
    # the simulator included: its command line, table and plot live in mmdps.commands.simulate
    "mmdps.selection": ["torch", "transformers", "mmdps.trainer", "mmdps.rl", "matplotlib", "rich"],
    "mmdps.verifiers": ["torch", "transformers", "mmdps.trainer", "mmdps.models"],
    "mmdps.rl": ["transformers", "mmdps.trainer", "mmdps.selection"],
    "mmdps.tasks": ["mmdps.trainer", "mmdps.models", "mmdps.rollout", "transformers"],
    "mmdps.presets": ["torch", "transformers", "mmdps.trainer", "mmdps.models", "mmdps.rollout", "mmdps.eval"],
    "mmdps.rollout": ["mmdps.trainer", "mmdps.training", "mmdps.selection"],
    "mmdps.models": ["mmdps.trainer", "mmdps.training", "mmdps.selection"],
    "mmdps.training": ["mmdps.demos", "mmdps.commands", "mmdps.cli", "mmdps.integrations"],
    "mmdps.integrations": ["mmdps.trainer", "mmdps.training", "mmdps.demos"],
}


def _imported_after(module: str) -> set[str]:
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({module!r})\n"
        "for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_does_not_import_forbidden_modules(package):
    loaded = _imported_after(package)
    forbidden = [m for m in RULES[package] if m in loaded]
    assert not forbidden, f"{package} (and its modules) import {forbidden}; see docs/architecture.md"


def test_import_mmdps_is_light_and_exports_the_public_api():
    """``import mmdps`` pulls in nothing heavy; its public names resolve on first use."""
    code = ("import sys, mmdps\n"
            "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from mmdps import make_selector, GRPOTrainer, rollout_and_score, success_rate\n"
            "import mmdps.selection, mmdps.trainer, mmdps.rollout.scoring\n"
            "assert make_selector is mmdps.selection.make_selector and GRPOTrainer is mmdps.trainer.GRPOTrainer\n"
            "assert sorted(mmdps.__all__) == sorted(set(mmdps.__all__))\n"
            "for name in mmdps.__all__: getattr(mmdps, name)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


DOCUMENTED_IMPORTS = [
    "from mmdps.trainer import GRPOTrainer, RolloutBudget, TrainingDivergedError, TrainerCallback, Group",
    "from mmdps.config import GRPOConfig, load_config",
    "from mmdps.rl import group_advantages, policy_loss, aggregate_loss, entropy_loss, kl_penalty, grpo_objective",
    "from mmdps.selection import make_selector, SELECTORS, Selector",
    "from mmdps.rollout import make_engine, SamplingParams, Completion, RolloutEngine",
    "from mmdps.integrations.trl import DPSGRPOTrainer, SelectorSampler, success_rates_from_rewards",
    "from mmdps.integrations.verl import SelectorCurriculumSampler, SelectorSamplerLogic, batch_success_rates",
    "from mmdps.eval import evaluate_items",
    "from mmdps.verifiers import get, register, score_completion, Verdict, is_correct, success_rate",
    "from mmdps.verifiers.base import call_with_time_limit, never_raise, GroundTruthError, TimeLimitExceeded",
    "from mmdps.demo import DemoSettings",
    "from mmdps.demo_vl import VLDemoSettings",
]


@pytest.mark.parametrize("statement", DOCUMENTED_IMPORTS)
def test_documented_import_paths_keep_working(statement):
    """What the README and docs show users keeps importing (renamed names keep a deprecated alias)."""
    out = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", statement], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
