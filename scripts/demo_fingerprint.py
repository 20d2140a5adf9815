"""Fingerprint of the CPU demo's numerics on this machine: SHA-256 of the demo model's initial weights and
of its weights after a few SFT steps, plus the SFT losses (printed and written as JSON).

Two machines (or settings) whose fingerprints match compute the same demo, bit for bit; any difference
grows over training like a change of seed (docs/demo.md, "What is reproducible"). Compare settings on
one machine by re-running it with another thread count or instruction set:

    python scripts/demo_fingerprint.py --steps 3 --threads 1
    python scripts/demo_fingerprint.py --steps 3 --threads 2
    ATEN_CPU_CAPABILITY=avx2 python scripts/demo_fingerprint.py --steps 3 --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path


def weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="SFT steps (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="demo seed (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="also write the fingerprint as JSON here")
    args = parser.parse_args()

    import torch
    import transformers

    from mmdps.demos import RECIPES
    from mmdps.sft import supervised_warmup

    recipe = RECIPES["countdown"]
    torch.set_num_threads(args.threads)
    settings = recipe.settings(seed=args.seed, threads=args.threads, progress=False)
    torch.manual_seed(settings.seed)
    data = recipe.make_data(settings)
    tokenizer = recipe.build_processor()
    model = recipe.build_model(tokenizer, settings)
    initial = weights_digest(model)
    prompts, targets = recipe.sft_examples(data.sft, tokenizer)
    losses: list[float] = []
    start = time.perf_counter()
    supervised_warmup(model, prompts, targets, pad_token_id=tokenizer.pad_token_id, max_steps=args.steps,
                      batch_size=settings.sft_batch_size, lr=settings.sft_lr, seed=settings.seed,
                      on_step=lambda step, loss: losses.append(float(loss)))
    record = {
        "torch": torch.__version__, "transformers": transformers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": args.threads,
        "machine": platform.machine(), "seed": args.seed, "steps": args.steps,
        "initial_weights": initial, "weights_after_sft": weights_digest(model),
        "losses": [f"{loss:.9f}" for loss in losses], "seconds": round(time.perf_counter() - start, 2),
    }
    print(json.dumps(record, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
