"""What a selector does to the data: which prompts were trained on, how often, how recently."""

from __future__ import annotations

import numpy as np

from mmdps.selection.state_checks import DAMAGED, check_state_value

HISTORY_KEYS = ("visits", "last_step", "step", "distinct", "total", "repeat_share")
REPEAT_WINDOW = 5  # steps looked back by prompts/repeat_share


class TrainingHistory:
    """Per-prompt visit counts and the step each prompt was last trained on (O(B) work per step).

    ``diagnostics()`` after each ``record``:

    * ``prompts/distinct_total``: distinct prompts trained on so far;
    * ``prompts/repeat_share``: share of this step's prompts also trained on in the previous
      ``REPEAT_WINDOW`` steps (a selector that keeps re-selecting a small working set scores high;
      uniform sampling over a pool of N prompts with B per step scores about 5B/N early in a pass);
    * ``prompts/mean_visits``: trained prompt-visits so far / distinct prompts trained.
    """

    def __init__(self, num_prompts: int) -> None:
        self.visits = np.zeros(num_prompts, dtype=np.int32)
        self.last_step = np.full(num_prompts, -1, dtype=np.int32)
        self.step = 0
        self.distinct = 0
        self.total = 0  # trained prompt-visits
        self._repeat_share = float("nan")

    def record(self, ids: np.ndarray) -> None:
        self.step += 1
        last = self.last_step[ids]
        recent = (last >= 0) & (self.step - last <= REPEAT_WINDOW)
        self._repeat_share = float(recent.mean()) if ids.size else float("nan")
        self.distinct += int(np.count_nonzero(self.visits[ids] == 0))
        self.visits[ids] += 1
        self.total += int(ids.size)
        self.last_step[ids] = self.step

    def diagnostics(self) -> dict[str, float]:
        return {"prompts/distinct_total": float(self.distinct), "prompts/repeat_share": self._repeat_share,
                "prompts/mean_visits": self.total / self.distinct if self.distinct else float("nan")}

    def state(self) -> dict[str, np.ndarray]:
        return {"visits": self.visits, "last_step": self.last_step, "step": np.array(self.step),
                "distinct": np.array(self.distinct), "total": np.array(self.total),
                "repeat_share": np.array(self._repeat_share)}

    def check(self, arrays: dict[str, np.ndarray]) -> None:
        """Raise ``ValueError`` naming the key unless ``arrays`` (from ``state()``) fit this history."""
        for key in ("visits", "last_step"):
            if arrays[key].shape != getattr(self, key).shape:
                raise ValueError(f"state_dict['history_{key}'] has shape {arrays[key].shape}, "
                                 f"expected {getattr(self, key).shape}")
        for key in ("visits", "step", "distinct", "total"):
            check_state_value("history_" + key, arrays[key], "count")
        last = np.asarray(arrays["last_step"], dtype=np.float64)
        if last.size and not (np.all(last == np.round(last)) and last.min() >= -1):  # -1: never trained
            raise ValueError(f"state_dict['history_last_step'] must hold whole numbers >= -1, got {last.min()!r}: "
                             f"{DAMAGED}")
        check_state_value("history_repeat_share", arrays["repeat_share"], "share")

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.check(arrays)
        for key in ("visits", "last_step"):
            setattr(self, key, arrays[key].astype(getattr(self, key).dtype, copy=True))
        self.step = int(arrays["step"])
        self.distinct = int(arrays["distinct"])
        self.total = int(arrays["total"])
        self._repeat_share = float(arrays["repeat_share"])
