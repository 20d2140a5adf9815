"""Prompt encoding (text and VL) and policy batches: padding layout, VL tensors, micro-batch slicing."""

import pytest
import torch

from mmdps.data.collate import PromptEncoder, build_policy_batch, build_prompt_batch
from mmdps.models.loading import load_processor
from tiny_models import build, image_item, text_item


@pytest.fixture(scope="module")
def text_encoder():
    return PromptEncoder(load_processor(build("qwen2")), max_prompt_length=256)


@pytest.fixture(scope="module")
def vl_encoder():
    return PromptEncoder(load_processor(build("qwen2-vl")), max_prompt_length=256)


def test_text_prompt_is_chat_templated(text_encoder):
    [prompt] = text_encoder.encode([text_item(7, "What is 2 + 3?")])
    assert prompt.item_id == 7 and prompt.pixel_values is None and prompt.mm_token_type_ids is None
    assert prompt.text.endswith("<|im_start|>assistant\n") and "What is 2 + 3?" in prompt.text
    assert text_encoder.tokenizer.decode(prompt.input_ids) == prompt.text
    assert prompt.engine_prompt_ids == prompt.input_ids


def test_text_prompt_truncation(text_encoder):
    long = text_item(3, "word " * 400)
    with pytest.raises(ValueError, match="item 3.*max_prompt_length"):
        text_encoder.encode([long])
    left = PromptEncoder(text_encoder.processor, max_prompt_length=20, truncation="left")
    [prompt] = left.encode([long])
    assert len(prompt) == 20 and prompt.text.endswith("<|im_start|>assistant\n")


def test_image_prompt_expands_placeholders_and_resizes(vl_encoder):
    # 84x56 -> 84x56 (multiples of 28, inside 56*56..112*112): a 6x4 patch grid, 6 image tokens after 2x2 merge
    [prompt] = vl_encoder.encode([image_item(1, "Find the area.", size=(84, 56))])
    image_id = vl_encoder.image_token_id
    assert prompt.engine_prompt_ids.count(image_id) == 1
    assert prompt.input_ids.count(image_id) == 6
    assert prompt.image_grid_thw.tolist() == [[1, 4, 6]]
    assert prompt.pixel_values.shape[0] == 24
    assert sum(prompt.mm_token_type_ids) == 6 and len(prompt.mm_token_type_ids) == len(prompt)
    # a large image is brought inside max_pixels by the shared resize rule
    [big] = vl_encoder.encode([image_item(2, "x", size=(640, 480))])
    assert big.images[0].width * big.images[0].height <= 112 * 112
    assert int(big.image_grid_thw.prod()) == big.pixel_values.shape[0]


def test_image_prompt_is_never_truncated(vl_encoder):
    tight = PromptEncoder(vl_encoder.processor, max_prompt_length=30, truncation="left")
    with pytest.raises(ValueError, match=r"item 5: .*never truncated.*max_pixels"):
        tight.encode([image_item(5, "some question")])


def test_text_model_rejects_images_and_missing_images_are_named(text_encoder, vl_encoder):
    with pytest.raises(ValueError, match="item 4: has an image but the model is text-only"):
        text_encoder.encode([image_item(4, "q")])
    missing = image_item(9, "q")
    missing.messages[0]["content"][0]["image"] = "/nonexistent/figure.png"
    with pytest.raises(ValueError, match="item 9.*not found"):
        vl_encoder.encode([missing])


def test_policy_batch_layout_with_mixed_prompt_lengths(text_encoder):
    prompts = text_encoder.encode([text_item(0, "hi"), text_item(1, "a much longer question about triangles")])
    completions = [[11, 12, 13], [21]]
    pad = text_encoder.tokenizer.pad_token_id
    batch = build_policy_batch(prompts, completions, pad_token_id=pad)
    width = max(len(p) for p in prompts)
    assert batch.input_ids.shape == (2, width + 3)
    assert batch.completion_ids.tolist() == [[11, 12, 13], [21, pad, pad]]
    assert batch.completion_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert torch.equal(batch.input_ids[:, -3:], batch.completion_ids)
    short = len(prompts[0])
    assert batch.attention_mask[0].tolist() == [0] * (width - short) + [1] * short + [1, 1, 1]
    assert batch.input_ids[0, width - short:width].tolist() == prompts[0].input_ids
    empty = build_policy_batch(prompts, [[], []], pad_token_id=pad)
    assert empty.completion_ids.shape == (2, 1) and empty.completion_mask.sum() == 0
    with pytest.raises(ValueError, match="repeat each prompt"):
        build_policy_batch(prompts, [[1]], pad_token_id=pad)


def test_vl_micro_batches_keep_pixel_rows_aligned(vl_encoder):
    items = [image_item(0, "a", size=(56, 56), color=(255, 0, 0)), text_item(1, "no image here"),
             image_item(2, "b", size=(112, 56), color=(0, 0, 255))]
    prompts = vl_encoder.encode(items)
    k = 2
    repeated = [p for p in prompts for _ in range(k)]
    batch = build_policy_batch(repeated, [[5, 6]] * len(repeated), pad_token_id=0)
    assert batch.mm_token_type_ids.shape == batch.input_ids.shape
    assert batch.mm_token_type_ids[:, -2:].sum() == 0
    assert batch.pixel_rows.tolist() == [16, 16, 0, 0, 32, 32]
    assert batch.pixel_values.shape[0] == sum(batch.pixel_rows.tolist())
    rows = [mb for mb in batch.micro_batches(3)]
    assert [len(mb) for mb in rows] == [3, 3]
    first, second = rows
    assert first.pixel_values.shape[0] == 32 and first.image_grid_thw.shape[0] == 2
    assert torch.equal(first.pixel_values[16:], prompts[0].pixel_values)
    assert torch.equal(second.pixel_values, torch.cat([prompts[2].pixel_values] * 2))
    assert second.image_grid_thw.tolist() == [[1, 4, 8]] * 2
    only_text = batch.select(2, 4)
    assert only_text.pixel_values is None and only_text.image_grid_thw is None
    # each micro-batch's image tokens match its own image features
    for mb in rows:
        image_tokens = int((mb.input_ids == vl_encoder.image_token_id).sum())
        features = int(mb.image_grid_thw.prod(-1).sum()) // 4 if mb.image_grid_thw is not None else 0
        assert image_tokens == features


def test_prompt_batch_is_left_padded(vl_encoder):
    prompts = vl_encoder.encode([image_item(0, "a"), text_item(1, "a longer text only prompt, no image")])
    batch = build_prompt_batch(prompts, pad_token_id=0)
    assert set(batch) == {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"}
    assert batch["attention_mask"][:, -1].tolist() == [1, 1]
