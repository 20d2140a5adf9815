"""The HF rollout engine: B x k output, seeding, EOS/length, vision-token suppression, and log-probs
that match what the sampler used (text and VL, alone and in a left-padded batch)."""

import pytest
import torch

from mmdps.data.collate import build_policy_batch, build_prompt_batch
from mmdps.models.forward import completion_logprobs
from mmdps.models.loading import load_policy, vision_token_ids
from mmdps.rollout import make_engine
from mmdps.rollout.base import SamplingParams
from mmdps.rollout.hf import HFEngine, cut_completion
from tiny_models import build, image_item, text_item

_LOADED = {}


def policy(arch):
    if arch not in _LOADED:
        _LOADED[arch] = load_policy(build(arch))
    return _LOADED[arch]


def items_for(arch):
    if arch == "qwen2":
        return [text_item(0, "hi"), text_item(1, "a longer prompt: find the value of 12 + 30 and explain")]
    return [image_item(0, "hi", size=(56, 56)), image_item(1, "a longer prompt about the figure", size=(112, 84))]


def test_b_by_k_completions_seeded_and_rng_untouched():
    model, processor = policy("qwen2")
    engine = make_engine("hf", model, processor)
    items = [text_item(i, f"question {i}") for i in range(3)]
    params = SamplingParams(max_new_tokens=6, temperature=1.0, seed=11)
    before = torch.random.get_rng_state()
    first = engine.generate(items, 4, params)
    assert torch.equal(before, torch.random.get_rng_state())  # seeded sampling leaves the trainer's RNG alone
    assert len(first) == 3 and all(len(group) == 4 for group in first)
    ids = [[c.token_ids for c in g] for g in first]
    assert ids == [[c.token_ids for c in g] for g in engine.generate(items, 4, params)]
    other = engine.generate(items, 4, SamplingParams(max_new_tokens=6, temperature=1.0, seed=12))
    assert ids != [[c.token_ids for c in g] for g in other]
    assert len({tuple(t) for t in ids[0]}) > 1  # k samples of one prompt differ
    for group in first:
        for completion in group:
            assert completion.finish_reason == "length" and completion.truncated and len(completion.token_ids) == 6
            assert completion.text == engine.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
    model.train()
    engine.generate(items[:1], 1, params)
    assert model.training
    model.eval()


def test_greedy_eos_and_chunking():
    model, processor = policy("qwen2")
    items = [text_item(0, "alpha"), text_item(1, "beta gamma")]
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    engine = HFEngine(model, processor, generation_batch_size=1)
    groups = engine.generate(items, 3, greedy)
    assert all(len({tuple(c.token_ids) for c in g}) == 1 for g in groups)  # greedy: k identical copies
    stop_token = groups[0][0].token_ids[2]
    eos = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [eos, stop_token]  # make the 3rd greedy token an EOS
    try:
        stopped = HFEngine(model, processor).generate(items[:1], 2, greedy)[0]
    finally:
        model.generation_config.eos_token_id = eos
    first = groups[0][0].token_ids.index(stop_token)
    for completion in stopped:
        assert completion.finish_reason == "stop" and not completion.truncated
        assert completion.token_ids == groups[0][0].token_ids[:first + 1]  # EOS kept, nothing after it


def test_cut_completion_rules():
    assert cut_completion([5, 6, 2, 0, 0], {2}, set()) == ([5, 6, 2], "stop")
    assert cut_completion([5, 6, 7], {2}, set()) == ([5, 6, 7], "length")
    assert cut_completion([5, 9, 2], {2}, {9}) == ([5], "length")


def test_vision_tokens_are_never_sampled():
    model, processor = policy("qwen2-vl")
    banned = vision_token_ids(processor.tokenizer)

    def favour_vision(module, inputs, output):  # a policy that wants to emit image placeholders
        output[..., banned] += 50.0
        return output

    handle = model.get_output_embeddings().register_forward_hook(favour_vision)
    try:
        params = SamplingParams(max_new_tokens=5, temperature=1.0, seed=0)
        items = [image_item(0, "describe"), text_item(1, "plain text prompt")]
        clean = HFEngine(model, processor).generate(items, 3, params)
        raw = HFEngine(model, processor, suppress_vision_tokens=False).generate(items, 3, params)
    finally:
        handle.remove()
    assert not any(t in banned for g in clean for c in g for t in c.token_ids)
    assert all(len(c.token_ids) == 5 for g in clean for c in g)
    assert any(t in banned for g in raw for c in g for t in c.token_ids)  # the hook works


