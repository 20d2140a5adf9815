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
