import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from mmdps.sft import pack_examples, supervised_warmup


def _model(vocab=16):
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                      tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg)


def test_pack_masks_prompt_and_padding():
    ids, mask, labels = pack_examples([[1, 2], [3]], [[4, 5], [6, 7, 8]], pad_token_id=0)
    assert ids.tolist() == [[1, 2, 4, 5], [3, 6, 7, 8]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    assert labels.tolist() == [[-100, -100, 4, 5], [-100, 6, 7, 8]]
    ids, mask, labels = pack_examples([[1]], [[2]], pad_token_id=0)
    assert labels.tolist() == [[-100, 2]]


def test_warmup_learns_a_mapping():
    model = _model()
    prompts = [[1, 2 + i] for i in range(6)]
    targets = [[8 + i, 15] for i in range(6)]  # each prompt has its own answer, then "EOS" 15
    ids, mask, labels = pack_examples(prompts, targets, pad_token_id=0)
    before = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    result = supervised_warmup(model, prompts, targets, pad_token_id=0, max_steps=60, batch_size=6, lr=1e-2,
                               warmup_steps=5)
    after = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    assert result.steps == 60 and len(result.losses) == 60
    assert after < 0.2 * before
    greedy = model(input_ids=ids[:, :2]).logits[:, -1].argmax(-1).tolist()
    assert greedy == [8 + i for i in range(6)]


def test_warmup_needs_a_budget():
    with pytest.raises(ValueError, match="max_steps or max_seconds"):
        supervised_warmup(_model(), [[1]], [[2]], pad_token_id=0)


# ---------------------------------------------------------------------- image prompts
def _tiny_vl():
    from mmdps.demos import vl

    processor = vl.build_processor()
    settings = vl.VLDemoSettings(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                 vision_width=16, vision_depth=1, vision_heads=1)
    return vl.build_model(processor.tokenizer, settings), processor


def _image_items(shades):
    from PIL import Image

    from mmdps.data.item import Item

    return [Item(id=i, messages=[{"role": "user", "content": [
        {"type": "image", "image": Image.new("RGB", (56, 56), (shade,) * 3)}, {"type": "text", "text": "c="}]}],
        ground_truth=i + 1, verifier="integer") for i, shade in enumerate(shades)]


def test_image_prompt_loss_is_the_models_own_cross_entropy():
    from mmdps.data.collate import PromptEncoder
    from mmdps.sft import encoded_batch_loss

    model, processor = _tiny_vl()
    prompt = PromptEncoder(processor, max_prompt_length=48).encode(_image_items([0]))[0]
    target = processor.tokenizer("17", add_special_tokens=False)["input_ids"] + [processor.tokenizer.eos_token_id]
    ids = torch.tensor([prompt.input_ids + target])
    labels = torch.tensor([[-100] * len(prompt.input_ids) + target])
    reference = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels,
                      pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                      mm_token_type_ids=torch.tensor([prompt.mm_token_type_ids + [0] * len(target)])).loss
    ours = encoded_batch_loss(model, [prompt], [target], processor.tokenizer.pad_token_id)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_warmup_learns_an_answer_that_only_the_image_gives():
    from mmdps.data.collate import PromptEncoder
    from mmdps.rollout.base import SamplingParams
    from mmdps.rollout.hf import HFEngine

    model, processor = _tiny_vl()
    items = _image_items([0, 255])  # same question, black vs white image, answers 1 and 2
    tokenizer = processor.tokenizer
    prompts = PromptEncoder(processor, max_prompt_length=48).encode(items)
    targets = [tokenizer(str(item.ground_truth), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
               for item in items]
    result = supervised_warmup(model, prompts, targets, pad_token_id=tokenizer.pad_token_id, max_steps=40,
                               batch_size=2, lr=2e-2, warmup_steps=5)
    assert result.losses[-1] < 0.1 * result.losses[0]
    groups = HFEngine(model, processor, max_prompt_length=48).generate(
        items, 1, SamplingParams(max_new_tokens=3, temperature=0.0))
    assert [group[0].text for group in groups] == ["1", "2"]
    with pytest.raises(ValueError, match="not a mix"):
        supervised_warmup(model, [prompts[0], [1, 2]], targets, pad_token_id=0, max_steps=1)
