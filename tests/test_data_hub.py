"""Hub ids as training and eval sources: a path that does not exist is read as ``owner/name[@split]``
through ``datasets.load_dataset`` (stubbed here), and a failure names both readings without a retry loop."""

from __future__ import annotations

import io
import time

import datasets
import pytest
from PIL import Image

from mmdps import tasks
from mmdps.data import hub
from mmdps.data.hub import HubSourceError, parse_hub_id


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), "white").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []
    tables = {
        "hiyouga/geometry3k": [{"images": [{"bytes": png(), "path": None}], "problem": "<image>Find x.",
                                "answer": "12"}],
        "someone/math": [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": "4"}],
    }

    def load_dataset(path, name=None, *, split=None):
        calls.append((path, name, split, datasets.config.HF_HUB_OFFLINE))
        if path not in tables:
            raise ConnectionError(f"Couldn't reach '{path}' on the Hub")
        return datasets.Dataset.from_list(tables[path])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_ids_parse_with_an_optional_split():
    assert parse_hub_id("hiyouga/geometry3k") == ("hiyouga/geometry3k", None)
    assert parse_hub_id("openai/gsm8k@test") == ("openai/gsm8k", "test")
    assert parse_hub_id("data/math/train.json") is None and parse_hub_id("train.json") is None


def test_task_packs_read_a_hub_id_where_a_path_would_go(fake_hub, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing named hiyouga/geometry3k here
    (item,) = tasks.get("geometry").load("hiyouga/geometry3k", split="train")
    assert item.ground_truth == "12" and item.images[0].size == (30, 20)
    assert fake_hub[-1][:3] == ("hiyouga/geometry3k", None, "train")
    items = tasks.get("math").load("someone/math@test", split="train")  # @split wins over the split argument
    assert [i.ground_truth for i in items] == ["2", "4"] and fake_hub[-1][:3] == ("someone/math", None, "test")


def test_a_local_folder_of_that_name_wins_over_the_hub(fake_hub, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "math").write_text('[{"problem": "local?", "answer": "7"}]')
    with pytest.raises(ValueError, match="unknown data file type"):  # the local file is read, not the hub
        tasks.get("math").load("someone/math")
    assert fake_hub == []


def test_a_missing_source_names_the_local_path_and_the_hub_error_at_once(fake_hub, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "hub_unreachable", lambda: "huggingface.co is not reachable (no network)")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    started = time.perf_counter()
    with pytest.raises(HubSourceError) as caught:
        tasks.get("math").load("data/train.json")
    message = str(caught.value)
    assert f"as a local path, {tmp_path}/data/train.json does not exist" in message
    assert "as a hub dataset id: could not load the hub dataset 'data/train.json'" in message
    assert "huggingface.co is not reachable" in message and "only the local datasets cache was read" in message
    assert fake_hub[-1][3] is True  # datasets ran in offline mode: no retry loop
    assert datasets.config.HF_HUB_OFFLINE is False  # and put back afterwards
    assert time.perf_counter() - started < 5
    with pytest.raises(FileNotFoundError, match=r"nowhere/deeper/x\.json does not exist, and .* not a hub dataset"):
        tasks.get("math").load("nowhere/deeper/x.json")


def test_hf_hub_offline_is_honoured_without_probing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.hub_unreachable.cache_clear()
    try:
        assert hub.hub_unreachable() == "HF_HUB_OFFLINE is set"
    finally:
        hub.hub_unreachable.cache_clear()


def test_behind_a_proxy_the_hub_is_not_probed(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setattr(hub.socket, "create_connection", lambda *a, **k: pytest.fail("probed"))
    hub.hub_unreachable.cache_clear()
    try:
        assert hub.hub_unreachable() is None
    finally:
        hub.hub_unreachable.cache_clear()
