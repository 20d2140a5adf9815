"""One engine factory (mmdps.rollout.make_engine) with vLLM's own option names, used by the trainer,
`mmdps eval` and the demo; tested against the CPU stand-in for vLLM (tests/fake_vllm.py)."""

from pathlib import Path

import pytest

import mmdps.rollout.vllm as vllm_module
from fake_vllm import FakeLLM, FakeSamplingParams
from mmdps.cli import main as cli_main
from mmdps.models.loading import load_policy
from mmdps.rollout import engine_options, make_engine
from mmdps.rollout.hf import HFEngine
from mmdps.rollout.vllm import VLLMEngine
from tiny_models import build

FAKE = dict(llm_factory=FakeLLM, sampling_cls=FakeSamplingParams)
TINY_COUNTDOWN = str(Path(__file__).resolve().parents[1] / "configs" / "tiny" / "countdown_dps.yaml")


@pytest.fixture(scope="module")
def text_policy():
    return load_policy(build("qwen2"))


def test_vllm_options_keep_vllms_names_and_reach_the_llm():
    engine = make_engine("vllm", model_path=build("qwen2"), gpu_memory_utilization=0.42, tensor_parallel_size=1,
                         max_prompt_length=64, max_new_tokens=8, **FAKE)
    assert isinstance(engine, VLLMEngine)
    assert engine.llm.kwargs["gpu_memory_utilization"] == 0.42 and engine.llm.kwargs["tensor_parallel_size"] == 1
    assert engine.sync_count == 0  # no policy given: vLLM's own copy of the checkpoint is used as it is
    assert {"tensor_parallel_size", "gpu_memory_utilization"} <= set(engine_options("vllm"))


def test_with_a_policy_the_vllm_engine_syncs_at_once(text_policy):
    model, tokenizer = text_policy
    engine = make_engine("vllm", model, tokenizer, model_path=build("qwen2"), max_prompt_length=64,
                         max_new_tokens=8, **FAKE)
    assert engine.sync_count == 1


def test_unknown_options_name_the_option_and_the_valid_ones(text_policy):
    model, tokenizer = text_policy
    with pytest.raises(ValueError, match=r"engine 'vllm': unknown option\(s\) 'mem_util'.*gpu_memory_utilization"):
        make_engine("vllm", model_path=build("qwen2"), mem_util=0.5, **FAKE)
    with pytest.raises(ValueError, match=r"'max_prompt_lenght': did you mean 'max_prompt_length'"):
        make_engine("hf", model, tokenizer, max_prompt_lenght=64)
    with pytest.raises(ValueError, match=r"engine 'hf': unknown option\(s\) 'gpu_memory_utilization'"):
        make_engine("hf", model, tokenizer, gpu_memory_utilization=0.5)
    assert isinstance(make_engine("hf", model, tokenizer, max_prompt_length=64), HFEngine)


def test_the_trainer_passes_gpu_memory_utilization_from_engine_kwargs(tmp_path):
    """config.py tells users to put gpu_memory_utilization in engine_kwargs: the engine must take it."""
    from mmdps.config import GRPOConfig
    from mmdps.trainer import GRPOTrainer
    from tiny_models import text_item

    config = GRPOConfig(model_name_or_path=str(build("qwen2")), output_dir=str(tmp_path / "run"), engine="vllm",
                        engine_kwargs={"gpu_memory_utilization": 0.42, **FAKE}, batch_size=2, num_generations=2,
                        max_steps=1, max_new_tokens=4, progress_bar=False, save_steps=0)
    trainer = GRPOTrainer(config, items=[text_item(i, f"{i} + 1 = ?", ground_truth=str(i + 1)) for i in range(2)])
    assert trainer.engine.llm.kwargs["gpu_memory_utilization"] == 0.42
    assert trainer.engine.sync_count == 1


def test_eval_builds_its_vllm_engine_through_the_factory(monkeypatch):
    from mmdps.commands.eval import build_engine

    monkeypatch.setattr(vllm_module, "import_vllm", lambda: (FakeLLM, FakeSamplingParams))
    monkeypatch.setattr(vllm_module, "_set_single_process_env", lambda: None)
    engine = build_engine("vllm", build("qwen2"), gpu_memory_utilization=0.6, tensor_parallel_size=1,
                          max_new_tokens=8, max_prompt_length=64)
    assert engine.llm.kwargs["gpu_memory_utilization"] == 0.6 and engine.return_logprobs is False


def test_train_rejects_a_wrong_engine_option_before_loading_a_model(capsys):
    assert cli_main(["train", "--config", TINY_COUNTDOWN, "engine_kwargs.mem_util=0.5", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps train: error: engine 'hf': unknown option(s) 'mem_util'") and err.count("\n") == 1
