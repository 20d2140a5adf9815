"""The verl curriculum sampler against fake DataProto / dataset objects that mirror verl's field names."""

import subprocess
import sys

import numpy as np
import pytest

from mmdps.integrations import verl as mverl


class FakeDataProto:
    """verl's DataProto as the sampler sees it: ``.batch`` (tensors by key) and ``.non_tensor_batch``."""

    def __init__(self, batch: dict, non_tensor_batch: dict):
        self.batch = batch
        self.non_tensor_batch = non_tensor_batch


class FakeFrame:
    """A datasets.Dataset stand-in: ``column_names`` and column access."""

    def __init__(self, rows):
        self.rows = rows
        self.column_names = list(rows[0])

    def __getitem__(self, key):
        return [r[key] for r in self.rows]


class FakeRLHFDataset:
    def __init__(self, n, index_offset=0):
        self.dataframe = FakeFrame([{"prompt": f"q{i}", "extra_info": {"index": i + index_offset, "split": "train"}}
                                    for i in range(n)])

    def __len__(self):
        return len(self.dataframe.rows)


def config(**sampler):
    return {"train_batch_size": 4, "seed": 0, "sampler": {
        "class_path": "pkg://mmdps.integrations.verl", "class_name": "SelectorCurriculumSampler", **sampler}}


def step_batch(index, acc_per_sample, n=4, key="acc"):
    """A batch with ``n`` interleaved rollouts per prompt, as verl builds it (repeat(interleave=True))."""
    idx = np.repeat(np.asarray(index), n)
    if key == "acc":
        return FakeDataProto({}, {"index": idx, "acc": np.asarray(acc_per_sample, dtype=float)})
    torch = pytest.importorskip("torch")
    scores = torch.zeros(idx.size, 5)
    scores[:, -1] = torch.tensor(acc_per_sample, dtype=torch.float32)  # reward on the last response token
    return FakeDataProto({"token_level_scores": scores},
                         {"extra_info": np.array([{"index": int(i)} for i in idx], dtype=object)})


def spy_updates(selector):
    """Record every (ids, rates) the selector is updated with."""
    calls = []
    update = selector.update

    def wrapped(ids, rates, rewards=None):
        calls.append((np.asarray(ids).copy(), np.asarray(rates, dtype=float).copy()))
        return update(ids, rates, rewards)

    selector.update = wrapped
    return calls


#: What `pip install --no-deps mmdps` into a verl environment may lack: none of it may be needed.
NOT_INSTALLED = ["torch", "torchvision", "transformers", "trl", "verl", "accelerate", "datasets", "peft", "sympy",
                 "math_verify", "PIL", "pandas", "pyarrow", "yaml", "rich", "tqdm", "matplotlib", "qwen_vl_utils"]


