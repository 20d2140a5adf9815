"""mmdps selectors inside TRL: the sampler's layout and feedback protocol, and real GRPOTrainer steps on CPU."""

import numpy as np
import pytest

from mmdps.integrations import trl as mtrl
from mmdps.selection import make_selector


def spy_updates(selector):
    """Record every (ids, rates) the selector is updated with."""
    calls = []
    update = selector.update

    def wrapped(ids, rates, rewards=None):
        calls.append((np.asarray(ids).copy(), np.asarray(rates, dtype=float).copy()))
        return update(ids, rates, rewards)

    selector.update = wrapped
    return calls


def test_sampler_layout_and_feedback_order():
    pytest.importorskip("torch")
    selector = make_selector("dps", 10, seed=0)
    calls = spy_updates(selector)
    sampler = mtrl.SelectorSampler(selector, num_generations=2, prompts_per_batch=3, repeat_count=2)
    assert len(sampler) == 3 * 3 * 2 * 2  # 3 blocks per epoch, 3 prompts x 2 generations x 2 repeats
    it = iter(sampler)
    block = [next(it) for _ in range(12)]
    ids = np.array(block[:6:2])
    assert block[:6] == np.repeat(ids, 2).tolist() and block[6:] == block[:6]  # TRL's RepeatSampler layout
    got, changed = sampler.begin_generation()
    assert np.array_equal(got, ids) and not changed
    rates = sampler.feed([1, 0, 1, 1, 0, 0])
    np.testing.assert_allclose(rates, [0.5, 1.0, 0.0])
    assert np.array_equal(calls[0][0], ids)
    nxt = [next(it) for _ in range(12)]  # selected after the feedback
    assert sampler.begin_generation()[1] is False and len(set(nxt)) == 3


def test_sampler_refuses_stale_choice_unless_deferred():
    pytest.importorskip("torch")
    strict = mtrl.SelectorSampler(make_selector("uniform", 8), num_generations=2, prompts_per_batch=2)
    it = iter(strict)
    [next(it) for _ in range(4)]
    with pytest.raises(RuntimeError, match="before the previous one's rewards"):
        next(it)  # the dataloader's look-ahead with no feedback yet

    selector = make_selector("dps", 8, seed=1)
    sampler = mtrl.SelectorSampler(selector, num_generations=2, prompts_per_batch=2, defer=True)
    it = iter(sampler)
    first = [next(it) for _ in range(4)]
    placeholder = [next(it) for _ in range(4)]  # fetched ahead: placeholder rows
    assert placeholder == first
    ids0, changed = sampler.begin_generation()
    assert not changed
    sampler.feed([1, 0, 0, 0])
    ids1, changed = sampler.begin_generation()  # chosen now, after the feedback
    assert changed and ids0[0] in ids1  # DPS keeps the partially solved prompt
    sampler.feed([0, 0, 1, 1])
    assert [a.tolist() for a in sampler.trained_ids] == [ids0.tolist(), ids1.tolist()]


def test_success_rates_and_bad_input():
    np.testing.assert_allclose(mtrl.success_rates_from_rewards([1, np.nan, 0.9, 0.2], 2, 0.5), [0.5, 0.5])
    with pytest.raises(ValueError, match="success_threshold"):
        mtrl.success_rates_from_rewards([2.0, 0.0], 2)
    np.testing.assert_allclose(mtrl.success_rates_from_rewards([1, np.nan, 0, 1], 2), [0.5, 0.5])  # None: wrong
    with pytest.raises(ValueError, match="infinite"):
        mtrl.success_rates_from_rewards([np.inf, 0.0], 2, 0.5)
    with pytest.raises(ValueError, match="groups of 3"):
        mtrl.success_rates_from_rewards([1, 0], 3)
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="one-round selector"):
        mtrl.SelectorSampler(make_selector("ds", 8), num_generations=2, prompts_per_batch=2)
    with pytest.raises(ValueError, match="exceed the dataset"):
        mtrl.SelectorSampler(make_selector("dps", 3), num_generations=2, prompts_per_batch=4)


