"""Run logging: ``metrics.jsonl`` always, TensorBoard / W&B when asked, a rich progress bar, and
sampled completions on disk.

TensorBoard and W&B are optional extras imported only when ``report_to`` names them; a missing
package is reported by :func:`check_report_to` (called when the config is validated, before any
model loads) with the extra to install.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """Plain python for numpy / torch scalars and arrays; non-finite floats become None (valid JSON)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy / torch
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# report_to sink -> the module it needs
_SINK_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_report_to(report_to: Iterable[str]) -> None:
    """Raise ``ValueError`` when a ``report_to`` sink's package is not installed, naming the extra."""
    for sink in report_to:
        module = _SINK_MODULES.get(sink)
        if module is not None and importlib.util.find_spec(module) is None:
            raise ValueError(f"report_to includes {sink!r} but {module} is not installed: pip install "
                             f"'mmdps[{sink}]', or remove {sink!r} from report_to")


#: The console's metrics line: (metrics key, label, format), in order; absent keys are left out.
CONSOLE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("reward_mean", "reward", "{:.3f}"), ("acc_mean", "acc", "{:.3f}"), ("format_mean", "format", "{:.2f}"),
    ("effective_ratio", "effective", "{:.0%}"), ("completion_length_mean", "len", "{:.1f}"),
    ("loss", "loss", "{:.4f}"), ("kl", "kl_ref", "{:.2e}"), ("approx_kl", "kl_old", "{:.2e}"),
    ("grad_norm", "grad", "{:.3f}"), ("lr", "lr", "{:.2e}"), ("selector/prediction_accuracy", "sel_acc", "{:.2f}"),
    ("rollouts_total", "rollouts", "{:,}"), ("reward/verifier_errors", "verifier_errors", "{:,}"),
    ("reward/verifier_timeouts", "verifier_timeouts", "{:,}"), ("time/step", "s/step", "{:.2f}"),
)
#: Shown only when non-zero (a count of problems: a steady 0 is noise on every line).
CONSOLE_IF_NONZERO = frozenset({"reward/verifier_errors", "reward/verifier_timeouts"})
RUN_CONFIG_FILE = "config.yaml"


def metrics_line(step: int, max_steps: int, metrics: Mapping[str, Any]) -> str:
    """One compact console line of a step's metrics (what TRL and verl print every ``logging_steps``)."""
    parts = [f"step {step}/{max_steps}"]
    for key, label, fmt in CONSOLE_METRICS:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                and not (key in CONSOLE_IF_NONZERO and value == 0):
            parts.append(f"{label} {fmt.format(value)}")
    return " | ".join(parts)


def eval_line(step: int, metrics: Mapping[str, Any]) -> str | None:
    """The in-training evaluation's results as one console line (None when the step did not evaluate)."""
    if "eval/mean_at_n" not in metrics:
        return None
    parts = [f"eval at step {step}: mean@n {metrics['eval/mean_at_n']:.3f}"]
    if "eval/mean_at_n_stderr" in metrics:
        parts[0] += f" ± {metrics['eval/mean_at_n_stderr']:.3f}"
    passes = sorted((int(key.split("@")[1]), value) for key, value in metrics.items() if key.startswith("eval/pass@"))
    parts += [f"pass@{k} {value:.3f}" for k, value in passes]
    for key, label, fmt in (("eval/format_error_rate", "format errors", "{:.1%}"),
                            ("eval/truncation_rate", "truncated", "{:.1%}"), ("eval/seconds", "s", "{:.1f}")):
        if key in metrics:
            parts.append(f"{label} {fmt.format(metrics[key])}")
    return " | ".join(parts)


def config_yaml(config: Mapping[str, Any]) -> str:
    """A resolved config as YAML, keys in declaration order (plain values: lists, dicts, null)."""
    import yaml

    return yaml.safe_dump(to_jsonable(dict(config)), sort_keys=False, default_flow_style=None, width=120)


def write_run_config(output_dir: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    """Write ``<output_dir>/config.yaml``: the resolved config, which ``mmdps train --config`` reads back
    (give it another ``output_dir=...`` to repeat the run rather than resume it)."""
    path = Path(output_dir) / RUN_CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# The resolved config of this run. Repeat the run with\n"
              f"#   mmdps train --config {path} output_dir=<another folder>\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + config_yaml(config), encoding="utf-8")
    os.replace(tmp, path)
    return path


class MetricsLogger:
    """Writes one JSON line per ``log`` call to ``<output_dir>/metrics.jsonl`` and mirrors scalars to
    TensorBoard and/or W&B. Only the main process should create one with ``enabled=True``."""

    def __init__(self, output_dir: str | os.PathLike, *, report_to: Iterable[str] = (), run_name: str | None = None,
                 config: Mapping[str, Any] | None = None, wandb_project: str | None = None, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        run_name = run_name or Path(output_dir).resolve().name
        report_to = list(report_to)
        check_report_to(report_to)
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))
        if "wandb" in report_to:
            import wandb

            self._wandb = wandb.init(project=wandb_project or "mmdps", name=run_name,
                                     config=to_jsonable(dict(config or {})), dir=str(output_dir), resume="allow")

    def truncate_after(self, step: int) -> None:
        """Drop lines with ``step > step`` (written after the checkpoint a resumed run restarts from)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **to_jsonable(dict(metrics))}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, global_step=step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def read_metrics(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of ``<output_dir>/metrics.jsonl``."""
    path = Path(output_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_samples(output_dir: str | os.PathLike, step: int, records: list[dict[str, Any]]) -> Path:
    """Write sampled completions of ``step`` to ``<output_dir>/samples/step_XXXX.jsonl``."""
    folder = Path(output_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:04d}.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(to_jsonable(record), ensure_ascii=False) + "\n")
    return path


class ProgressBar:
    """The one progress bar of the library (training, SFT warm-up, evaluation): a rich bar with a label, done
    / total, elapsed time, ETA and a text of live figures; silent when disabled.

    ``update(done, text="reward 0.41 | acc 0.38")`` moves it; the trainer passes :func:`step_figures`.
    """

    def __init__(self, total: int, *, start: int = 0, enabled: bool = True, label: str = "GRPO"):
        self.enabled = enabled
        self._progress: Any = None  # a rich Progress while enabled
        self._task: Any = None  # its TaskID
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[text]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                  TimeRemainingColumn())
        self._task = self._progress.add_task(label, total=total, completed=start, text="")
        self._progress.start()

    def update(self, done: int, text: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, text=text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def step_figures(metrics: Mapping[str, Any]) -> str:
    """The training bar's live figures: reward, accuracy and effective-sample ratio of the last step."""
    return (f"reward {_fmt(metrics.get('reward_mean'))} | acc {_fmt(metrics.get('acc_mean'))} | "
            f"effective {_fmt(metrics.get('effective_ratio'), percent=True)}")


def _fmt(value: float | None, percent: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
        return "-"
    return f"{100 * value:.0f}%" if percent else f"{value:.3f}"
