"""Tiny offline models: build + reload for the three architectures, seeding, CLI, LoRA, processor fallback."""

import pytest
import torch
from safetensors.torch import load_file

from mmdps.models.loading import (
    ImageOnlyQwen2VLProcessor,
    apply_lora,
    get_tokenizer,
    is_vision_language,
    load_policy,
    load_processor,
    lora_target_modules,
    vision_token_ids,
)
from mmdps.models.tiny import build_tiny_model
from tiny_models import build

EXPECTED = {
    "qwen2": ("Qwen2ForCausalLM", False),
    "qwen2-vl": ("Qwen2VLForConditionalGeneration", True),
    "qwen2.5-vl": ("Qwen2_5_VLForConditionalGeneration", True),
}


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_tiny_model_reloads_offline_with_template_and_processor(arch):
    model, processor = load_policy(build(arch))
    cls_name, vl = EXPECTED[arch]
    assert type(model).__name__ == cls_name
    assert is_vision_language(model) is vl
    assert (getattr(processor, "image_processor", None) is not None) is vl
    tokenizer = get_tokenizer(processor)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "1 + 2 = ?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.config.get_text_config().vocab_size >= len(tokenizer)
    assert len(vision_token_ids(tokenizer)) == 5
    assert model.dtype == torch.float32  # dtype="auto" on the CPU


def test_same_seed_same_weights_and_different_seed_differs(tmp_path):
    paths = [build_tiny_model("qwen2", tmp_path / name, vocab="byte", seed=seed)
             for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    a, b, c = (load_file(p / "model.safetensors") for p in paths)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])


def test_cli_writes_a_loadable_model(tmp_path):
    from mmdps.cli import main

    assert main(["tiny-model", "--arch", "qwen2", "--out", str(tmp_path / "m"), "--vocab", "byte",
                 "--hidden-size", "32"]) == 0
    model, _ = load_policy(tmp_path / "m")
    assert model.config.hidden_size == 32


def test_unknown_arch_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="qwen2.5-vl"):
        build_tiny_model("llama", tmp_path)


def test_processor_falls_back_to_image_only_when_autoprocessor_fails(monkeypatch):
    import transformers

    def broken(*args, **kwargs):
        raise OSError("Can't load video processor")  # what happens without torchvision

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", broken)
    processor = load_processor(build("qwen2-vl"))
    assert isinstance(processor, ImageOnlyQwen2VLProcessor)
    assert processor.image_processor is not None and processor.chat_template


def test_lora_can_exclude_the_vision_tower():
    model, _ = load_policy(build("qwen2.5-vl"))
    with_vision = lora_target_modules(model, exclude_vision=False)
    language_only = lora_target_modules(model, exclude_vision=True)
    assert any(".visual." in n for n in with_vision)
    assert language_only and not any(".visual." in n for n in language_only)
    assert all("lm_head" not in n for n in with_vision)
    peft_model = apply_lora(model, r=4, alpha=8)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    with pytest.raises(ValueError, match="no linear modules"):
        lora_target_modules(model, ["not_a_layer"])


def test_auto_dtype_is_bfloat16_for_a_model_headed_for_the_gpu(monkeypatch):
    # The trainer loads with device=None and lets accelerate move the model: on a GPU machine "auto"
    # must still mean bfloat16 (it used to resolve against the CPU and trained float32 weights).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: True)
    model, _ = load_policy(build("qwen2"), dtype="auto")
    assert next(model.parameters()).dtype == torch.bfloat16 and next(model.parameters()).device.type == "cpu"
    model, _ = load_policy(build("qwen2"), dtype="auto", device="cpu")
    assert next(model.parameters()).dtype == torch.float32
