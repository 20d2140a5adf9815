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
