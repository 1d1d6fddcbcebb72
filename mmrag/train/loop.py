"""The one training loop behind every `mmrag train fit` kind: epochs, resume, checkpoints, validation.

What differs between kinds (two-tower text/code, query tower only, CLIP) is the loss of a batch,
the validation MRR and how the model is saved; each passes those in. Everything a run must do
the same way lives here: shuffling by epoch seed, the learning-rate schedule, checkpoints that
a crash never tears, resuming from them, per-epoch held-out MRR, the run record.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from indexes.atomic import atomic_path

from .spec import Progress, TrainCfg, TrainResult

T = TypeVar("T")


def split_val(items: Sequence[T], cfg: TrainCfg) -> tuple[list[T], list[T]]:
    """(held-out, training) items: the first min(val_size, a fifth) are held out."""
    n_val = min(cfg.val_size, len(items) // 5)
    return list(items[:n_val]), list(items[n_val:])


def lr_at(step: int, total: int, cfg: TrainCfg) -> float:
    """Linear warm-up then linear decay to zero, computed from the step so resuming needs no state."""
    warm = max(1, int(total * cfg.warmup_ratio))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * max(0.0, (total - step) / max(1, total - warm))


def setup_torch(cfg: TrainCfg) -> None:
    """Threads and seed, the same for every kind of run."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)


def save_checkpoint(path: Path, model, optimizer, step: int) -> None:
    import torch

    with atomic_path(path) as tmp:  # a crash mid-write never leaves a torn checkpoint behind
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)


@dataclass
class Loop:
    """One run's fixed parts. `loss(indices, step)` returns the batch loss (a tensor, not yet
    backpropagated); `validate()` the held-out MRR; `after_step()` runs after each update."""

    cfg: TrainCfg
    model: Any  # a torch module: what is checkpointed
    optimizer: Any
    n_train: int
    n_val: int
    loss: Callable[[list[int], int], Any]
    validate: Callable[[], float]
    emit: Progress
    clip_grad: float | None = 1.0
    after_step: Callable[[], None] | None = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def run(self) -> TrainResult:
        """Train to the end (or `max_steps`), resuming from the checkpoint; the result, unsaved."""
        import torch

        cfg, t0 = self.cfg, time.time()
        steps_per_epoch = max(1, self.n_train // cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        step = 0
        if cfg.resume and self.checkpoint.exists():
            state = torch.load(self.checkpoint, weights_only=True, map_location="cpu")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            step = int(state["step"])
            self.emit({"event": "resume", "step": step, "checkpoint": str(self.checkpoint)})
        start_step = step
        self.emit({"event": "start", "pairs_train": self.n_train, "pairs_val": self.n_val, "steps": total})
        before = self.validate() if self.n_val and step == 0 else float("nan")
        if self.n_val:
            self.emit({"event": "validate", "epoch": 0, "val_mrr": before})
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        history: list[float] = []
        stop = min(total, cfg.max_steps if cfg.max_steps is not None else total)
        while step < stop:
            order = list(range(self.n_train))
            random.Random(cfg.seed * 1000 + step // steps_per_epoch).shuffle(order)
            self.model.train()
            for b in range(step % steps_per_epoch, steps_per_epoch):
                if step >= stop:
                    break
                loss = self.loss(order[b * cfg.batch_size : (b + 1) * cfg.batch_size], step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr_at(step, total, cfg)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, self.clip_grad)
                self.optimizer.step()
                if self.after_step is not None:
                    self.after_step()
                step += 1
                if step % 10 == 0 or step == 1:
                    lr = lr_at(step - 1, total, cfg)
                    self.emit({"event": "step", "step": step, "loss": float(loss.detach()), "lr": lr})
                if step % cfg.checkpoint_every == 0 or step == stop:
                    save_checkpoint(self.checkpoint, self.model, self.optimizer, step)
                    self.emit({"event": "checkpoint", "step": step, "path": str(self.checkpoint)})
            if step % steps_per_epoch == 0 and self.n_val:
                history.append(self.validate())
                self.emit({"event": "validate", "epoch": step // steps_per_epoch, "val_mrr": history[-1]})
        return TrainResult(
            output_dir=str(self.out),
            val_mrr=history,
            val_mrr_before=before,
            steps=step,
            start_step=start_step,
            finished=step >= total,
            pairs_train=self.n_train,
            pairs_val=self.n_val,
            seconds=round(time.time() - t0, 1),
        )

    def finish(self, result: TrainResult) -> TrainResult:
        """After the model is saved: the run record, checkpoints dropped once finished, `done`."""
        record = {"config": asdict(self.cfg), "result": asdict(result)}
        before = result.val_mrr_before
        record["result"]["val_mrr_before"] = None if before != before else before  # NaN is not JSON
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "mmrag_train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if result.finished:
            shutil.rmtree(self.out / "checkpoints", ignore_errors=True)
        self.emit(
            {
                "event": "done",
                "output_dir": str(self.out),
                "val_mrr": result.val_mrr,
                "finished": result.finished,
            }
        )
        return result
