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
