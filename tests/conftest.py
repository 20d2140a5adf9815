"""Test-wide settings: never touch the network, keep torch to the machine's cores, headless plots."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Test modules register toy verifiers beside code that imports torch, which a verifier worker process
# cannot load: run plug-ins in-process here (the isolation tests switch it back on).
os.environ.setdefault("MMDPS_VERIFIER_ISOLATION", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

def _find_shared_data() -> Path:
    if os.environ.get("MMDPS_SHARED_DATA"):
        return Path(os.environ["MMDPS_SHARED_DATA"])
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.exists():
            return candidate
    return REPO.parent / "shared" / "data"


SHARED_DATA = _find_shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark data shipped beside the repo (``../shared/data``); tests skip without it."""
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set MMDPS_SHARED_DATA)")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    try:
        import vllm  # noqa: F401

        has_vllm = True
    except Exception:  # noqa: BLE001
        has_vllm = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "vllm" in item.keywords and not (has_vllm and has_cuda):
            item.add_marker(pytest.mark.skip(reason="needs vLLM on a GPU"))


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state; a test that builds a TRL / HF Trainer (which may pick
    bf16) must not decide the mixed precision of the next test's Accelerator."""
    yield
    import sys

    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
