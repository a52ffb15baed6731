"""The training loop shared by contrastive pretraining and segment fine-tuning, on accelerate.

One loop, written for what the original code got wrong: every trainable parameter is in an optimizer group (the
projection included), the optimizer steps with or without mixed precision, the scheduler steps once per optimizer
step, nothing resets the temperature between epochs, gradients of every parameter are synchronised across processes
(the whole model is prepared by accelerate), and a resumed run continues with exactly the losses of an uninterrupted
one (model, optimizer, scheduler, RNG and loop position are all checkpointed; the data order is seeded per epoch).

Subclasses say what a batch's loss is (`compute_loss`) and what validation measures (`evaluate`).
"""

from __future__ import annotations

import abc
import copy
import json
import logging
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_cosine_with_hard_restarts_schedule_with_warmup,
)

from ..optimization import build_parameter_groups
from .arguments import TrainingArguments, group_settings

logger = logging.getLogger(__name__)

OPTIMIZERS = {"adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}
SCHEDULERS = ("cosine_with_warmup", "cosine_warm_restarts", "constant")
LOWER_IS_BETTER = re.compile(r"(loss|mae|rmse|rank|error)")


class TrainState:
    """Where the loop is; checkpointed with the model so a resumed run picks up at the same micro-batch."""

    def __init__(self) -> None:
        self.epoch = 0
        self.step_in_epoch = 0  # micro-batches of the current epoch already consumed
        self.global_step = 0  # optimizer steps
        self.best_metric: float | None = None
        self.best_step: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


class DeepCoroTrainer(abc.ABC):
    """Train `model` on `train_dataset` (already decoding through a transform) and validate on `eval_dataset`."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor,
        train_dataset,
        eval_dataset,
        args: TrainingArguments,
        num_workers: int = 0,
        accelerator: Accelerator | None = None,
    ) -> None:
        if args.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {args.optimizer!r}")
        if args.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {args.scheduler!r}")
        self.args = args
        self.output_dir = Path(args.output_dir)
        self.processor = processor
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.accelerator = accelerator or self.make_accelerator(args)
        self.state = TrainState()
        self.model = model
        self.num_workers = num_workers
        self.loader_generator = torch.Generator()

    @staticmethod
    def make_accelerator(args: TrainingArguments) -> Accelerator:
        return Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            log_with=args.log_with or None,
            project_config=ProjectConfiguration(
                project_dir=args.output_dir, automatic_checkpoint_naming=True, total_limit=args.save_total_limit
            ),
            # Seeded, epoch-dependent shuffling: what makes a resumed epoch replay the same batches.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
            # The scheduler is stepped by hand, once per optimizer step, whatever the number of processes.
            step_scheduler_with_optimizer=False,
        )

    # ------------------------------------------------------------------------------------------------------------
    # What subclasses define
    # ------------------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """The loss of one micro-batch."""

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
        """Validation metrics over `loader` (gathered from every process), in eval mode without gradients."""

    def log_extra(self, model: torch.nn.Module) -> dict[str, float]:
        """Values logged with the training loss (e.g. the temperature)."""
        return {}

    # ------------------------------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        # Its own generator, re-seeded every epoch: creating an iterator draws the workers' base seed from it instead of
        # from the global generator, which a resumed run restores to the checkpoint's state — so the resumed run's
        # dropout and augmentation draws line up with the uninterrupted run's.
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers, collate_fn=collate,
            generator=self.loader_generator,
        )

    def _schedule(self, optimizer: torch.optim.Optimizer, total_steps: int):
        warmup = int(self.args.warmup_ratio * total_steps)
        if self.args.scheduler == "cosine_with_warmup":
            return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
        if self.args.scheduler == "cosine_warm_restarts":
            return get_cosine_with_hard_restarts_schedule_with_warmup(
                optimizer, warmup, total_steps, num_cycles=self.args.restart_cycles
            )
        return get_constant_schedule_with_warmup(optimizer, warmup)

    def _greater_is_better(self) -> bool:
        if self.args.greater_is_better is not None:
            return self.args.greater_is_better
        return not LOWER_IS_BETTER.search(self.args.metric_for_best_model)

    def _write_metrics(self, record: dict[str, Any]) -> None:
        # Undefined metrics (NaN, e.g. an AUROC without positives) are written as null: the file stays strict JSON.
        record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                             step=self.state.global_step)

    def train(self) -> dict[str, Any]:
        args, accelerator = self.args, self.accelerator
        train_loader = self._loader(self.train_dataset, args.per_device_batch_size, shuffle=True)
        eval_loader = None
        if self.eval_dataset is not None:
            eval_loader = self._loader(self.eval_dataset, args.per_device_eval_batch_size or args.per_device_batch_size, False)
        optimizer = OPTIMIZERS[args.optimizer](
            build_parameter_groups(
                self.model, args.learning_rate, args.weight_decay,
                learning_rates=group_settings(args, "lr"), weight_decays=group_settings(args, "wd"),
            )
        )
        # Per-process batches after sharding, hence prepare() before counting the steps.
        model, optimizer, train_loader = accelerator.prepare(self.model, optimizer, train_loader)
        if eval_loader is not None:
            eval_loader = accelerator.prepare(eval_loader)
        steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
        total_steps = args.max_steps or steps_per_epoch * args.num_epochs
        num_epochs = math.ceil(total_steps / steps_per_epoch)
        scheduler = accelerator.prepare(self._schedule(optimizer, total_steps))
        accelerator.register_for_checkpointing(self.state)
        if args.resume_from_checkpoint:
            self._resume(args.resume_from_checkpoint)
        if args.log_with:
            accelerator.init_trackers("deepcoro", config={k: v for k, v in asdict(args).items() if isinstance(v, (int, float, str, bool))})

        progress = tqdm(total=total_steps, initial=self.state.global_step, disable=not accelerator.is_local_main_process,
                        desc="training")
        model.train()
        running, micro_batches = torch.zeros((), device=accelerator.device), 0
        done = self.state.global_step >= total_steps
        while not done and self.state.epoch < num_epochs:
            self.loader_generator.manual_seed(args.seed + self.state.epoch)
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(self.state.epoch)
            loader = train_loader
            if self.state.step_in_epoch:
                loader = accelerator.skip_first_batches(train_loader, self.state.step_in_epoch)
            for batch in loader:
                with accelerator.accumulate(model):
                    loss = self.compute_loss(model, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and args.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad()
                self.state.step_in_epoch += 1
                running += loss.detach().float()
                micro_batches += 1
                if not accelerator.sync_gradients:
                    continue
                self.state.global_step += 1
                progress.update(1)
                mean_loss = accelerator.reduce(running / micro_batches, reduction="mean").item()
                running.zero_()
                micro_batches = 0
                progress.set_postfix(loss=f"{mean_loss:.4f}")
                if self.state.global_step % args.logging_steps == 0:
                    self._write_metrics({
                        "step": self.state.global_step, "epoch": self.state.epoch, "train_loss": mean_loss,
                        "learning_rate": scheduler.get_last_lr()[0], **self.log_extra(model),
                    })
                if args.checkpointing_steps and self.state.global_step % args.checkpointing_steps == 0:
                    self._checkpoint()
                if self.state.global_step >= total_steps:
                    done = True
                    break
            if self.state.step_in_epoch >= len(train_loader):  # the epoch ran to its end
                self.state.epoch += 1
                self.state.step_in_epoch = 0
            self._validate(model, eval_loader)
            self._checkpoint()
        progress.close()
        final = self._finish(model)
        accelerator.end_training()
        return final

    def _checkpoint(self) -> None:
        """save_state, once per position of the loop (an epoch end may coincide with a checkpointing step)."""
        position = (self.state.epoch, self.state.step_in_epoch, self.state.global_step)
        if position != getattr(self, "_saved_position", None):
            self.accelerator.save_state()
            self._saved_position = position

    def _resume(self, checkpoint: str) -> None:
        accelerator = self.accelerator
        folder = None if checkpoint == "latest" else checkpoint
        if folder is None:
            found = sorted((self.output_dir / "checkpoints").glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[-1]))
            if not found:
                raise FileNotFoundError(f"no checkpoint to resume from in {self.output_dir / 'checkpoints'}")
            folder = str(found[-1])
        accelerator.load_state(folder)
        # load_state does not advance accelerate's checkpoint counter: the next save would collide with this one.
        index = re.search(r"checkpoint_(\d+)$", str(folder).rstrip("/"))
        if index:
            accelerator.project_configuration.iteration = int(index.group(1)) + 1
        logger.info("resumed from %s at epoch %d, step %d", folder, self.state.epoch, self.state.global_step)

    def _validate(self, model: torch.nn.Module, eval_loader: DataLoader | None) -> None:
        if eval_loader is None:
            return
        model.eval()
        with torch.no_grad():
            metrics = self.evaluate(model, eval_loader)
        model.train()
        self._write_metrics({"step": self.state.global_step, "epoch": self.state.epoch,
                             **{f"eval_{k}": v for k, v in metrics.items()}})
        name = self.args.metric_for_best_model
        if name not in metrics:
            raise ValueError(f"metric_for_best_model {name!r} is not among the validation metrics {sorted(metrics)}")
        value = metrics[name]
        better = self.state.best_metric is None or (
            value > self.state.best_metric if self._greater_is_better() else value < self.state.best_metric
        )
        if math.isnan(value):
            logger.warning("validation %s is undefined (NaN) at step %d: best_model not updated", name, self.state.global_step)
        elif better:
            self.state.best_metric, self.state.best_step = value, self.state.global_step
            self.save_model(model, self.output_dir / "best_model", final=False)

    def save_model(self, model: torch.nn.Module, directory: Path, final: bool) -> None:
        """`save_pretrained` of the model and the processor (main process). A LoRA model is saved merged, so the folder
        loads with `AutoModel`, with its adapter alone in `adapter/`."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        unwrapped = self.accelerator.unwrap_model(model)
        directory.mkdir(parents=True, exist_ok=True)
        if hasattr(unwrapped, "merge_and_unload"):  # a peft model
            unwrapped.save_pretrained(directory / "adapter")
            merged = (unwrapped if final else copy.deepcopy(unwrapped)).merge_and_unload()
            merged.save_pretrained(directory)
        else:
            unwrapped.save_pretrained(directory)
        if self.processor is not None:
            self.processor.save_pretrained(directory)

    def _finish(self, model: torch.nn.Module) -> dict[str, Any]:
        """Final model, and a check that every process ends with the same parameters (they must, under DDP)."""
        parameters = [p.detach().double().sum() for p in self.accelerator.unwrap_model(model).parameters()]
        checksum = torch.stack(parameters).sum().reshape(1).to(self.accelerator.device)
        checksums = self.accelerator.gather(checksum).tolist()
        if len(set(checksums)) > 1:
            raise RuntimeError(f"processes ended with different parameters (checksums {checksums}): gradients were not synchronised")
        self.save_model(model, self.output_dir / "final_model", final=True)
        final = {"step": self.state.global_step, "epoch": self.state.epoch, "parameter_checksums": checksums,
                 "num_processes": self.accelerator.num_processes, "best_metric": self.state.best_metric,
                 "best_step": self.state.best_step}
        self._write_metrics(final)
        return final


def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep strings (study ids) as lists."""
    batch = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch before the model is built, so initialisation is reproducible too."""
    set_seed(seed)


__all__ = ["DeepCoroTrainer", "TrainState", "collate", "seed_everything"]