@pytest.mark.parametrize("steps_per_generation", [1, 2])
def test_grpo_trainer_trains_on_selected_prompts(tmp_path, steps_per_generation):
    pytest.importorskip("trl")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from tiny_models import build

    path = build("qwen2", vocab="byte", hidden_size=32, num_layers=1)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    n = 8
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(n)],
                                 "idx": list(range(n))})
    seen = []  # (prompt idx, reward) per completion, in TRL's order

    def accuracy(completions, idx, **kwargs):
        # prompts with an even index are "solved" by every other completion, odd ones never
        rewards = [float(i % 2 == 0 and j % 2 == 0) for j, i in enumerate(idx)]
        seen.append((list(idx), rewards))
        return rewards

    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=steps_per_generation,
        steps_per_generation=steps_per_generation, num_generations=2, max_completion_length=4, max_steps=2,
        learning_rate=1e-4, beta=0.0, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
        seed=0, dataloader_num_workers=0, temperature=1.0,
    )
    trainer = mtrl.DPSGRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[accuracy], args=args,
                                  train_dataset=dataset, selector="dps",
                                  candidate_ratio=1.5 if steps_per_generation == 2 else None)
    calls = spy_updates(trainer.selector)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer.train()

    generations = 2  # one generation batch per optimizer step (steps_per_generation == grad accumulation)
    per_generation = 4 * steps_per_generation // 2  # generation batch / num_generations
    assert len(seen) == generations and len(calls) == generations
    for (idx, rewards), (ids, rates) in zip(seen, calls, strict=True):
        # the selector was updated with exactly the prompts TRL generated for, and their success rates
        assert idx == np.repeat(ids, 2).tolist() and len(ids) == per_generation
        np.testing.assert_allclose(rates, np.asarray(rewards).reshape(-1, 2).mean(1))
    assert [a.tolist() for a in trainer.selector_sampler.trained_ids] == [c[0].tolist() for c in calls]
    assert trainer.selector.steps == generations
    assert trainer.selector_sampler.prompt_fingerprint == mtrl.prompt_fingerprint(dataset)
    # the dataloader fetched the 2nd generation batch before the 1st one's rewards: it was chosen late
    assert trainer.selector_sampler.deferred_blocks == 1
    assert any("selector/prediction_accuracy" in log for log in trainer.state.log_history)
    assert any("prompts/repeat_share" in log for log in trainer.state.log_history)
    if steps_per_generation == 2:  # 6 candidates per generation batch of 4 prompts, from shuffled passes of 8
        assert trainer.selector.candidate_ratio == 1.5 and trainer.selector.candidate_sampler.epoch == 2
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters())  # it trained


def test_trainer_rejects_bad_accuracy_reward(tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from tiny_models import build

    path = build("qwen2", vocab="byte", hidden_size=32, num_layers=1)
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_steps=1,
                      report_to="none", use_cpu=True)
    dataset = Dataset.from_dict({"prompt": ["a", "b"]})
    common = dict(model=AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=dataset,
                  processing_class=AutoTokenizer.from_pretrained(path), reward_funcs=[lambda completions, **kw: [1.0]])
    with pytest.raises(ValueError, match="not a reward function"):
        mtrl.DPSGRPOTrainer(**common, accuracy_reward="accuracy")
    with pytest.raises(ValueError, match="one-round selector"):
        mtrl.DPSGRPOTrainer(**common, selector="ds")


