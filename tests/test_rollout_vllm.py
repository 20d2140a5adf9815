"""The vLLM engine against the CPU stand-in (tests/fake_vllm.py); vLLM itself is never needed."""

import sys
import types

import pytest
import torch

from fake_vllm import FakeLLM, FakeSamplingParams
from mmdps.models.loading import apply_lora, load_policy, vision_token_ids
from mmdps.rollout import make_engine
from mmdps.rollout.base import SamplingParams
from mmdps.rollout.vllm import VLLMEngine, VLLMUnavailableError, clean_parameter_name, import_vllm
from tiny_models import build, image_item, text_item

FAKE = dict(llm_factory=FakeLLM, sampling_cls=FakeSamplingParams)
PARAMS = SamplingParams(max_new_tokens=12, temperature=1.0, seed=5)


@pytest.fixture(scope="module")
def vl_policy():
    return load_policy(build("qwen2.5-vl"))


@pytest.fixture(scope="module")
def text_policy():
    return load_policy(build("qwen2"))


def engine_for(path, processor, **kwargs):
    return VLLMEngine(path, processor, max_prompt_length=256, max_new_tokens=64, **FAKE, **kwargs)


def test_sampling_params_ban_vision_tokens_and_set_n_and_max_tokens(vl_policy):
    model, processor = vl_policy
    engine = engine_for(build("qwen2.5-vl"), processor)
    params = engine.sampling_params(4, SamplingParams(max_new_tokens=33, temperature=0.8, top_p=0.9, seed=1))
    assert params.n == 4 and params.max_tokens == 33 and params.temperature == 0.8 and params.top_p == 0.9
    assert params.logprobs == 0 and params.seed == 1 and params.top_k == 0
    banned = vision_token_ids(processor.tokenizer)
    assert len(banned) == 5 and params.logit_bias == {t: -100.0 for t in banned}
    kwargs = engine.llm.kwargs
    assert kwargs["distributed_executor_backend"] == "external_launcher" and kwargs["max_model_len"] == 320
    assert kwargs["limit_mm_per_prompt"] == {"image": 1}
    assert kwargs["mm_processor_kwargs"] == {"min_pixels": 56 * 56, "max_pixels": 112 * 112}


def test_b_by_k_output_truncation_and_no_vision_ids(vl_policy):
    _, processor = vl_policy
    engine = engine_for(build("qwen2.5-vl"), processor)
    items = [image_item(0, "area?"), text_item(1, "text only"), image_item(2, "angle?", size=(112, 56))]
    groups = engine.generate(items, 8, PARAMS)
    assert len(groups) == 3 and all(len(g) == 8 for g in groups)
    completions = [c for g in groups for c in g]
    banned = set(vision_token_ids(processor.tokenizer))
    assert not any(t in banned for c in completions for t in c.token_ids)
    eos = processor.tokenizer.eos_token_id
    assert {c.finish_reason for c in completions} == {"stop", "length"}
    for c in completions:
        assert c.truncated == (c.finish_reason == "length")
        assert (c.token_ids[-1] == eos) == (c.finish_reason == "stop")
        assert len(c.logprobs) == len(c.token_ids)
    again = engine.generate(items, 8, PARAMS)
    assert [c.token_ids for g in again for c in g] == [c.token_ids for c in completions]  # seeded


def test_vl_requests_hold_one_pad_per_image_and_text_items_no_mm_data(vl_policy):
    _, processor = vl_policy
    engine = engine_for(build("qwen2.5-vl"), processor)
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    image_req, text_req = engine.requests([image_item(0, "q", size=(112, 112)), text_item(1, "q")], 8)
    assert image_req["prompt_token_ids"].count(image_pad) == 1
    assert len(image_req["multi_modal_data"]["image"]) == 1
    assert image_req["multi_modal_data"]["image"][0].size == (112, 112)  # already resized by the shared rule
    assert "multi_modal_data" not in text_req


def test_over_long_prompts_are_rejected_before_the_engine(text_policy):
    _, tokenizer = text_policy
    engine = VLLMEngine(build("qwen2"), tokenizer, max_prompt_length=256, max_new_tokens=8, **FAKE)
    with pytest.raises(ValueError, match=r"item 3: .*max_model_len=264 \(the engine's max_prompt_length \+ "
                                         r"max_new_tokens=8\); raise max_prompt_length or max_new_tokens, or lower "
                                         r"max_pixels$"):
        engine.generate([text_item(3, "word " * 60)], 2, SamplingParams(max_new_tokens=200))
    assert engine.llm.calls == []


