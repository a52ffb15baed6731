"""Datasets and processors for the training entry points: DeepCORO-mini splits decoded lazily into model inputs."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoTokenizer, AutoVideoProcessor

from ..deepcoro_mini import StudyTransform, load_deepcoro_mini
from ..processing_deepcoro import DeepCoroProcessor
from ..video_processing_deepcoro import DeepCoroVideoProcessor
from .arguments import DataArguments

logger = logging.getLogger(__name__)

# The report paired with each example, by level (pretraining).
REPORT_COLUMNS = {"videos": "video_report", "territories": "territory_report", "studies": "report"}


def video_processor_for(config, data_args: DataArguments, checkpoint: str | None = None) -> DeepCoroVideoProcessor:
    """The checkpoint's saved video processor when it has one, else one matching the model's input size."""
    if checkpoint and any((Path(checkpoint) / name).is_file() for name in
                          ("video_preprocessor_config.json", "processor_config.json", "preprocessor_config.json")):
        processor = AutoVideoProcessor.from_pretrained(checkpoint)
        processor.stride = data_args.stride
    else:
        video = config.video_config
        processor = DeepCoroVideoProcessor(
            num_frames=video.num_frames, size={"height": video.image_size, "width": video.image_size}, stride=data_args.stride,
        )
    processor.max_videos = data_args.max_videos or config.max_videos
    return processor


def clip_processor_for(config, data_args: DataArguments, tokenizer_name: str, checkpoint: str | None = None) -> DeepCoroProcessor:
    return DeepCoroProcessor(video_processor_for(config, data_args, checkpoint), AutoTokenizer.from_pretrained(tokenizer_name))


def load_splits(data_args: DataArguments, processor, level: str, labels: bool, text_column: str | None = None,
                config=None):
    """(train, eval) datasets decoding through `processor` on access; eval is None without an eval split.

    Labels follow `config.segments` × `config.tasks` when a model config is given. Each example keeps its row number
    in an `index` column, so predictions gathered across processes map back to their studies."""
    grid = {} if config is None else {"segments": tuple(config.segments), "tasks": tuple(config.tasks)}
    splits = load_deepcoro_mini(data_args.data_dir, level=level, cache_dir=data_args.cache_dir,
                                on_missing_file=data_args.on_missing_file, **grid)
    if data_args.train_split not in splits:
        raise ValueError(f"{data_args.data_dir} has no {data_args.train_split!r} split; it has {sorted(splits)}")

    def prepared(name: str, augment: bool):
        dataset = splits[name].add_column("index", list(range(len(splits[name]))))
        transform = StudyTransform(processor, labels=labels, text_column=text_column, augment=augment,
                                   max_text_length=data_args.max_text_length)
        return dataset.with_transform(transform)

    train = prepared(data_args.train_split, data_args.augment)
    evaluation = None
    if data_args.eval_split:
        if data_args.eval_split in splits:
            evaluation = prepared(data_args.eval_split, False)
        else:
            logger.warning("%s has no %r split: training without validation", data_args.data_dir, data_args.eval_split)
    return train, evaluation


__all__ = ["REPORT_COLUMNS", "clip_processor_for", "load_splits", "video_processor_for"]
