"""The GPU path (skipped without CUDA): bf16 GRPO steps for a text and a VL model whose trainer
log-probs match the sampler's, gradient checkpointing with and without LoRA, in-training evaluation,
a selector-in-the-loop resume, and a peak-memory bound for a large vocabulary.

Run on a GPU machine with ``python -m pytest -m gpu tests/test_gpu.py`` (or ``scripts/gpu_check.sh``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdps import verifiers
from mmdps.config import GRPOConfig
from mmdps.data.collate import build_policy_batch, build_prompt_batch
from mmdps.logging_utils import read_metrics
from mmdps.models.forward import completion_logprobs
from mmdps.models.loading import enable_gradient_checkpointing, load_policy
from mmdps.rollout.base import SamplingParams
from mmdps.rollout.hf import cut_completion
from mmdps.trainer import GRPOTrainer
from tiny_models import build, image_item, text_item

pytestmark = pytest.mark.gpu

# The sampler (KV cache, one token at a time) and the trainer (whole sequences) round differently in
# bf16. The tiny models' logits are small (std ~0.2), so the expected gap is ~2e-3 nats; on the CPU in
# bf16 it measured 1e-4 mean, 2e-3 max. A wrong position id or mask is far larger.
BF16_MEAN_ABS = 0.01
BF16_MAX_ABS = 0.1
DEVICE = "cuda"


@verifiers.register("gpu_parity")
def _parity(completion: str, ground_truth, **metadata) -> dict:
    """1 for an even number of characters: groups of a random model then have reward variance."""
    good = len(completion) % 2 == 0
    return {"score": float(good), "acc": float(good), "format": 1.0}


def items_for(arch: str, n: int) -> list:
    if arch == "qwen2":
        return [text_item(10 + i, f"Add {i} and {i + 1}.", verifier="gpu_parity") for i in range(n)]
    sizes = [(56, 56), (84, 112), (112, 84)]
    return [image_item(10 + i, f"What is drawn? {i}", size=sizes[i % 3], color=(40 * i % 255, 90, 200),
                       verifier="gpu_parity") for i in range(n)]


def make_config(tmp_path: Path, model: Path, **overrides) -> GRPOConfig:
    values = dict(model_name_or_path=str(model), output_dir=str(tmp_path / "run"), batch_size=2, num_generations=4,
                  max_new_tokens=12, max_steps=1, micro_batch_size=4, learning_rate=1e-3, progress_bar=False,
                  save_steps=0, save_final=False, log_completions_steps=0, seed=0, selector="dps", resume=None)
    values.update(overrides)
    return GRPOConfig(**values)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ["qwen2", "qwen2.5-vl"])
def test_bf16_step_and_trainer_logprobs_match_the_sampler(tmp_path, arch):
    trainer = GRPOTrainer(make_config(tmp_path, build(arch)), items=items_for(arch, 3))
    model = trainer.unwrapped_model
    assert trainer.accelerator.device.type == DEVICE and next(model.parameters()).device.type == DEVICE
    assert next(model.parameters()).dtype == torch.bfloat16  # dtype "auto" on a GPU

    # The sampler's own log-probs of what it sampled (suppression off, so both see the same distribution).
    engine, k = trainer.engine, 4
    prompts = engine.encoder.encode(trainer.items)
    batch = {name: t.to(DEVICE) for name, t in build_prompt_batch(prompts, pad_token_id=engine.pad_token_id).items()}
    if arch == "qwen2":
        batch.pop("mm_token_type_ids", None)
    else:
        batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    config = engine.generation_config(k, SamplingParams(max_new_tokens=12, temperature=1.0))
    config.suppress_tokens, config.output_scores, config.return_dict_in_generate = None, True, True
    model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        out = model.generate(**batch, generation_config=config)
        sampler = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True).float()
    new = out.sequences[:, batch["input_ids"].shape[1]:].tolist()
    completions = [cut_completion(row, set(engine.stop_ids), set())[0] for row in new]
    policy_batch = build_policy_batch([p for p in prompts for _ in range(k)], completions,
                                      pad_token_id=engine.pad_token_id)
    with torch.no_grad():  # the trainer's forward: the prepared (autocast) model
        logprobs, _ = completion_logprobs(trainer.model, policy_batch, temperature=1.0)
    mask = policy_batch.completion_mask.bool().to(DEVICE)
    diff = (logprobs[mask] - sampler[:, :policy_batch.completion_length][mask]).abs()
    assert diff.mean() < BF16_MEAN_ABS and diff.max() < BF16_MAX_ABS, (diff.mean(), diff.max())

    before = weights(model)
    trainer.train()
    [record] = read_metrics(tmp_path / "run")
    assert record["nan_updates"] == 0 and np.isfinite(record["loss"]) and np.isfinite(record["grad_norm"])
    assert record["grad_norm"] > 0 and record["rollouts"] == 2 * 4
    after = weights(trainer.unwrapped_model)
    assert any(not torch.equal(after[name], value) for name, value in before.items())
    assert all(v.dtype == before[name].dtype for name, v in after.items())


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, use_lora):
    from mmdps.models.loading import apply_lora

    arch_path = build("qwen2.5-vl")
    items = items_for("qwen2.5-vl", 2)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # same LoRA initialisation in both models
        model, processor = load_policy(arch_path, device=DEVICE)
        if use_lora:
            model = apply_lora(model, r=4, alpha=8)
            for name, param in model.named_parameters():  # LoRA B starts at 0: give it a gradient path
                if "lora_B" in name:
                    torch.nn.init.normal_(param, std=0.02)
        if checkpointing:
            enable_gradient_checkpointing(model)
        model.train()
        from mmdps.data.collate import PromptEncoder

        prompts = PromptEncoder(processor).encode(items)
        completions = [[5 + i, 17, 23 + i, 40] for i in range(len(prompts))]
        batch = build_policy_batch(prompts, completions, pad_token_id=processor.tokenizer.pad_token_id)
        logprobs, _ = completion_logprobs(model, batch)
        logprobs.sum().backward()
        grads.append({n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None})
    plain, recomputed = grads
    assert plain.keys() == recomputed.keys() and plain
    if use_lora:
        assert all("lora_" in name for name in plain)
    for name, grad in plain.items():
        scale = grad.norm().clamp(min=1e-6)
        assert (recomputed[name] - grad).norm() / scale < 2e-2, name

    # and the trainer takes a full step with it
    config = make_config(tmp_path, arch_path, gradient_checkpointing=True, use_lora=use_lora, lora_r=4, lora_alpha=8)
    trainer = GRPOTrainer(config, items=items_for("qwen2.5-vl", 3))
    trainer.train()
    [record] = read_metrics(tmp_path / "run")
    assert record["nan_updates"] == 0 and np.isfinite(record["grad_norm"])


def test_eval_path_on_the_gpu(tmp_path):
    config = make_config(tmp_path, build("qwen2.5-vl"), eval_steps=1, eval_num_samples=2, eval_max_new_tokens=6)
    trainer = GRPOTrainer(config, items=items_for("qwen2.5-vl", 3), eval_items=items_for("qwen2.5-vl", 2))
    trainer.train()
    [record] = read_metrics(tmp_path / "run")
    assert 0 <= record["eval/mean_at_n"] <= 1
    assert trainer.unwrapped_model.training  # evaluation restored the train mode


def test_resumed_step_repeats_the_uninterrupted_one(tmp_path):
    # Run A checkpoints at step 2 and goes on to step 3; run B resumes A's step-2 checkpoint and takes
    # step 3. Step 3 starts from the same weights, optimizer, selector and sampling seed, so B must
    # select the same prompts, sample the same completions and update the selector the same way.
    model = build("qwen2")
    items = items_for("qwen2", 6)
    settings = dict(batch_size=2, num_generations=2, max_steps=3, selector="dps")
    a = GRPOTrainer(make_config(tmp_path / "a", model, save_steps=2, **settings), items=items)
    a.train()
    checkpoint = tmp_path / "a" / "run" / "checkpoints" / "checkpoint-000002"
    b = GRPOTrainer(make_config(tmp_path / "b", model, resume=str(checkpoint), **settings), items=items)
    assert b.step == 2 and next(b.unwrapped_model.parameters()).device.type == DEVICE
    assert all(state["exp_avg"].device.type == DEVICE for state in b.optimizer.state_dict()["state"].values())
    b.train()
    [a3] = [r for r in read_metrics(tmp_path / "a" / "run") if r["step"] == 3]
    [b3] = read_metrics(tmp_path / "b" / "run")
    for key in ("tokens_generated", "reward_mean", "rollouts_total", "zero_variance_share"):
        assert a3[key] == b3[key], key
    for key, value in a.selector.state_dict().items():
        got = b.selector.state_dict()[key]
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(got, value, err_msg=key)
        else:
            assert got == value, key


def test_peak_memory_stays_within_the_micro_batch_bound(tmp_path):
    # A 151,936-token vocabulary (Qwen2's) on a small model: the logits dominate memory. The full
    # batch's float32 log-softmax would be N x T x V x 4 bytes; the trainer only ever holds one
    # micro-batch of logits (and chunks the log-softmax), so the peak stays near a few micro-batch
    # logits plus the model and optimizer state.
    import transformers as tf

    from mmdps.models.tiny import build_tokenizer

    tokenizer = build_tokenizer("bpe")
    vocab = 151936
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in ("<|endoftext|>", "<|im_end|>")}
    torch.manual_seed(0)
    model = tf.Qwen2ForCausalLM(tf.Qwen2Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True))
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = ids["<|im_end|>"], ids["<|endoftext|>"]
    folder = tmp_path / "big-vocab"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    del model

    prompts, k, new_tokens, micro = 16, 8, 64, 8
    config = make_config(tmp_path, folder, batch_size=prompts, num_generations=k, max_new_tokens=new_tokens,
                         micro_batch_size=micro, entropy_coeff=0.0, selector="uniform")
    trainer = GRPOTrainer(config, items=items_for("qwen2", prompts))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    [record] = read_metrics(tmp_path / "run")
    width = new_tokens + 1
    micro_logits = micro * width * vocab * 2  # bf16
    state = params * (2 + 2 + 2 * 2)  # bf16 weights, gradients and the two AdamW moments
    bound = 8 * micro_logits + 2 * state
    full_batch_fp32 = prompts * k * width * vocab * 4
    assert record["completion_length_mean"] > new_tokens / 2  # the logits really were long
    assert peak < bound < full_batch_fp32, (f"peak {peak / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB, "
                                            f"full-batch fp32 log-softmax {full_batch_fp32 / 2**20:.0f} MiB")