@pytest.mark.parametrize("arch", ["qwen2", "qwen2-vl", "qwen2.5-vl"])
def test_completion_logprobs_match_the_sampler(arch):
    model, processor = policy(arch)
    engine = HFEngine(model, processor, suppress_vision_tokens=False)
    k, temperature = 2, (0.7 if arch == "qwen2" else 1.0)
    prompts = engine.encoder.encode(items_for(arch))
    batch = build_prompt_batch(prompts, pad_token_id=engine.pad_token_id)
    if arch == "qwen2":
        batch.pop("mm_token_type_ids", None)
    config = engine.generation_config(k, SamplingParams(max_new_tokens=10, temperature=temperature))
    config.output_scores, config.return_dict_in_generate = True, True
    model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        out = model.generate(**batch, generation_config=config)
        sampler = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    stop = set(engine.stop_ids)
    new_tokens = out.sequences[:, batch["input_ids"].shape[1]:].tolist()
    completions = [cut_completion(row, stop, set())[0] for row in new_tokens]
    repeated = [p for p in prompts for _ in range(k)]
    policy_batch = build_policy_batch(repeated, completions, pad_token_id=engine.pad_token_id)
    with torch.no_grad():
        logprobs, entropy = completion_logprobs(model, policy_batch, temperature=temperature, with_entropy=True)
    width = policy_batch.completion_length
    mask = policy_batch.completion_mask.bool()
    assert torch.allclose(logprobs[mask], sampler[:, :width][mask], atol=1e-4)
    assert (logprobs[~mask] == 0).all() and (entropy[mask] > 0).all()
    # left padding: the short prompt scores the same alone as beside a longer prompt
    alone = build_policy_batch(repeated[:1], completions[:1], pad_token_id=engine.pad_token_id)
    with torch.no_grad():
        alone_logprobs, _ = completion_logprobs(model, alone, temperature=temperature)
    n = len(completions[0])
    assert torch.allclose(alone_logprobs[0, :n], logprobs[0, :n], atol=1e-4)
    assert len(prompts[0]) < len(prompts[1])  # the batch really was padded


def test_logprobs_have_gradients_and_reject_zero_temperature():
    model, processor = policy("qwen2")
    engine = HFEngine(model, processor)
    prompts = engine.encoder.encode([text_item(0, "q")])
    batch = build_policy_batch(prompts, [[10, 11, 12]], pad_token_id=engine.pad_token_id)
    logprobs, entropy = completion_logprobs(model, batch)
    assert entropy is None and logprobs.requires_grad
    logprobs.sum().backward()
    assert model.get_input_embeddings().weight.grad is not None
    model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="temperature"):
        completion_logprobs(model, batch, temperature=0.0)


def test_make_engine_rejects_unknown_names():
    model, processor = policy("qwen2")
    with pytest.raises(ValueError, match="hf, vllm"):
        make_engine("sglang", model, processor)


@pytest.mark.parametrize("sampling", [SamplingParams(max_new_tokens=8, temperature=0.7, seed=3),
                                      SamplingParams(max_new_tokens=8, top_p=0.8, top_k=5, seed=4)])
def test_sampler_logprobs_are_those_generate_sampled_from(sampling):
    # generate's own processed scores (temperature, top-k, top-p applied) give the reference; the
    # recorder must neither change the tokens drawn nor disagree with those scores.
    model, processor = policy("qwen2")
    engine = HFEngine(model, processor)
    completions = [c for group in engine.generate(items_for("qwen2"), 3, sampling) for c in group]
    prompts = engine.encoder.encode(items_for("qwen2"))
    batch = build_prompt_batch(prompts, pad_token_id=engine.pad_token_id)
    batch.pop("mm_token_type_ids", None)
    config = engine.generation_config(3, sampling)
    config.output_scores, config.return_dict_in_generate = True, True
    model.eval()
    with torch.no_grad():
        torch.manual_seed(sampling.seed)
        out = model.generate(**batch, generation_config=config)
        reference = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    new = out.sequences[:, batch["input_ids"].shape[1]:]
    for row, completion in enumerate(completions):
        n = len(completion.token_ids)
        assert completion.token_ids == new[row, :n].tolist()
        torch.testing.assert_close(torch.tensor(completion.logprobs), reference[row, :n].float(), atol=1e-5, rtol=0)


def test_greedy_and_opted_out_engines_report_no_logprobs():
    model, processor = policy("qwen2")
    greedy = [HFEngine(model, processor).generate(items_for("qwen2"), k, SamplingParams(max_new_tokens=4,
                                                                                        temperature=0.0))
              for k in (1, 2)]
    greedy = [group for rows in greedy for group in rows]
    plain = HFEngine(model, processor, return_logprobs=False).generate(items_for("qwen2"), 2,
                                                                        SamplingParams(max_new_tokens=4, seed=0))
    assert all(c.logprobs is None for rows in (greedy, plain) for g in rows for c in g)
