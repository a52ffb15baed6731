"""Evaluate a saved model on a DeepCORO-mini split and write the paper's tables.

- A segment classifier (`DeepCoroForSegmentClassification`): Extended Tables 9–12 and the territory summary (CSV +
  Markdown, patient-level bootstrap CIs), ROC / precision-recall curves per task (PNG), the predictions, and — when
  the split has serial studies of a patient — the progression analysis of study embeddings (CSV + Markdown + PNG).
- A CLIP model (`DeepCoroClipModel`): video→text and text→video retrieval at video and study level laid out like
  Extended Table 8.

    deepcoro evaluate --model runs/finetune/final_model --data_dir phantoms --split test --output_dir runs/eval
    accelerate launch -m deepcoro_hf.train.evaluate --config FILE ...     (predictions gathered from every process)
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

from ..deepcoro_mini import StudyTransform, load_deepcoro_mini
from ..evaluation import cross_modal_retrieval, frame_markdown, write_tables
from ..progression import ProgressionInputError, analyze_progression, plot_progression
from ..vocabulary import label_column
from .arguments import DataArguments, parse_config
from .data import REPORT_COLUMNS, clip_processor_for, video_processor_for
from .trainer import collate

logger = logging.getLogger(__name__)


@dataclass
class EvaluationArguments:
    model: str = field(metadata={"help": "saved model folder (segment classifier or CLIP model)"})
    data_dir: str = field(metadata={"help": "DeepCORO-mini folder"})
    output_dir: str = field(metadata={"help": "where the tables, curves and predictions go"})
    split: str = field(default="test", metadata={"help": "split to evaluate"})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache folder"})
    n_bootstrap: int = field(default=1000, metadata={"help": "patient-level bootstrap resamples for the CIs (0: none)"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    batch_size: int = field(default=4, metadata={"help": "studies (or videos) per process and batch"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers decoding the videos"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer, when the CLIP folder has none"})


def _dataset(args: EvaluationArguments, processor, level: str, config=None, text_column: str | None = None):
    grid = {} if config is None else {"segments": tuple(config.segments), "tasks": tuple(config.tasks)}
    splits = load_deepcoro_mini(args.data_dir, level=level, cache_dir=args.cache_dir, **grid)
    if args.split not in splits:
        raise ValueError(f"{args.data_dir} has no {args.split!r} split; it has {sorted(splits)}")
    raw = splits[args.split].add_column("index", list(range(len(splits[args.split]))))
    transform = StudyTransform(processor, labels=config is not None, text_column=text_column)
    return raw, raw.with_transform(transform)


def _gather(accelerator: Accelerator, loader: DataLoader, step) -> dict[str, np.ndarray]:
    """Run `step(batch) -> dict of tensors` over the loader and gather every value (no padding duplicates)."""
    collected: dict[str, list] = {}
    with torch.no_grad():
        for batch in loader:
            values = step(batch)
            gathered = accelerator.gather_for_metrics(values)
            for key, value in gathered.items():
                collected.setdefault(key, []).append(value.float().cpu() if value.is_floating_point() else value.cpu())
    return {key: torch.cat(values).numpy() for key, values in collected.items()}


def evaluate_classifier(args: EvaluationArguments, accelerator: Accelerator) -> dict[str, Path]:
    model = AutoModelForVideoClassification.from_pretrained(args.model).eval()
    config = model.config
    processor = video_processor_for(config, DataArguments(data_dir=args.data_dir), args.model)
    raw, dataset = _dataset(args, processor, "studies", config=config)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers, collate_fn=collate)
    model, loader = accelerator.prepare(model, loader)

    def step(batch):
        out = model(batch["pixel_values_videos"], batch["video_mask"])
        return {"logits": out.logits, "study_embeds": out.study_embeds, "labels": batch["labels"], "index": batch["index"]}

    results = _gather(accelerator, loader, step)
    if not accelerator.is_main_process:
        return {}
    rows = raw.select_columns(["study_id", "patient_id", "study_date"]).to_pandas().iloc[results["index"]]
    study_ids = pd.Index(rows["study_id"], name="study_id")
    columns = config.head_names
    binary = np.array([config.task_types[t] == "binary" for t in config.tasks])
    scores = np.where(binary, 1.0 / (1.0 + np.exp(-results["logits"])), results["logits"])
    predictions = pd.DataFrame(scores.reshape(len(study_ids), -1), index=study_ids, columns=columns)
    labels = pd.DataFrame(results["labels"].reshape(len(study_ids), -1), index=study_ids, columns=columns)
    patients = pd.Series(rows["patient_id"].to_numpy(), index=study_ids)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = write_tables(labels, predictions, patients, out, n_bootstrap=args.n_bootstrap, seed=args.seed)
    predictions.add_suffix("_pred").to_csv(out / "predictions.csv")  # study ids only: no patient identifiers
    written["predictions.csv"] = out / "predictions.csv"

    stenosis = [c for c in columns if c.endswith("_stenosis")]
    if stenosis and rows["patient_id"].duplicated().any():
        studies = pd.DataFrame({"patient_id": rows["patient_id"].to_numpy(), "study_date": rows["study_date"].to_numpy()},
                               index=study_ids)
        studies = studies.join(labels[stenosis])
        try:
            analysis = analyze_progression(results["study_embeds"], studies)
        except ProgressionInputError as err:
            logger.warning("progression analysis skipped: %s", err)
        else:
            analysis.summary.to_csv(out / "progression_summary.csv", index=False)
            analysis.tests.to_csv(out / "progression_tests.csv", index=False)
            (out / "progression.md").write_text(
                "# Study-embedding distance between consecutive studies\n\n"
                + frame_markdown(analysis.summary) + "\n\n" + frame_markdown(analysis.tests, digits=4) + "\n"
            )
            written["progression.png"] = plot_progression(analysis, out / "progression.png")
    return written


def _retrieval_rows(result: dict, level: str) -> list[dict]:
    rows = []
    for direction in ("video_to_text", "text_to_video"):
        r = result[direction]
        for metric, value in {**{f"Recall@{k}": v for k, v in r.recall_at.items()},
                              "Mean Rank": r.mean_rank, "Median Rank": r.median_rank}.items():
            rows.append({"level": level, "direction": direction, "metric": metric, "value": value,
                         "n_queries": r.n_queries, "n_candidates": r.n_candidates})
    rows.append({"level": level, "direction": "both", "metric": "Alignment score", "value": result["alignment_score"]})
    return rows


def evaluate_clip(args: EvaluationArguments, accelerator: Accelerator) -> dict[str, Path]:
    model = AutoModel.from_pretrained(args.model).eval()
    tokenizer = args.tokenizer_name or args.model
    processor = clip_processor_for(model.config, DataArguments(data_dir=args.data_dir), tokenizer, args.model)
    model = accelerator.prepare(model)
    rows = []
    for level, label in (("videos", "video-level"), ("territories", "study-level")):
        text_column = REPORT_COLUMNS[level]
        raw, dataset = _dataset(args, processor, level, text_column=text_column)
        loader = accelerator.prepare(DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                                                collate_fn=collate))

        def step(batch):
            out = model(batch["pixel_values_videos"], batch["input_ids"], batch["attention_mask"],
                        video_mask=batch.get("video_mask"))
            return {"video": out.video_embeds, "text": out.text_embeds, "index": batch["index"]}

        results = _gather(accelerator, loader, step)
        if not accelerator.is_main_process:
            continue
        reports = np.asarray(raw.with_format(None)[text_column], dtype=object)[results["index"]]
        distinct, first = np.unique(reports, return_index=True)
        relevance = reports[:, None] == distinct[None, :]
        rows += _retrieval_rows(cross_modal_retrieval(results["video"], results["text"][first], relevance), label)
    if not accelerator.is_main_process:
        return {}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "extended_table_8_retrieval.csv", index=False)
    wide = table[table["direction"] != "both"].pivot_table(index=["level", "metric"], columns="direction", values="value",
                                                           sort=False)
    (out / "extended_table_8_retrieval.md").write_text(
        "# Retrieval (Extended Table 8 layout)\n\n" + frame_markdown(wide, digits=4) + "\n"
    )
    return {"extended_table_8_retrieval.csv": out / "extended_table_8_retrieval.csv",
            "extended_table_8_retrieval.md": out / "extended_table_8_retrieval.md"}


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_config((EvaluationArguments,), argv, description=__doc__.split("\n\n")[0])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    accelerator = Accelerator()
    architectures = AutoConfig.from_pretrained(args.model).architectures or []
    if "DeepCoroForSegmentClassification" in architectures:
        written = evaluate_classifier(args, accelerator)
    elif "DeepCoroClipModel" in architectures:
        written = evaluate_clip(args, accelerator)
    else:
        raise ValueError(f"{args.model} holds {architectures}; expected a DeepCORO segment classifier or CLIP model")
    if accelerator.is_main_process:
        print(f"wrote {len(written)} files to {args.output_dir}: {', '.join(sorted(written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
