"""A LoRA run's checkpoint holds only the adapter; `load_policy` (and so `mmdps eval`) must load it by
merging it into the base model it names."""

import json
import shutil

import pytest
import torch

from mmdps.checkpoint import save_checkpoint
from mmdps.cli import main
from mmdps.models.loading import apply_lora, is_lora_adapter, load_policy
from mmdps.selection import make_selector
from tiny_models import build


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory):
    """A checkpoint written by `save_checkpoint` for a LoRA model with non-zero adapter weights, and the
    logits of that peft model on a fixed input."""
    base = build("qwen2", hidden_size=32, num_layers=1, num_heads=2, vocab="byte")
    model, tokenizer = load_policy(base)
    model = apply_lora(model, r=4, alpha=8)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, param in model.named_parameters():
            if "lora_" in name:  # lora_B starts at zero: without this the adapter would be a no-op
                param.add_(torch.randn_like(param) * 0.5)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    output_dir = tmp_path_factory.mktemp("lora-run")
    checkpoint = save_checkpoint(output_dir, 3, model=model, optimizer=optimizer, scheduler=scheduler,
                                 selector=make_selector("uniform", 4, seed=0), item_ids=[0, 1, 2, 3],
                                 trainer_state={}, processor=tokenizer)
    input_ids = tokenizer("12 + 30 = 42", return_tensors="pt").input_ids
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
    return {"folder": checkpoint / "model", "base": base, "input_ids": input_ids, "logits": logits}


def test_checkpoint_of_a_lora_run_is_an_adapter_folder(trained_adapter):
    folder = trained_adapter["folder"]
    assert is_lora_adapter(folder) and not (folder / "config.json").exists()
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(trained_adapter["base"])


def test_load_policy_merges_the_adapter_into_its_base(trained_adapter):
    model, tokenizer = load_policy(trained_adapter["folder"])
    assert not hasattr(model, "peft_config")  # merged: a plain transformers model
    assert not any("lora_" in name for name, _ in model.named_parameters())
    model.eval()
    with torch.no_grad():
        merged = model(input_ids=trained_adapter["input_ids"]).logits
    torch.testing.assert_close(merged, trained_adapter["logits"], rtol=1e-4, atol=1e-4)
    base_model, _ = load_policy(trained_adapter["base"])
    with torch.no_grad():
        plain = base_model(input_ids=trained_adapter["input_ids"]).logits
    assert not torch.allclose(plain, merged, atol=1e-3)  # the adapter did change the model
    assert tokenizer.pad_token_id is not None and model.generation_config.eos_token_id is not None


def test_an_adapter_without_its_processor_takes_the_base_tokenizer(trained_adapter, tmp_path):
    folder = tmp_path / "adapter-only"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(trained_adapter["folder"] / name, folder / name)
    model, tokenizer = load_policy(folder)
    assert tokenizer.get_vocab() == load_policy(trained_adapter["base"])[1].get_vocab()
    with torch.no_grad():
        merged = model.eval()(input_ids=trained_adapter["input_ids"]).logits
    torch.testing.assert_close(merged, trained_adapter["logits"], rtol=1e-4, atol=1e-4)


def test_an_adapter_whose_base_is_missing_names_it(trained_adapter, tmp_path):
    folder = tmp_path / "moved"
    shutil.copytree(trained_adapter["folder"], folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone-base")
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="trained on base model .*gone-base.*base_model_name_or_path"):
        load_policy(folder)


def test_load_policy_points_from_a_lora_checkpoint_to_its_model_folder(trained_adapter):
    with pytest.raises(FileNotFoundError, match="pass its model folder .*checkpoint-000003/model"):
        load_policy(trained_adapter["folder"].parent)


def test_eval_cli_runs_on_an_adapter_folder(trained_adapter, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(trained_adapter["folder"]), "--task", "countdown", "--split", "tiny",
                 "--num", "2", "--limit", "2", "--n", "1", "--max-new-tokens", "4", "--max-prompt-length", "512",
                 "--output", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["num_problems"] == 2 and report["n"] == 1
    assert report["config"]["model"] == str(trained_adapter["folder"])


def test_save_merged_adapter_writes_a_full_model_folder(trained_adapter, tmp_path):
    from mmdps.models.loading import save_merged_adapter

    out = save_merged_adapter(trained_adapter["folder"], tmp_path / "merged")
    assert not is_lora_adapter(out)
    model, _ = load_policy(out)
    with torch.no_grad():
        logits = model.eval()(input_ids=trained_adapter["input_ids"]).logits
    torch.testing.assert_close(logits, trained_adapter["logits"], rtol=1e-4, atol=1e-4)


def test_eval_cli_refuses_an_adapter_for_vllm_with_the_fix(trained_adapter, tmp_path, capsys):
    code = main(["eval", "--model", str(trained_adapter["folder"]), "--task", "countdown", "--num", "2",
                 "--engine", "vllm", "--output", str(tmp_path / "eval"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps eval: error: --engine vllm") and "save_merged_adapter" in err
