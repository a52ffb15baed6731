"""Arguments of the training entry points, and how a YAML/JSON config file plus command-line overrides become them.

Every entry point (`pretrain`, `finetune`, `evaluate`) takes `--config FILE` (YAML or JSON, flat keys named like the
fields below) followed by any `--field value` overrides; transformers' `HfArgumentParser` does the parsing, so
`--help` lists every field with its help text. Nested mappings in the file (for `model_config`) are passed on as
JSON, and lists become repeated values.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ..optimization import PARAMETER_GROUPS


@dataclass
class DataArguments:
    data_dir: str = field(metadata={"help": "DeepCORO-mini folder: studies.csv, videos.csv and the videos"})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache folder (default: datasets' own)"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_split: str | None = field(default="validation", metadata={"help": "split to evaluate on each epoch (empty: none)"})
    level: str | None = field(
        default=None,
        metadata={"help": "examples: studies (fine-tuning default), videos (pretraining default) or territories "
                          "(study-level pretraining with the left/right territory split)"},
    )
    stride: int = field(default=1, metadata={"help": "keep every stride-th frame before sampling num_frames"})
    max_videos: int | None = field(default=None, metadata={"help": "videos per study (default: the model config's)"})
    augment: bool = field(default=False, metadata={"help": "training augmentation (RandAugment, rotation, ...)"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes decoding the videos"})
    on_missing_file: str = field(default="error", metadata={"help": "error | skip (counted and logged)"})
    max_text_length: int = field(default=512, metadata={"help": "report tokens kept (pretraining)"})


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "checkpoint to start from (a saved DeepCORO folder); fine-tuning starts from a CLIP one"},
    )
    model_config: str | None = field(
        default=None,
        metadata={"help": "DeepCoroClipConfig arguments as a JSON object (or path to a JSON file): the architecture "
                          "when training from scratch, or overrides (tasks, mil_pooling, ...) of the checkpoint's"},
    )
    video_init: str | None = field(default=None, metadata={"help": "video tower checkpoint to start from (e.g. Kinetics)"})
    text_init: str | None = field(default=None, metadata={"help": "BERT checkpoint folder for the text tower"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer folder (default: text_init)"})
    freeze_ratio: float = field(default=0.0, metadata={"help": "fraction of the MViT blocks frozen, from the input"})
    text_freeze_ratio: float = field(default=0.0, metadata={"help": "fraction of the BERT layers frozen, from the input"})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0: no LoRA)"})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    lora_text: bool = field(default=True, metadata={"help": "also put LoRA on BERT's query/key/value (pretraining)"})
    activation_checkpointing: bool = field(default=False, metadata={"help": "recompute block activations in backward"})


@dataclass
class TrainingArguments:
    output_dir: str = field(metadata={"help": "where checkpoints, metrics and the final model go"})
    seed: int = field(default=42, metadata={"help": "seed of every random generator (model init, data order, ...)"})
    num_epochs: int = field(default=1, metadata={"help": "passes over the training split"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps in total"})
    per_device_batch_size: int = field(default=4, metadata={"help": "examples per process and micro-batch"})
    per_device_eval_batch_size: int | None = field(default=None, metadata={"help": "default: per_device_batch_size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    optimizer: str = field(default="adamw", metadata={"help": "adamw | radam"})
    learning_rate: float = field(default=1e-4, metadata={"help": "learning rate of every group not set below"})
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay of every group not set below"})
    scheduler: str = field(
        default="cosine_with_warmup",
        metadata={"help": "cosine_with_warmup | cosine_warm_restarts | constant (stepped once per optimizer step)"},
    )
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of the steps with linear warm-up"})
    restart_cycles: int = field(default=2, metadata={"help": "cycles of cosine_warm_restarts over the training"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping (empty: none)"})
    mixed_precision: str = field(default="no", metadata={"help": "no | bf16 | fp16 (through accelerate)"})
    checkpointing_steps: int | None = field(default=None, metadata={"help": "save_state every N optimizer steps"})
    save_total_limit: int = field(default=3, metadata={"help": "checkpoints kept"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "checkpoint folder, or 'latest'"})
    metric_for_best_model: str = field(default="loss", metadata={"help": "validation metric selecting best_model"})
    greater_is_better: bool | None = field(default=None, metadata={"help": "default: True unless the metric is a loss or error"})
    log_with: list[str] = field(default_factory=list, metadata={"help": "optional trackers (tensorboard, wandb, ...)"})
    logging_steps: int = field(default=1, metadata={"help": "log the training loss every N optimizer steps"})
    # Per parameter group (deepcoro_hf.optimization.PARAMETER_GROUPS); unset groups use learning_rate / weight_decay.
    # `lr_heads` also covers every task head; the temperature never takes weight decay.
    lr_video_backbone: float | None = field(default=None, metadata={"help": "learning rate of the video_backbone group"})
    lr_video_projection: float | None = field(default=None, metadata={"help": "learning rate of the video_projection group"})
    lr_text_backbone: float | None = field(default=None, metadata={"help": "learning rate of the text_backbone group"})
    lr_text_projection: float | None = field(default=None, metadata={"help": "learning rate of the text_projection group"})
    lr_within_video_attention: float | None = field(default=None, metadata={"help": "learning rate of the within_video_attention group"})
    lr_across_video_attention: float | None = field(default=None, metadata={"help": "learning rate of the across_video_attention group"})
    lr_gated_attention: float | None = field(default=None, metadata={"help": "learning rate of the gated_attention group"})
    lr_heads: float | None = field(default=None, metadata={"help": "learning rate of the heads group"})
    lr_temperature: float | None = field(default=None, metadata={"help": "learning rate of the temperature group"})
    wd_video_backbone: float | None = field(default=None, metadata={"help": "weight decay of the video_backbone group"})
    wd_video_projection: float | None = field(default=None, metadata={"help": "weight decay of the video_projection group"})
    wd_text_backbone: float | None = field(default=None, metadata={"help": "weight decay of the text_backbone group"})
    wd_text_projection: float | None = field(default=None, metadata={"help": "weight decay of the text_projection group"})
    wd_within_video_attention: float | None = field(default=None, metadata={"help": "weight decay of the within_video_attention group"})
    wd_across_video_attention: float | None = field(default=None, metadata={"help": "weight decay of the across_video_attention group"})
    wd_gated_attention: float | None = field(default=None, metadata={"help": "weight decay of the gated_attention group"})
    wd_heads: float | None = field(default=None, metadata={"help": "weight decay of the heads group"})
    wd_temperature: float | None = field(default=None, metadata={"help": "weight decay of the temperature group"})


def group_settings(args: TrainingArguments, prefix: str) -> dict[str, float]:
    """`{"heads": 3e-4, ...}` from the `lr_*` (or `wd_*`) fields that are set."""
    return {g: getattr(args, f"{prefix}_{g}") for g in PARAMETER_GROUPS if getattr(args, f"{prefix}_{g}") is not None}


def _as_argv(config: dict[str, Any], path: Path) -> list[str]:
    argv = []
    for key, value in config.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: keys must be field names, got {key!r}")
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, dict):
            argv.append(json.dumps(value))
        elif isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        elif isinstance(value, bool):
            argv.append("true" if value else "false")
        else:
            argv.append(str(value))
    return argv


def parse_config(dataclass_types: tuple[type, ...], argv: list[str] | None = None, description: str | None = None):
    """Parse `--config FILE` plus overrides into the given argument dataclasses (overrides win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types, description=description)
    parser.add_argument("--config", type=Path, default=None, help="YAML or JSON file of field: value settings")
    config_argv = []
    if "--config" in argv:
        position = argv.index("--config")
        if position + 1 >= len(argv):
            raise ValueError("--config needs a file")
        path = Path(argv[position + 1])
        del argv[position : position + 2]
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text()
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of field names to values, got {type(loaded).__name__}")
        known = {f.name for cls in dataclass_types for f in fields(cls)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}")
        config_argv = _as_argv(loaded, path)
    *parsed, remaining = parser.parse_args_into_dataclasses(args=config_argv + argv, return_remaining_strings=True)
    if remaining:
        raise ValueError(f"unknown arguments {remaining}")
    return tuple(parsed[: len(dataclass_types)])  # the rest is the namespace holding --config


def model_config_overrides(model_args: ModelArguments) -> dict[str, Any]:
    """`model_config` as a dict: a JSON object given inline or in a file."""
    if not model_args.model_config:
        return {}
    text = model_args.model_config
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"model_config must be a JSON object or a JSON file, got {text!r}")
        text = path.read_text()
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"model_config must be a JSON object, got {type(value).__name__}")
    return value


__all__ = ["DataArguments", "ModelArguments", "TrainingArguments", "group_settings", "model_config_overrides", "parse_config"]
