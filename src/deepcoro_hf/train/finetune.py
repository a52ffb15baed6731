"""Segment fine-tuning: `DeepCoroForSegmentClassification` from a pretrained CLIP checkpoint, with a frozen encoder,
partial unfreezing (`freeze_ratio`) or LoRA, on the 18 × 5 segment tasks or a transfer task set (MACE, LVEF).

    accelerate launch -m deepcoro_hf.train.finetune --config FILE [--field value ...]
    python -m deepcoro_hf.train.finetune --config FILE ...
    deepcoro finetune --config FILE ...
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from ..configuration_deepcoro import DeepCoroClipConfig
from ..evaluation import evaluate_binary, evaluate_regression
from ..modeling_deepcoro import DeepCoroForSegmentClassification, DeepCoroVideoModel, segment_classification_loss
from ..optimization import freeze_backbone
from .arguments import DataArguments, ModelArguments, TrainingArguments, model_config_overrides, parse_config
from .data import load_splits, video_processor_for
from .trainer import DeepCoroTrainer, seed_everything

logger = logging.getLogger(__name__)

# LoRA on the MViT tower's attention (qkv, output projection) and MLP linears; the text tower is not in this model.
VIDEO_LORA_TARGETS = r"video_model\.encoder\.layers\.\d+\.(attention\.(qkv|proj)|mlp\.(fc1|fc2))"
TEXT_LORA_TARGETS = r"text_model\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)"


def build_classifier(model_args: ModelArguments) -> DeepCoroForSegmentClassification:
    """From a checkpoint (usually a pretrained CLIP model: its video tower and projection carry over, the pooling and
    heads are new) with `model_config` overriding task-level settings, or from scratch from `model_config`."""
    overrides = model_config_overrides(model_args)
    if model_args.model_name_or_path:
        overrides = check_tower_overrides(overrides, model_args.model_name_or_path)
        model = DeepCoroForSegmentClassification.from_pretrained(
            model_args.model_name_or_path, ignore_mismatched_sizes=bool(overrides), **overrides
        )
    else:
        model = DeepCoroForSegmentClassification(DeepCoroClipConfig(**overrides))
    if model_args.video_init:
        tower = DeepCoroVideoModel.from_pretrained(model_args.video_init)
        model.video_model.load_state_dict(tower.state_dict(), strict=True)
    return model


def check_tower_overrides(overrides: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    """Tower settings (`video_config`, `text_config`) may be repeated in a config file, but cannot differ from the
    checkpoint's: the weights fix the towers. Returns the overrides without them."""
    saved = DeepCoroClipConfig.from_pretrained(checkpoint)
    for name in [k for k in overrides if k.endswith("_config")]:
        tower = getattr(saved, name, None)
        wanted = overrides.pop(name) or {}
        different = {k: (v, getattr(tower, k, None)) for k, v in wanted.items() if _normalised(getattr(tower, k, None)) != _normalised(v)}
        if different:
            raise ValueError(
                f"{name} cannot change: the checkpoint {checkpoint} fixes the towers; differing (given, saved): {different}"
            )
    return overrides


def _normalised(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def adapt(model: torch.nn.Module, model_args: ModelArguments, modules_to_save: list[str], text: bool = False):
    """Partial unfreezing or LoRA (peft); returns the model to train."""
    if model_args.activation_checkpointing:
        model.activation_checkpointing_enable()
    if model_args.lora_r <= 0:
        freeze_backbone(model, model_args.freeze_ratio, tower="video")
        if text:
            freeze_backbone(model, model_args.text_freeze_ratio, tower="text")
        return model
    if model_args.freeze_ratio or model_args.text_freeze_ratio:
        raise ValueError("freeze_ratio and LoRA exclude each other: LoRA already keeps the base weights frozen")
    targets = VIDEO_LORA_TARGETS + (f"|{TEXT_LORA_TARGETS}" if text and model_args.lora_text else "")
    config = LoraConfig(
        r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
        target_modules=f"(?:{targets})", modules_to_save=modules_to_save,
    )
    model = get_peft_model(model, config)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA r=%d: %s of %s parameters trainable", model_args.lora_r, f"{trainable:,}", f"{total:,}")
    return model


class SegmentTrainer(DeepCoroTrainer):
    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(batch["pixel_values_videos"], batch["video_mask"], labels=batch["labels"]).loss

    def evaluate(self, model: torch.nn.Module, loader) -> dict[str, float]:
        """Mean loss, and per task the micro-average over every (study, segment) pair: AUROC for binary tasks, MAE for
        regression tasks. Predictions are gathered from every process without the padding duplicates."""
        logits, labels = [], []
        for batch in loader:
            out = model(batch["pixel_values_videos"], batch["video_mask"])
            gathered_logits, gathered_labels = self.accelerator.gather_for_metrics((out.logits.float(), batch["labels"]))
            logits.append(gathered_logits.cpu())
            labels.append(gathered_labels.cpu())
        logits, labels = torch.cat(logits), torch.cat(labels)
        config = self.accelerator.unwrap_model(model).config
        # The training loss, over the whole split at once.
        loss = segment_classification_loss(
            logits, labels, [config.task_types[t] for t in config.tasks], config.regression_loss_weight, config.huber_delta
        )
        logits, labels = logits.numpy(), labels.numpy()
        metrics = {"loss": float(loss)}
        for k, task in enumerate(config.tasks):
            y, prediction = labels[..., k].ravel(), logits[..., k].ravel()
            if config.task_types[task] == "binary":
                result = evaluate_binary(y, 1.0 / (1.0 + np.exp(-prediction)), n_bootstrap=0, name=task)
                metrics[f"{task}_auroc"] = result.auroc.value
            else:
                metrics[f"{task}_mae"] = evaluate_regression(y, prediction, n_bootstrap=0, name=task).mae.value
        metrics["num_studies"] = int(len(labels))
        return metrics


def main(argv: list[str] | None = None) -> int:
    data_args, model_args, training_args = parse_config(
        (DataArguments, ModelArguments, TrainingArguments), argv, description=__doc__.split("\n\n")[0]
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    seed_everything(training_args.seed)
    level = data_args.level or "studies"
    if level != "studies":
        raise ValueError(f"fine-tuning trains on studies; level={level!r} is for pretraining")
    model = build_classifier(model_args)
    processor = video_processor_for(model.config, data_args, model_args.model_name_or_path)
    train, evaluation = load_splits(data_args, processor, level="studies", labels=True, config=model.config)
    # peft wraps modules, not ModuleDicts: each task head is listed by name.
    model = adapt(model, model_args, modules_to_save=["video_projection", "mil", *(f"heads.{t}" for t in model.config.tasks)])
    trainer = SegmentTrainer(model, processor, train, evaluation, training_args, num_workers=data_args.num_workers)
    trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