def test_sampler_works_with_numpy_alone():
    """The `pip install --no-deps mmdps` path of docs/integrations.md: mmdps.selection and the verl sampler
    import and run with numpy alone (every other dependency of mmdps blocked)."""
    code = (
        "import sys\n"
        f"for name in {NOT_INSTALLED!r}: sys.modules[name] = None  # import fails like a missing package\n"
        "import numpy as np, types\n"
        "import mmdps.selection, mmdps.integrations, mmdps.integrations.verl as mverl, mmdps.integrations.trl\n"
        "cls = mverl.SelectorCurriculumSampler\n"
        "assert cls.__mro__[-1] is object and 'update' in dir(cls)\n"
        "config = {'train_batch_size': 2, 'seed': 0, 'sampler': {'selector': 'dps'}}\n"
        "sampler = cls(data_source=list(range(6)), data_config=config)\n"
        "it = iter(sampler)\n"
        "ids = [next(it) for _ in range(2)]\n"
        "sampler.update(types.SimpleNamespace(batch={}, non_tensor_batch={\n"
        "    'index': np.repeat(ids, 2), 'acc': np.array([1.0, 0.0, 1.0, 1.0])}))\n"
        "assert sampler.selector.steps == 1 and sampler.metrics()['prompts/distinct_total'] == 2\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(NOT_INSTALLED) + " and sys.modules[m]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_batches_are_chosen_lazily_after_each_update():
    Sampler = mverl.SelectorCurriculumSampler
    sampler = Sampler(data_source=FakeRLHFDataset(12), data_config=config(selector="dps"))
    assert len(sampler) == 12
    it = iter(sampler)
    first = [next(it) for _ in range(4)]
    assert len(set(first)) == 4
    # prompts 0..: the first two partially solved, the others solved
    acc = np.concatenate([[1, 0, 0, 0], [1, 1, 0, 0], np.ones(8)])
    sampler.update(step_batch(first, acc))
    assert sampler.selector.steps == 1
    states = sampler.selector.predicted_state_probs()
    assert states[first[0], 1] > states[first[2], 1]  # the partial prompt is predicted more partial
    second = [next(it) for _ in range(4)]
    assert first[0] in second and first[1] in second and first[2] not in second  # DPS uses the feedback
    sampler.update(step_batch(second, np.zeros(16)))
    rest = list(it)
    assert len(rest) == 4  # 3 batches per epoch


def test_token_level_scores_and_extra_info_index_mapping():
    batch = step_batch([103, 105], [1, 1, 0, 0, 0, 0, 0, 0], n=4, key="scores")
    got_ids, rates = mverl.batch_success_rates(batch)
    np.testing.assert_array_equal(got_ids, [103, 105])
    np.testing.assert_allclose(rates, [0.5, 0.0])
    # extra_info.index = 100 + position: the sampler maps ids back to positions
    sampler = mverl.SelectorCurriculumSampler(FakeRLHFDataset(8, index_offset=100), config(selector="uniform"))
    it = iter(sampler)
    first = [next(it) for _ in range(4)]
    calls = spy_updates(sampler.selector)
    sampler.update(step_batch([100 + p for p in first], [1, 0, 0, 0] * 4, key="scores"))
    assert calls[0][0].tolist() == sorted(first) and sampler.selector.prompts_updated == 4
    np.testing.assert_allclose(calls[0][1], [0.25] * 4)
    [next(it) for _ in range(4)]
    with pytest.raises(ValueError, match="not in the training dataset"):
        sampler.update(step_batch([7], [1, 1, 1, 1]))


def test_threshold_binarises_shaped_scores():
    batch = FakeDataProto({}, {"index": np.array([0, 0, 1, 1]), "acc": np.array([0.9, 0.1, 1.0, 0.95])})
    ids, rates = mverl.batch_success_rates(batch, success_threshold=0.5)
    np.testing.assert_allclose(rates, [0.5, 1.0])


def test_state_round_trip_resumes_the_same_choices():
    Sampler = mverl.SelectorCurriculumSampler
    cfg = config(selector="mopps", selector_kwargs={"rollouts_per_prompt": 4, "candidate_ratio": None})
    a = Sampler(FakeRLHFDataset(20), cfg)
    it = iter(a)
    batch = [next(it) for _ in range(4)]
    a.update(step_batch(batch, np.tile([1, 0, 0, 0], 4)))
    state = a.state_dict()
    b = Sampler(FakeRLHFDataset(20), cfg)
    b.load_state_dict(state)
    assert b.batches_done == 1
    resumed = iter(b)
    np.testing.assert_array_equal([next(it) for _ in range(4)], [next(resumed) for _ in range(4)])


def test_resumes_through_verls_dataloader_checkpoint(tmp_path):
    """verl checkpoints its train dataloader (torchdata's StatefulDataLoader) as ``data.pt`` and loads it
    back with ``torch.load(weights_only=False)``; the dataloader's state holds the sampler's ``state_dict()``.
    A run resumed that way picks the batches of an uninterrupted run, across an epoch boundary too."""
    torch = pytest.importorskip("torch")
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    cfg = config(selector="dps", selector_kwargs={"decay": 0.5}, candidate_ratio=1.5)

    def loader():
        data = list(range(12))  # a map-style dataset whose rows are their ids
        sampler = mverl.SelectorCurriculumSampler(data_source=data, data_config=cfg)
        return stateful.StatefulDataLoader(data, batch_size=4, sampler=sampler, num_workers=0), sampler

    def train(dl, sampler, steps, epochs=3, stop_after=None):
        """verl's loop: for each batch, score it (rewards depend on the ids) and update the sampler."""
        chosen = []
        for _ in range(epochs):
            for batch in dl:
                ids = batch.tolist()
                sampler.update(step_batch(ids, [float((i + k) % 3 == 0) for i in ids for k in range(4)]))
                chosen.append(ids)
                if len(chosen) == stop_after:
                    return chosen
                if len(chosen) == steps:
                    return chosen
        return chosen

    expected = train(*loader(), steps=7)
    dl, sampler = loader()
    first = train(dl, sampler, steps=7, stop_after=4)  # 4 = one epoch and one batch
    torch.save(dl.state_dict(), tmp_path / "data.pt")
    dl, sampler = loader()
    dl.load_state_dict(torch.load(tmp_path / "data.pt", weights_only=False))
    rest = train(dl, sampler, steps=3, epochs=2)  # the loader hands the state to the sampler at iter()
    assert first + rest == expected and sampler.selector.steps == 7


def test_bad_config_and_batches():
    Sampler = mverl.SelectorCurriculumSampler
    with pytest.raises(ValueError, match="train_batch_size"):
        Sampler(FakeRLHFDataset(4), {"train_batch_size": 8, "sampler": {}})
    with pytest.raises(ValueError, match="max_rounds"):
        Sampler(FakeRLHFDataset(8), config(selector="ds"))
    with pytest.raises(ValueError, match="unknown selector"):
        Sampler(FakeRLHFDataset(8), config(selector="nope"))
    sampler = Sampler(FakeRLHFDataset(8), config())
    with pytest.raises(RuntimeError, match="handed out no batch"):
        sampler.update(step_batch([0, 1, 2, 3], np.ones(16)))
    it = iter(sampler)
    ids = [next(it) for _ in range(4)]
    with pytest.raises(ValueError, match="no prompt ids"):
        sampler.update(FakeDataProto({}, {"acc": np.ones(4)}))
    with pytest.raises(ValueError, match="no rewards"):
        sampler.update(FakeDataProto({}, {"index": np.repeat(ids, 2)}))
    with pytest.raises(ValueError, match="DataProto"):
        sampler.update({"index": [0]})
    with pytest.raises(ValueError, match="must be integers"):
        sampler.update(FakeDataProto({}, {"index": np.repeat(ids, 2) + 0.5, "acc": np.ones(8)}))
    assert sampler.selector.steps == 0


def test_omegaconf_config_like_verl_passes_it():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(config(selector="dps", selector_kwargs={"decay": 0.7}))
    sampler = mverl.SelectorCurriculumSampler(FakeRLHFDataset(8), cfg)
    assert sampler.selector.decay == 0.7 and sampler.selector.seed == 0


def test_subclasses_torch_sampler_when_verl_is_missing():
    torch = pytest.importorskip("torch")
    assert issubclass(mverl.SelectorCurriculumSampler, torch.utils.data.Sampler)


def test_candidate_ratio_and_data_diagnostics():
    sampler = mverl.SelectorCurriculumSampler(FakeRLHFDataset(16), config(selector="dps", candidate_ratio=2))
    assert sampler.selector.candidate_ratio == 2.0
    it = iter(sampler)
    first = [next(it) for _ in range(4)]
    window = sampler.selector.candidate_sampler.order[:8].tolist()
    assert set(first) <= set(window)  # the best 4 of the first 8 candidates of the shuffled pass
    sampler.update(step_batch(first, np.array([1, 0, 0, 0] * 4)))
    diag = sampler.diagnostics()
    assert diag["prompts/distinct_total"] == 4 and diag["prompts/repeat_share"] == 0.0
    with pytest.raises(ValueError, match="keep one"):
        mverl.SelectorCurriculumSampler(FakeRLHFDataset(16), config(selector="dps", candidate_ratio=2,
                                                                    selector_kwargs={"candidate_ratio": 4}))


def handed_batch(sampler, it=None):
    """The next dataloader batch verl pulls from ``sampler`` (and the iterator, to pull more)."""
    it = iter(sampler) if it is None else it
    return [next(it) for _ in range(sampler.batch_size)], it


def test_rows_without_extra_info_index_are_refused():
    # verl's RLHFDataset gives a row without extra_info.index the index 0: [0, 2, 9, 7] came back as [0, 0, 0, 0]
    sampler = mverl.SelectorCurriculumSampler(list(range(12)), config(selector="dps"))
    ids, _ = handed_batch(sampler)
    assert len(set(ids)) == 4 and ids != [0, 0, 0, 0]
    with pytest.raises(ValueError, match=r"missing \[.*extra_info\.index.*with_indices=True"):
        sampler.update(step_batch([0, 0, 0, 0], np.tile([1, 0, 0, 0], 4)))
    assert sampler.selector.steps == 0  # nothing reached the selector
    no_index = FakeRLHFDataset(6)
    no_index.dataframe.rows[2]["extra_info"] = {"split": "train"}
    with pytest.raises(ValueError, match=r"1 training rows \(first: row 2\) have no extra_info.index"):
        mverl.SelectorCurriculumSampler(no_index, config())
    bare = FakeRLHFDataset(6)
    bare.dataframe = FakeFrame([{"prompt": f"q{i}"} for i in range(6)])
    with pytest.raises(ValueError, match="no extra_info column"):
        mverl.SelectorCurriculumSampler(bare, config())


def test_each_prompt_must_come_back_rollout_n_times():
    sampler = mverl.SelectorCurriculumSampler(FakeRLHFDataset(12), config(selector="dps"))
    ids, it = handed_batch(sampler)
    short = step_batch(ids, np.ones(16))
    short.non_tensor_batch = {k: v[1:] for k, v in short.non_tensor_batch.items()}  # one rollout lost
    with pytest.raises(ValueError, match=r"\): 15 samples, rollouts per prompt \[3, 4\]\. Either"):
        sampler.update(short)
    other = [i for i in range(12) if i not in ids][0]
    with pytest.raises(ValueError, match=rf"unexpected prompt ids \[{other}\]"):
        sampler.update(step_batch([*ids[:3], other], np.ones(16)))
    assert sampler.selector.steps == 0
    sampler.update(step_batch(ids, np.ones(16)))  # the batch handed out, 4 rollouts each: accepted
    second, _ = handed_batch(sampler, it)
    sampler.update(step_batch(second, np.zeros(8), n=2))  # rollout.n is read from the batch
    assert sampler.selector.steps == 2


def test_success_rule_refuses_shaped_scores_without_threshold():
    sampler = mverl.SelectorCurriculumSampler(FakeRLHFDataset(8), config(selector="dps"))
    ids, _ = handed_batch(sampler)
    shaped = [0.1, 0.1, 0.1, 0.1] + [1.0] * 12  # countdown's "formatted but wrong" is not 10% right
    with pytest.raises(ValueError, match=r"token_level_scores.*gave 0\.1.*exactly 0 or 1.*'acc'.*success_threshold"):
        sampler.update(step_batch(ids, shaped, key="scores"))
    with pytest.raises(ValueError, match=r"non_tensor_batch\['acc'\] gave 0\.5"):
        sampler.update(step_batch(ids, [0.5] * 16))
    with pytest.raises(ValueError, match="NaN"):
        sampler.update(step_batch(ids, [np.nan] + [1.0] * 15))
    assert sampler.selector.steps == 0
    explicit = mverl.SelectorCurriculumSampler(FakeRLHFDataset(8), config(selector="dps", success_threshold=1.0))
    ids, _ = handed_batch(explicit)
    calls = spy_updates(explicit.selector)
    explicit.update(step_batch(ids, shaped, key="scores"))
    np.testing.assert_allclose(calls[0][1][np.argsort(np.argsort(ids))], [0.0, 1.0, 1.0, 1.0])


def dapo_step(sampler, it, rewards_of, rollout_n=4, update=None):
    """One step of verl's DAPO recipe trainer (``RayDAPOTrainer.fit``, verl-recipe ``dapo/dapo_ray_trainer.py``)
    with ``algorithm.filter_groups.enable=True``: pull generation batches, keep the groups whose metric has a
    non-zero std, until ``train_batch_size`` prompts are kept. The recipe itself never calls
    ``sampler.update`` (``update=None``); ``"filtered"`` feeds each generation batch's kept groups,
    ``"unfiltered"`` each generation batch as scored, before the filter. Returns the generation batches."""
    kept, pulled = 0, []
    while kept < sampler.batch_size:
        ids = [next(it) for _ in range(sampler.batch_size)]
        pulled.append(ids)
        new_batch = step_batch(ids, [r for i in ids for r in rewards_of(i)], n=rollout_n)
        if update == "unfiltered":
            sampler.update(new_batch)
        index, acc = new_batch.non_tensor_batch["index"], new_batch.non_tensor_batch["acc"]
        mixed = [i for i in ids if np.std(acc[index == i]) > 0]
        keep = np.isin(index, mixed)
        if update == "filtered":
            sampler.update(FakeDataProto({}, {"index": index[keep], "acc": acc[keep]}))
        kept += len(mixed)
    return pulled


def test_dapo_filter_groups_is_refused_unless_fed_unfiltered():
    """With verl's DAPO filter the selector would see nothing, or only the mixed groups: refused loudly.
    Fed each generation batch before the filter, it learns the true rates."""
    def rewards_of(i):  # prompts 0-3 solved, 4-7 unsolved, 8-11 mixed
        return [1, 1, 1, 1] if i < 4 else [0, 0, 0, 0] if i < 8 else [1, 0, 0, 0]

    def fresh():
        return mverl.SelectorCurriculumSampler(list(range(12)), {**config(selector="uniform"), "train_batch_size": 2})

    sampler = fresh()
    with pytest.raises(RuntimeError, match="before update.*filter_groups"):  # the recipe's order: no update
        for _ in range(3):
            dapo_step(sampler, iter(sampler), rewards_of)
    sampler = fresh()
    with pytest.raises(ValueError, match="filter_groups"):  # update added after the filter: filtered batch
        for _ in range(3):
            dapo_step(sampler, iter(sampler), rewards_of, update="filtered")
    assert sampler.selector.steps == 0
    sampler = fresh()
    calls = spy_updates(sampler.selector)
    it = iter(sampler)
    pulled = dapo_step(sampler, it, rewards_of, update="unfiltered") + dapo_step(sampler, it, rewards_of,
                                                                                 update="unfiltered")
    assert [c[0].tolist() for c in calls] == [sorted(ids) for ids in pulled]
    for ids, rates in calls:
        np.testing.assert_allclose(rates, [np.mean(rewards_of(i)) for i in ids])


def test_verls_checkpoint_order_warns_of_the_lost_step(tmp_path):
    """verl (RayPPOTrainer.fit) saves data.pt inside the step, before sampler.update(batch): the saved state
    misses that step's rewards. The resume says so, and continues the epoch where it was."""
    torch = pytest.importorskip("torch")
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    data = list(range(12))
    sampler = mverl.SelectorCurriculumSampler(data, config(selector="dps"))
    dl = stateful.StatefulDataLoader(data, batch_size=4, sampler=sampler, num_workers=0)
    loader = iter(dl)
    sampler.update(step_batch(next(loader).tolist(), np.tile([1, 0, 0, 0], 4)))
    current = next(loader).tolist()
    torch.save(dl.state_dict(), tmp_path / "data.pt")  # verl's _save_checkpoint, then update
    sampler.update(step_batch(current, np.ones(16)))
    resumed = mverl.SelectorCurriculumSampler(data, config(selector="dps"))
    dl = stateful.StatefulDataLoader(data, batch_size=4, sampler=resumed, num_workers=0)
    dl.load_state_dict(torch.load(tmp_path / "data.pt", weights_only=False))
    with pytest.warns(UserWarning, match="misses that one step of feedback"):
        batches = list(dl)  # the loader hands the state to the sampler at iter(): one batch left this epoch
    assert len(batches) == 1 and resumed.selector.steps == 1


def test_loaded_state_is_validated():
    sampler = mverl.SelectorCurriculumSampler(FakeRLHFDataset(12), config(selector="dps"))
    ids, _ = handed_batch(sampler)
    sampler.update(step_batch(ids, np.tile([1, 0, 0, 0], 4)))
    good = sampler.state_dict()

    def fresh():
        return mverl.SelectorCurriculumSampler(FakeRLHFDataset(12), config(selector="dps"))

    fresh().load_state_dict(good)
    bad_states = {
        "not a SelectorCurriculumSampler state": [1, 2],
        "has num_prompts=13": {**good, "num_prompts": 13},
        "has batch_size=2": {**good, "batch_size": 2},
        r"batches_done=7": {**good, "batches_done": 7},
        r"batches_done=1\.5": {**good, "batches_done": 1.5},
        "pending prompt ids outside": {**good, "pending": np.array([12])},
        "'alpha' holds NaN": {**good, "selector": {**good["selector"],
                                                   "alpha": np.full_like(good["selector"]["alpha"], np.nan)}},
    }
    for message, state in bad_states.items():
        with pytest.raises(ValueError, match=message):
            fresh().load_state_dict(state)


def test_selector_metrics_and_verl_logger_route(monkeypatch):
    import sys
    import types

    logged = []

    class Tracking:  # verl.utils.tracking.Tracking as fit() uses it: logger.log(data=metrics, step=...)
        def log(self, data, step, backend=None):
            logged.append((step, dict(data)))

    module = types.ModuleType("verl.utils.tracking")
    module.Tracking = Tracking
    for name, mod in (("verl", types.ModuleType("verl")), ("verl.utils", types.ModuleType("verl.utils")),
                      ("verl.utils.tracking", module)):
        monkeypatch.setitem(sys.modules, name, mod)
    sys.modules["verl.utils"].tracking = module

    sampler = mverl.SelectorSamplerLogic(FakeRLHFDataset(12), config(selector="dps", log_metrics=True))
    ids, it = handed_batch(sampler)
    predicted = sampler._predicted_informative
    sampler.update(step_batch(ids, np.concatenate([[1, 0, 0, 0], [1, 1, 0, 0], np.ones(8)])))
    metrics = sampler.metrics()
    assert metrics["selector/observed_informative_share"] == 0.5  # 2 of 4 prompts mixed
    assert metrics["selector/predicted_informative_share"] == pytest.approx(predicted) and 0 < predicted < 1
    assert metrics["prompts/repeat_share"] == 0.0 and metrics["prompts/distinct_total"] == 4
    assert "selector/prediction_accuracy" in metrics
    tracker = Tracking()
    tracker.log(data={"actor/loss": 1.0}, step=1)  # the step's log, right after update
    tracker.log(data={"val/score": 0.5}, step=1)  # a later log does not repeat them
    assert logged[0][1] == {"actor/loss": 1.0, **metrics} and logged[1][1] == {"val/score": 0.5}
    mverl.install_verl_logging(sampler)  # installing twice wraps once
    sampler.update(step_batch(handed_batch(sampler, it)[0], np.zeros(16)))
    Tracking().log(data={}, step=2)
    assert logged[2][1]["selector/steps"] == 2.0 and len(logged) == 3


def test_with_verls_own_classes():
    """verl's DataProto and AbstractCurriculumSampler, when verl (0.5 to 0.7: the versions with
    data.sampler.class_path) is installed."""
    pytest.importorskip("verl.experimental.dataset.sampler")
    import torch
    from verl import DataProto
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler

    assert issubclass(mverl.SelectorCurriculumSampler, AbstractCurriculumSampler)
    sampler = mverl.SelectorCurriculumSampler(FakeRLHFDataset(8, index_offset=10), config(selector="dps"))
    ids, _ = handed_batch(sampler)
    batch = DataProto.from_single_dict({"input_ids": torch.zeros(4, 3, dtype=torch.long),
                                        "index": np.array([10 + i for i in ids], dtype=object)})
    batch = batch.repeat(repeat_times=2, interleave=True)  # what RayPPOTrainer.fit does with rollout.n
    batch.non_tensor_batch["acc"] = np.array([1.0, 0.0] * 4)
    sampler.update(batch)
    assert sampler.selector.steps == 1
    with pytest.raises(RuntimeError, match="handed out no batch"):
        sampler.update(batch)