def test_sync_cycle_order_and_weights_change_samples(vl_policy):
    model, processor = vl_policy
    engine = engine_for(build("qwen2.5-vl"), processor, sleep_level=2, bucket_bytes=1 << 16)
    items = [text_item(0, "q")]
    before = engine.generate(items, 2, PARAMS)
    engine.sleep()
    with pytest.raises(RuntimeError, match="sync_weights"):
        engine.generate(items, 2, PARAMS)
    engine.llm.calls.clear()
    engine.sync_weights(model)
    names = [c[0] for c in engine.llm.calls]
    assert names[0] == "wake_up" and engine.llm.calls[0][1] == ("weights",)
    assert names.count("apply_model") > 1  # streamed in several buckets
    assert names[-2:] == ["reset_prefix_cache", "reset_encoder_cache"]
    loaded = engine.llm.model.loaded
    assert set(loaded) == {n for n, _ in model.named_parameters()}
    after = engine.generate(items, 2, PARAMS)
    assert engine.llm.calls[-2][0] == "wake_up" and engine.llm.calls[-1][0] == "generate"
    assert [c.token_ids for c in after[0]] != [c.token_ids for c in before[0]]  # new weight version


def test_peft_names_are_cleaned_and_lora_merged(text_policy):
    model, tokenizer = load_policy(build("qwen2"))
    peft_model = apply_lora(model, r=2, alpha=4)
    with torch.no_grad():  # a non-zero adapter, so merging changes the base weights
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.fill_(0.01)
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    engine = make_engine("vllm", peft_model, tokenizer, model_path=build("qwen2"), max_prompt_length=64,
                         max_new_tokens=8, **FAKE)  # make_engine syncs at once
    loaded = engine.llm.model.loaded
    assert "model.layers.0.self_attn.q_proj.weight" in loaded
    assert not any("lora_" in n or "base_layer" in n or n.startswith("base_model") for n in loaded)
    # merged for the push, unmerged afterwards
    q_name = "model.layers.0.self_attn.q_proj.weight"
    pushed = engine.llm.model.tensors[q_name]
    base_q = base["model.layers.0.self_attn.q_proj.base_layer.weight"]
    assert not torch.allclose(pushed, base_q, atol=1e-4)
    peft_model.merge_adapter()
    assert torch.allclose(pushed, model.get_submodule("model.layers.0.self_attn.q_proj").base_layer.weight)
    peft_model.unmerge_adapter()
    assert all(torch.allclose(p, base[n], atol=1e-6) for n, p in model.named_parameters() if n in base)


def test_clean_parameter_name_rules():
    assert clean_parameter_name("base_model.model.model.layers.0.mlp.up_proj.base_layer.weight") == \
        "model.layers.0.mlp.up_proj.weight"
    assert clean_parameter_name("base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight") is None
    wrapped = "_fsdp_wrapped_module.model._checkpoint_wrapped_module.norm.weight"
    assert clean_parameter_name(wrapped) == "model.norm.weight"
    assert clean_parameter_name("module.lm_head.weight") == "lm_head.weight"
    assert clean_parameter_name("base_model.model.score.modules_to_save.default.weight") == "score.weight"
    assert clean_parameter_name("base_model.model.score.original_module.weight") is None


def test_fake_rejects_leaked_names_shards_and_expanded_prompts(vl_policy):
    llm = FakeLLM(model=str(build("qwen2.5-vl")), max_model_len=512)
    weight = torch.zeros(llm.model.expected["model.norm.weight"])
    with pytest.raises(ValueError, match="unknown parameter"):
        llm.model.load_weights([("base_model.model.model.language_model.norm.weight", weight)])
    with pytest.raises(ValueError, match="full tensor"):
        llm.model.load_weights([("model.language_model.norm.weight", weight[:8])])
    pad = llm.image_pad_id
    with pytest.raises(RuntimeError, match="pre-expanded"):
        llm.generate([{"prompt_token_ids": [1, pad, pad, 2], "multi_modal_data": {"image": [object(), object()]}}])


def test_missing_or_broken_vllm_gives_the_install_hint(monkeypatch, text_policy):
    broken = types.ModuleType("vllm")

    def explode(name):
        raise RuntimeError("operator torchvision::nms does not exist")

    broken.__getattr__ = explode
    monkeypatch.setitem(sys.modules, "vllm", broken)
    with pytest.raises(VLLMUnavailableError, match=r"RuntimeError.*\[vllm\] extra on a GPU"):
        import_vllm()
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    model, tokenizer = text_policy
    with pytest.raises(ImportError, match=r"mmdps\[vllm\]"):
        make_engine("vllm", model, tokenizer, model_path=build("qwen2"))


def test_max_completion_length_is_a_deprecated_alias_of_max_new_tokens(text_policy):
    _, tokenizer = text_policy
    with pytest.warns(FutureWarning, match="max_completion_length is deprecated: call it max_new_tokens"):
        engine = VLLMEngine(build("qwen2"), tokenizer, max_prompt_length=64, max_completion_length=16, **FAKE)
    assert engine.max_new_tokens == 16 and engine.llm.kwargs["max_model_len"] == 80
    with pytest.raises(ValueError, match="max_new_tokens=8 and its deprecated alias max_completion_length=16; give "
                                         "only max_new_tokens"), pytest.warns(FutureWarning):
        VLLMEngine(build("qwen2"), tokenizer, max_prompt_length=64, max_new_tokens=8, max_completion_length=16, **FAKE)
    assert VLLMEngine(build("qwen2"), tokenizer, **FAKE).llm.kwargs["max_model_len"] == 2048  # 1024 + 1024