class _StopAt:
    """A TrainerCallback (built lazily: trl is optional) that ends training after optimizer step ``step``,
    once that step's checkpoint is written: an interrupted run."""

    def __new__(cls, step):
        from transformers import TrainerCallback

        class StopAt(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == step:
                    control.should_training_stop = True

        return StopAt()


@pytest.mark.slow
@pytest.mark.parametrize(("steps_per_generation", "stop_at"), [(1, 2), (2, 1)])
def test_resumed_trainer_trains_the_prompts_of_an_uninterrupted_run(tmp_path, steps_per_generation, stop_at):
    """Interrupted after ``stop_at`` steps and resumed from TRL's checkpoint, a run trains exactly the
    generation batches of the uninterrupted run (the resumed epoch starts mid-way: TRL fast-forwards)."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from tiny_models import build

    path = build("qwen2", vocab="byte", hidden_size=32, num_layers=1)
    n = 8
    dataset = Dataset.from_dict({"prompt": [f"What is {i} + {i}?" for i in range(n)], "idx": list(range(n))})

    def accuracy(completions, idx, **kwargs):  # depends on the sampled text: the model and RNG must resume too
        return [float((sum(map(ord, c)) + i) % 3 == 0) for c, i in zip(completions, idx, strict=True)]

    def make(run, callbacks=()):
        args = GRPOConfig(
            output_dir=str(tmp_path / run), per_device_train_batch_size=4,
            gradient_accumulation_steps=steps_per_generation, steps_per_generation=steps_per_generation,
            num_generations=2, max_completion_length=6, max_steps=4, learning_rate=1e-3, beta=0.0,
            logging_steps=1, report_to="none", save_strategy="steps", save_steps=1, use_cpu=True, seed=0,
            dataloader_num_workers=0, temperature=1.0,
        )
        return mtrl.DPSGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path),
                                   processing_class=AutoTokenizer.from_pretrained(path), reward_funcs=[accuracy],
                                   args=args, train_dataset=dataset, selector="dps",
                                   candidate_ratio=1.5 if steps_per_generation == 2 else None,
                                   callbacks=list(callbacks))

    whole = make("whole")
    whole.train()
    expected = [ids.tolist() for ids in whole.selector_sampler.trained_ids]
    assert len(expected) == 4 and len({tuple(ids) for ids in expected}) > 1

    interrupted = make("resumed", [_StopAt(stop_at)])
    interrupted.train()
    assert [ids.tolist() for ids in interrupted.selector_sampler.trained_ids] == expected[:stop_at]
    checkpoint = tmp_path / "resumed" / f"checkpoint-{stop_at}"
    assert (checkpoint / mtrl.SELECTOR_STATE_DIR / "manifest.json").is_file()

    resumed = make("resumed")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert [ids.tolist() for ids in resumed.selector_sampler.trained_ids] == expected
    assert resumed.selector.steps == whole.selector.steps == 4
    state, resumed_state = whole.selector.state_dict(), resumed.selector.state_dict()
    assert state.keys() == resumed_state.keys()
    for key, value in state.items():  # the candidate stream and the RNG included
        np.testing.assert_equal(resumed_state[key], value, err_msg=key)


def test_resume_refuses_other_selector_settings(tmp_path):
    """DPSGRPOTrainer(selector_kwargs={"decay": 0.9}) over a checkpoint made with 0.5 used to train with 0.5."""
    pytest.importorskip("torch")
    from mmdps.checkpoint import load_state_folder, save_state_folder

    def sampler(decay):
        return mtrl.SelectorSampler(make_selector("dps", 12, {"decay": decay}, seed=3), num_generations=2,
                                    prompts_per_batch=3, repeat_count=1, defer=True)

    saved = sampler(0.5)
    it = iter(saved)
    [next(it) for _ in range(6)]
    saved.begin_generation()
    saved.feed([1, 0] * 3)
    folder = save_state_folder(tmp_path / mtrl.SELECTOR_STATE_DIR, saved.state_dict())  # as the checkpoint holds it
    resumed = sampler(0.9)
    with pytest.raises(ValueError, match=r"selector 'dps': the saved state was made with other settings \(decay: "
                                         r"0.5 saved, 0.9 now\).*set them back \(decay=0.5\).*new output directory"):
        resumed.load_state_dict(load_state_folder(folder), skip_blocks=1)
    assert resumed.selector.decay == 0.9 and resumed.selector.steps == 0
    sampler(0.5).load_state_dict(load_state_folder(folder), skip_blocks=1)


def test_sampler_state_round_trip_replays_chosen_blocks(tmp_path):
    pytest.importorskip("torch")
    from mmdps.checkpoint import load_state_folder, save_state_folder

    def fresh():
        return mtrl.SelectorSampler(make_selector("dps", 12, seed=3, candidate_ratio=2.0), num_generations=2,
                                    prompts_per_batch=3, repeat_count=1, defer=True)

    sampler = fresh()
    it = iter(sampler)
    for _ in range(2):  # two blocks trained
        [next(it) for _ in range(6)]
        ids, _ = sampler.begin_generation()
        sampler.feed([1, 0] * 3)
    look_ahead = [next(it) for _ in range(6)]  # fetched ahead, chosen: part of the saved state
    folder = save_state_folder(tmp_path / "state", sampler.state_dict())
    continued = [sampler.begin_generation()[0].tolist(), sampler.feed([0, 1] * 3)]

    restored = fresh()
    restored.load_state_dict(load_state_folder(folder), skip_blocks=2)
    it = iter(restored)
    assert [next(it) for _ in range(12)] == [0] * 12  # the two trained blocks: placeholders the trainer skips
    assert [next(it) for _ in range(6)] == look_ahead
    ids, changed = restored.begin_generation()
    assert ids.tolist() == continued[0] and not changed
    np.testing.assert_allclose(restored.feed([0, 1] * 3), continued[1])
    assert [a.tolist() for a in restored.trained_ids] == [a.tolist() for a in sampler.trained_ids]
    with pytest.raises(ValueError, match="skip_blocks"):
        fresh().load_state_dict(load_state_folder(folder), skip_blocks=4)


def test_shaped_rewards_are_refused_not_read_as_success_rates():
    # countdown's adapter gives 0.1 to a well-formatted wrong answer: an all-wrong prompt is not "10% solved"
    shaped = [0.1] * 4 + [1.0] * 4
    with pytest.raises(ValueError, match=r"reward function 'countdown' gave 0\.1.*exactly 0 or 1.*success_threshold"):
        mtrl.success_rates_from_rewards(shaped, 4, source="reward function 'countdown'")
    np.testing.assert_allclose(mtrl.success_rates_from_rewards(shaped, 4, success_threshold=1.0), [0.0, 1.0])
    np.testing.assert_allclose(mtrl.success_rates_from_rewards([0, 1, 1, 1], 2), [0.5, 1.0])


def _tiny_trainer(tmp_path, reward_funcs, dataset, trainer_kwargs=None, **config):
    """A 1-step DPSGRPOTrainer on a tiny random model: 2 prompts per generation batch, 2 completions each
    (``config`` overrides GRPOConfig fields)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from tiny_models import build

    path = build("qwen2", vocab="byte", hidden_size=32, num_layers=1)
    args = GRPOConfig(**{**dict(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                                max_completion_length=4, max_steps=1, learning_rate=1e-4, beta=0.0, logging_steps=1,
                                report_to="none", save_strategy="no", save_steps=1, use_cpu=True, seed=0,
                                dataloader_num_workers=0), **config})
    return mtrl.DPSGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args,
                               processing_class=AutoTokenizer.from_pretrained(path), reward_funcs=reward_funcs,
                               train_dataset=dataset, **(trainer_kwargs or {}))


