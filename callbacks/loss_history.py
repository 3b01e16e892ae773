"""Write each epoch's validation loss to `<run_dir>/val_loss.json` (used by train_all's summary and tests)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from uhrtex.common.io import write_text_atomic


class LossHistory(L.Callback):
    def __init__(self, path: str, monitor: str = "val/loss"):
        self.path, self.monitor = Path(path), monitor
        self.history: list[float] = []

    def on_validation_end(self, trainer, pl_module):  # epoch metrics are final here (as for ModelCheckpoint)
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not trainer.is_global_zero:
            return
        self.history.append(float(value))
        write_text_atomic(self.path, json.dumps({"monitor": self.monitor, "values": self.history}))

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = list(state.get("history", []))
