"""Contrastive pretraining of `DeepCoroClipModel` on video–report pairs (`clip`, `siglip` or `infonce` loss).

Levels: `videos` (each video with the report of its territory) or `territories` (the paper's study-level pairs: the
left-coronary videos of a study with the left-territory report, the right-coronary videos with the right one).

    accelerate launch -m deepcoro_hf.train.pretrain --config FILE [--field value ...]
    python -m deepcoro_hf.train.pretrain --config FILE ...
    deepcoro pretrain --config FILE ...
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np
import torch
from transformers import BertModel

from ..configuration_deepcoro import DeepCoroClipConfig
from ..evaluation import cross_modal_retrieval
from ..modeling_deepcoro import DeepCoroClipModel, DeepCoroVideoModel
from .arguments import DataArguments, ModelArguments, TrainingArguments, model_config_overrides, parse_config
from .data import REPORT_COLUMNS, clip_processor_for, load_splits
from .finetune import adapt, check_tower_overrides
from .trainer import DeepCoroTrainer, seed_everything

logger = logging.getLogger(__name__)


def build_clip(model_args: ModelArguments) -> DeepCoroClipModel:
    """From a checkpoint, or from `model_config` with the text tower taken from `text_init` (a BERT checkpoint, e.g.
    BiomedBERT) and the video tower from `video_init` (e.g. the converted Kinetics MViT) when given."""
    overrides = model_config_overrides(model_args)
    if model_args.model_name_or_path:
        overrides = check_tower_overrides(overrides, model_args.model_name_or_path)
        return DeepCoroClipModel.from_pretrained(model_args.model_name_or_path, **overrides)
    text_tower = None
    if model_args.text_init:
        if "text_config" in overrides:
            raise ValueError("give text_init or model_config.text_config, not both: text_init fixes the text tower")
        text_tower = BertModel.from_pretrained(model_args.text_init, add_pooling_layer=False)
        overrides["text_config"] = text_tower.config.to_dict()
    model = DeepCoroClipModel(DeepCoroClipConfig(**overrides))
    if text_tower is not None:
        model.text_model.load_state_dict(text_tower.state_dict(), strict=True)
    if model_args.video_init:
        tower = DeepCoroVideoModel.from_pretrained(model_args.video_init)
        model.video_model.load_state_dict(tower.state_dict(), strict=True)
    return model


class ClipTrainer(DeepCoroTrainer):
    def __init__(self, *args, eval_reports: list[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.eval_reports = eval_reports

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(
            batch["pixel_values_videos"], batch["input_ids"], batch["attention_mask"],
            video_mask=batch.get("video_mask"), return_loss=True,
        ).loss

    def log_extra(self, model: torch.nn.Module) -> dict[str, float]:
        return {"temperature": self.accelerator.unwrap_model(model).similarity.temperature.detach().item()}

    def evaluate(self, model: torch.nn.Module, loader) -> dict[str, float]:
        """Mean contrastive loss, and video→text retrieval over the split's distinct reports (a video's own report,
        or any identical one, counts as correct): Recall@1/5/10, median rank, alignment (mean positive cosine)."""
        videos, texts, rows, losses = [], [], [], []
        for batch in loader:
            out = model(batch["pixel_values_videos"], batch["input_ids"], batch["attention_mask"],
                        video_mask=batch.get("video_mask"), return_loss=True)
            losses.append(out.loss.float())  # already computed over the gathered batch: the same on every process
            gathered = self.accelerator.gather_for_metrics((out.video_embeds.float(), out.text_embeds.float(), batch["index"]))
            videos.append(gathered[0].cpu())
            texts.append(gathered[1].cpu())
            rows.append(gathered[2].cpu())
        videos, texts, rows = torch.cat(videos).numpy(), torch.cat(texts).numpy(), torch.cat(rows).numpy()
        reports = [self.eval_reports[i] for i in rows]
        distinct, first = np.unique(np.asarray(reports, dtype=object), return_index=True)
        relevance = np.asarray(reports, dtype=object)[:, None] == distinct[None, :]
        retrieval = cross_modal_retrieval(videos, texts[first], relevance, recall_at=(1, 5, 10))
        v2t = retrieval["video_to_text"]
        return {
            "loss": float(torch.stack(losses).mean()),
            **{f"video_to_text_recall@{k}": v for k, v in v2t.recall_at.items()},
            "video_to_text_median_rank": v2t.median_rank,
            "chance_recall@5": min(5 / len(distinct), 1.0),
            "alignment_score": retrieval["alignment_score"],
            "num_videos": len(reports),
            "num_reports": len(distinct),
        }


def main(argv: list[str] | None = None) -> int:
    data_args, model_args, training_args = parse_config(
        (DataArguments, ModelArguments, TrainingArguments), argv, description=__doc__.split("\n\n")[0]
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    seed_everything(training_args.seed)
    level = data_args.level or "videos"
    if level not in REPORT_COLUMNS:
        raise ValueError(f"level must be one of {sorted(REPORT_COLUMNS)}, got {level!r}")
    model = build_clip(model_args)
    tokenizer = model_args.tokenizer_name or model_args.text_init or model_args.model_name_or_path
    if not tokenizer:
        raise ValueError("pretraining needs a tokenizer: set tokenizer_name (or text_init / model_name_or_path)")
    processor = clip_processor_for(model.config, data_args, tokenizer, model_args.model_name_or_path)
    text_column = REPORT_COLUMNS[level]
    train, evaluation = load_splits(data_args, processor, level=level, labels=False, text_column=text_column)
    model = adapt(model, model_args, modules_to_save=["video_projection", "text_projection", "similarity"], text=True)
    reports = None if evaluation is None else list(evaluation.with_format(None)[text_column])
    trainer = ClipTrainer(model, processor, train, evaluation, training_args, num_workers=data_args.num_workers,
                          eval_reports=reports)
    trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