def test_trainer_reads_the_adapters_acc_not_its_shaped_score(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from datasets import Dataset

    import mmdps.verifiers as verifiers
    from mmdps.verifiers.adapters import trl_reward_func

    graded = []

    def shaped(completion, ground_truth, idx=0, **item):  # like countdown: 0.1 for a formatted wrong answer
        graded.append(idx)
        right = idx % 2 == 0
        return {"score": 1.0 if right else 0.1, "acc": float(right), "format": 1.0}

    monkeypatch.setitem(verifiers._REGISTRY, "shaped_for_test", shaped)
    dataset = Dataset.from_dict({"prompt": [f"q{i}" for i in range(4)], "solution": ["x"] * 4, "idx": [0, 1, 2, 3]})
    trainer = _tiny_trainer(tmp_path, [trl_reward_func("shaped_for_test")], dataset)
    assert trainer.reward_func_names == ["shaped_for_test", "shaped_for_test_acc"]
    assert trainer.reward_weights.tolist() == [1.0, 0.0]  # the acc column is read, not optimised
    calls = spy_updates(trainer.selector)
    trainer.train()
    (ids, rates), = calls
    np.testing.assert_allclose(rates, (ids % 2 == 0).astype(float))  # odd prompts: all wrong, not 0.1
    assert len(graded) == 4  # 2 prompts x 2 completions, graded once for both columns


def test_trainer_refuses_a_shaped_reward_without_threshold(tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset

    def fuzzy(completions, **kwargs):
        return [0.1] * len(completions)

    dataset = Dataset.from_dict({"prompt": [f"q{i}" for i in range(4)]})
    trainer = _tiny_trainer(tmp_path, [fuzzy], dataset)
    with pytest.raises(ValueError, match=r"reward function 'fuzzy' \(accuracy_reward=0\) gave 0\.1.*success_threshold"):
        trainer.train()
    assert trainer.selector.steps == 0


def _fed_sampler_state(prompts_per_batch, fingerprint="a" * 64, num_prompts=16):
    sampler = mtrl.SelectorSamplerCore(make_selector("dps", num_prompts, seed=0), num_generations=2,
                                       prompts_per_batch=prompts_per_batch, defer=True, prompt_fingerprint=fingerprint)
    it = iter(sampler)
    for _ in range(2):  # two blocks trained, then one fetched ahead
        [next(it) for _ in range(2 * prompts_per_batch)]
        sampler.begin_generation()
        sampler.feed([1, 0] * prompts_per_batch)
    [next(it) for _ in range(2 * prompts_per_batch)]
    return sampler.state_dict()


@pytest.mark.parametrize("resumed_with", [8, 2])
def test_resume_refuses_another_number_of_prompts_per_generation_batch(tmp_path, resumed_with):
    from mmdps.checkpoint import load_state_folder, save_state_folder

    folder = save_state_folder(tmp_path / "state", _fed_sampler_state(4))
    resumed = mtrl.SelectorSamplerCore(make_selector("dps", 16, seed=0), num_generations=2,
                                       prompts_per_batch=resumed_with, prompt_fingerprint="a" * 64)
    with pytest.raises(ValueError, match=rf"has 4 prompts per generation batch, this run has {resumed_with}"):
        resumed.load_state_dict(load_state_folder(folder))
    state = load_state_folder(folder)
    del state["prompts_per_batch"]  # a state from before the key: the saved arrays still tell
    with pytest.raises(ValueError, match="has 4 prompts per generation batch"):
        resumed.load_state_dict(state)


def test_resume_refuses_reordered_or_edited_prompts(tmp_path):
    pytest.importorskip("datasets")
    from datasets import Dataset

    from mmdps.checkpoint import load_state_folder, save_state_folder

    rows = [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(16)]
    original = mtrl.prompt_fingerprint(Dataset.from_dict({"prompt": rows}))
    assert original == mtrl.prompt_fingerprint([{"prompt": r} for r in rows])  # any map-style dataset
    edited = rows[:3] + [[{"role": "user", "content": "What is 3 + 4?"}]] + rows[4:]
    for changed in (rows[::-1], edited):
        assert mtrl.prompt_fingerprint(Dataset.from_dict({"prompt": changed})) != original
    folder = save_state_folder(tmp_path / "state", _fed_sampler_state(4, fingerprint=original))

    def resumed(fingerprint):
        return mtrl.SelectorSamplerCore(make_selector("dps", 16, seed=0), num_generations=2, prompts_per_batch=4,
                                        prompt_fingerprint=fingerprint)

    resumed(original).load_state_dict(load_state_folder(folder))  # the same prompts: fine
    with pytest.raises(ValueError, match="prompts differ from those the checkpoint"):
        resumed(mtrl.prompt_fingerprint(Dataset.from_dict({"prompt": rows[::-1]}))).load_state_dict(
            load_state_folder(folder))
    state = load_state_folder(folder)
    state["trained_ids"] = state["trained_ids"] + 16
    with pytest.raises(ValueError, match="outside"):
        resumed(original).load_state_dict(state)


@pytest.mark.slow
def test_trainer_resume_refuses_another_generation_batch_or_other_prompts(tmp_path):
    """Through TRL's own resume: a checkpoint of 2 prompts per generation batch, resumed with 4 (it failed
    with "cannot reshape array") or on the same prompts reordered (it resumed silently)."""
    pytest.importorskip("trl")
    from datasets import Dataset

    prompts = [f"What is {i} + {i}?" for i in range(8)]

    def accuracy(completions, **kwargs):
        return [float(len(c) % 2) for c in completions]

    saved = _tiny_trainer(tmp_path, [accuracy], Dataset.from_dict({"prompt": prompts}), save_strategy="steps")
    saved.train()
    checkpoint = tmp_path / "checkpoint-1"
    assert (checkpoint / mtrl.SELECTOR_STATE_DIR).is_dir()
    wider = _tiny_trainer(tmp_path, [accuracy], Dataset.from_dict({"prompt": prompts}),
                          per_device_train_batch_size=8, max_steps=2)
    with pytest.raises(ValueError, match="has 2 prompts per generation batch, this run has 4"):
        wider.train(resume_from_checkpoint=str(checkpoint))
    reordered = _tiny_trainer(tmp_path, [accuracy], Dataset.from_dict({"prompt": prompts[::-1]}), max_steps=2)
    with pytest.raises(ValueError, match="prompts differ from those the checkpoint"):
        reordered.train(resume_from_checkpoint=str(checkpoint))
