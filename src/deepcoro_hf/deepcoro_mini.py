"""DeepCORO-mini as a `datasets` dataset: a `GeneratorBasedBuilder` over a local folder, a Hub-native Parquet export,
and a transform that decodes videos lazily (in DataLoader workers) into model inputs.

datasets ≥ 4 has no loading scripts, so the builder is used directly:

```python
from deepcoro_hf.deepcoro_mini import load_deepcoro_mini, export_hub_layout, StudyTransform

studies = load_deepcoro_mini("path/to/deepcoro-mini")               # DatasetDict: train / validation / test
export_hub_layout(studies, "deepcoro-mini-hub")                      # Parquet + dataset card; DICOM bytes embedded
hub = datasets.load_dataset("deepcoro-mini-hub")                     # or a Hub repo holding that folder
train = hub["train"].with_transform(StudyTransform(processor))       # decodes on access
```

Three configurations (levels):
- `studies`: one example per study, the unit of the segment classifier;
- `videos`: one example per video with its territory report, the unit of video-level contrastive pretraining;
- `territories`: one example per study and coronary territory (LCA / RCA) with that territory's videos and report —
  the paper's study-level pretraining pairs left-coronary videos with the left-territory segments of the report
  (adjusted for dominance) and right-coronary videos with the right ones.
The folder layout and every check on it are in `manifest.py`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import torch
from huggingface_hub import DatasetCard, DatasetCardData

from .manifest import CALCIFICATION_GRADE_COLUMNS, SPLITS, labels_matrix, read_manifest
from .vocabulary import SEGMENT_KEYS, SEGMENT_TASKS, TERRITORIES, build_report

logger = logging.getLogger(__name__)

LEVELS = ("studies", "videos", "territories")
_SPLIT_NAMES = {"train": datasets.Split.TRAIN, "validation": datasets.Split.VALIDATION, "test": datasets.Split.TEST}


@dataclass
class DeepCoroMiniConfig(datasets.BuilderConfig):
    """`name` is the level (`studies`, `videos` or `territories`); `on_missing_file` / `on_empty_study` as in
    `read_manifest`; `segments` × `tasks` is the label grid (default: the 18 segments × 5 segment tasks; for
    study-level tasks such as MACE or LVEF, no segments and the task columns)."""

    on_missing_file: str = "error"
    on_empty_study: str = "error"
    segments: tuple[str, ...] = SEGMENT_KEYS
    tasks: tuple[str, ...] = tuple(SEGMENT_TASKS)


def _features(level: str, segments: tuple[str, ...], tasks: tuple[str, ...]) -> datasets.Features:
    text = datasets.Value("string")
    common = {
        "patient_id": text,
        "study_id": text,
        "split": text,
        "study_date": text,
        "serial_index": datasets.Value("int32"),
        "change_from_previous": text,
        "dominance": text,
        "report": text,
        # [segments, tasks] in the config's order (by default the 18 vocabulary.SEGMENT_KEYS × the 5 SEGMENT_TASKS;
        # one row for study-level tasks); NaN = missing.
        "labels": datasets.Array2D(shape=(max(len(segments), 1), len(tasks)), dtype="float32"),
        "calcification_grades": datasets.List(text),
    }
    if level in ("studies", "territories"):
        per_video = {
            "video_paths": datasets.List(text),
            "video_files": datasets.List(text),
            "series_uids": datasets.List(text),
            "territories": datasets.List(text),
            "views": datasets.List(text),
            "primary_angles": datasets.List(datasets.Value("float32")),
            "secondary_angles": datasets.List(datasets.Value("float32")),
            "acquisition_times": datasets.List(text),
            "video_reports": datasets.List(text),
        }
        if level == "territories":
            per_video["territory"] = text
            per_video["territory_report"] = text
    else:
        per_video = {
            "video_path": text,
            "video_file": text,
            "series_uid": text,
            "territory": text,
            "view": text,
            "primary_angle": datasets.Value("float32"),
            "secondary_angle": datasets.Value("float32"),
            "acquisition_time": text,
            "video_report": text,
        }
    return datasets.Features({**common, **per_video})


def _text(value: Any) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def _number(value: Any) -> float:
    return math.nan if value is None or pd.isna(value) else float(value)


def manifest_fingerprint(data_dir: str | Path) -> str:
    """Hash of the manifest tables, so a cached Arrow copy is rebuilt when the manifest changes."""
    digest = hashlib.sha256()
    for name in ("studies.parquet", "studies.csv", "videos.parquet", "videos.csv"):
        path = Path(data_dir) / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class DeepCoroMini(datasets.GeneratorBasedBuilder):
    """Builder over a local DeepCORO-mini folder (or phantoms from `deepcoro phantoms`), split by patient."""

    BUILDER_CONFIG_CLASS = DeepCoroMiniConfig
    BUILDER_CONFIGS = [
        DeepCoroMiniConfig(name="studies", version=datasets.Version("1.0.0"), description="one example per study"),
        DeepCoroMiniConfig(name="videos", version=datasets.Version("1.0.0"), description="one example per video"),
        DeepCoroMiniConfig(
            name="territories", version=datasets.Version("1.0.0"), description="one example per study and territory"
        ),
    ]
    DEFAULT_CONFIG_NAME = "studies"

    def __init__(self, *args, **kwargs):
        data_dir = kwargs.get("data_dir")
        if data_dir is None:
            raise ValueError("DeepCoroMini needs data_dir=<folder with studies.csv and videos.csv>")
        kwargs.setdefault("hash", manifest_fingerprint(data_dir))
        super().__init__(*args, **kwargs)
        self.manifest_report = None

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="DeepCORO-mini coronary angiography studies with 18-segment labels (see deepcoro_hf.manifest).",
            features=_features(self.config.name, tuple(self.config.segments), tuple(self.config.tasks)),
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        manifest = read_manifest(
            self.config.data_dir, on_missing_file=self.config.on_missing_file, on_empty_study=self.config.on_empty_study
        )
        self.manifest_report = manifest.report
        present = [s for s in SPLITS if (manifest.studies["split"] == s).any()]
        return [
            datasets.SplitGenerator(name=_SPLIT_NAMES[split], gen_kwargs={"manifest": manifest, "split": split})
            for split in present
        ]

    def _generate_examples(self, manifest, split: str):
        studies = manifest.studies[manifest.studies["split"] == split]
        videos_by_study = dict(tuple(manifest.videos.groupby("study_id", sort=False)))
        index = 0
        for study_id, study in studies.iterrows():
            common = {
                "patient_id": _text(study["patient_id"]),
                "study_id": _text(study_id),
                "split": split,
                "study_date": _text(study.get("study_date")),
                "serial_index": int(np.nan_to_num(_number(study.get("serial_index")))),
                "change_from_previous": _text(study.get("change_from_previous")),
                "dominance": _text(study.get("dominance")),
                "report": _text(study.get("report")),
                "labels": np.asarray(labels_matrix(study, self.config.segments, self.config.tasks), dtype=np.float32),
                "calcification_grades": [_text(study.get(c)) for c in CALCIFICATION_GRADE_COLUMNS],
            }
            rows = videos_by_study[study_id]
            paths = [str((manifest.root / p).resolve()) for p in rows["video_path"]]

            def column(name: str, convert=_text) -> list:
                return [convert(v) for v in rows[name]] if name in rows.columns else [convert(None)] * len(rows)

            per_video = {
                "video_paths": paths,
                "video_files": [str(p) for p in rows["video_path"]],
                "series_uids": column("series_uid"),
                "territories": column("territory"),
                "views": column("view"),
                "primary_angles": column("primary_angle", _number),
                "secondary_angles": column("secondary_angle", _number),
                "acquisition_times": column("acquisition_time"),
                "video_reports": column("video_report"),
            }
            if self.config.name == "studies":
                yield datasets.builder.Key(0, index), {**common, **per_video}
                index += 1
                continue
            if self.config.name == "territories":
                for territory in TERRITORIES:
                    keep = [i for i, t in enumerate(per_video["territories"]) if t == territory]
                    if not keep:
                        continue
                    reports = [per_video["video_reports"][i] for i in keep if per_video["video_reports"][i]]
                    yield datasets.builder.Key(0, index), {
                        **common,
                        **{key: [values[i] for i in keep] for key, values in per_video.items()},
                        "territory": territory,
                        # The manifest's side-specific report when it has one, else one built from the labels.
                        "territory_report": reports[0] if reports else build_report(
                            study.to_dict(), common["dominance"] or "right", territory
                        ),
                    }
                    index += 1
                continue
            for i, path in enumerate(paths):
                yield datasets.builder.Key(0, index), {
                    **common,
                    "video_path": path,
                    "video_file": str(rows["video_path"].iloc[i]),
                    "series_uid": column("series_uid")[i],
                    "territory": column("territory")[i],
                    "view": column("view")[i],
                    "primary_angle": column("primary_angle", _number)[i],
                    "secondary_angle": column("secondary_angle", _number)[i],
                    "acquisition_time": column("acquisition_time")[i],
                    "video_report": column("video_report")[i],
                }
                index += 1


def load_deepcoro_mini(
    data_dir: str | Path,
    level: str = "studies",
    cache_dir: str | Path | None = None,
    on_missing_file: str = "error",
    on_empty_study: str = "error",
    segments: tuple[str, ...] | list[str] = SEGMENT_KEYS,
    tasks: tuple[str, ...] | list[str] = tuple(SEGMENT_TASKS),
) -> datasets.DatasetDict:
    """Build (or reuse the cached build of) a DeepCORO-mini folder as a `DatasetDict` of its patient-level splits,
    with labels on the `segments` × `tasks` grid (a model's `config.segments` / `config.tasks`)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    builder = DeepCoroMini(
        config_name=level, data_dir=str(Path(data_dir).resolve()),
        cache_dir=None if cache_dir is None else str(cache_dir),
        on_missing_file=on_missing_file, on_empty_study=on_empty_study,
        segments=tuple(segments), tasks=tuple(tasks),
    )
    builder.download_and_prepare()
    if builder.manifest_report is not None and builder.manifest_report.num_skipped:
        logger.warning("DeepCORO-mini %s: %s", data_dir, builder.manifest_report.summary())
    return builder.as_dataset()


# ----------------------------------------------------------------------------------------------------------------------
# Hub-native export
# ----------------------------------------------------------------------------------------------------------------------
_CARD_TEMPLATE = """---
{card_data}
---

# {pretty_name}

Coronary angiography {level} in the DeepCORO-mini layout, exported by `deepcoro_hf.deepcoro_mini.export_hub_layout`.
Load with `datasets.load_dataset("<this folder or repo>")`; decode with
`dataset.with_transform(deepcoro_hf.deepcoro_mini.StudyTransform(processor))`.

- Splits are patient-level ({splits}).
- `labels` is a float32 grid [segments × tasks], by default the 18 `deepcoro_hf.vocabulary.SEGMENT_KEYS` × the 5
  `SEGMENT_TASKS` (stenosis %, stenosis ≥ 70 %, calcification, CTO, thrombus); NaN means the label is missing.
- {video_note}
- No patient names or birth dates are stored; `patient_id` is the dataset's pseudonymous id.
"""


def export_hub_layout(
    dataset: datasets.DatasetDict, out_dir: str | Path, embed_videos: bool = True, pretty_name: str = "DeepCORO-mini"
) -> Path:
    """Write `dataset` as Parquet shards plus a dataset card with `configs:` so `load_dataset(out_dir)` (or a Hub
    repo holding the folder) gives it back. With `embed_videos`, each example carries its video files' bytes
    (`video_bytes`), so the export is self-contained; otherwise only paths are kept."""
    out_dir = Path(out_dir)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    level = "studies" if "video_paths" in next(iter(dataset.values())).column_names else "videos"
    data_files = []
    for split, part in dataset.items():
        if embed_videos:
            part = part.map(_embed_video_bytes, remove_columns=["video_paths" if level == "studies" else "video_path"])
        path = out_dir / "data" / f"{split}-00000-of-00001.parquet"
        part.to_parquet(str(path))
        data_files.append({"split": split, "path": f"data/{split}-*.parquet"})
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license="other",
        task_categories=["video-classification"],
        tags=["medical-imaging", "coronary-angiography", "dicom", "deepcoro"],
        configs=[{"config_name": "default", "data_files": data_files}],
    )
    card = DatasetCard(
        _CARD_TEMPLATE.format(
            card_data=card_data.to_yaml(), pretty_name=pretty_name, level=level, splits=", ".join(dataset),
            video_note=(
                "`video_bytes` holds each video file (DICOM) as bytes; `video_files` their original relative paths."
                if embed_videos else "`video_paths` point at files that must be present where the dataset is used."
            ),
        )
    )
    card.save(out_dir / "README.md")
    return out_dir


def _embed_video_bytes(example: dict) -> dict:
    if "video_paths" in example:
        return {"video_bytes": [Path(p).read_bytes() for p in example["video_paths"]]}
    return {"video_bytes": Path(example["video_path"]).read_bytes()}


# ----------------------------------------------------------------------------------------------------------------------
# Lazy decoding into model inputs
# ----------------------------------------------------------------------------------------------------------------------
class StudyTransform:
    """`dataset.with_transform(StudyTransform(processor))`: decode a batch of study (or video) examples into model
    inputs when it is accessed — in DataLoader workers, not up front.

    Returns `pixel_values_videos` `[B, N, T, C, H, W]` + `video_mask` `[B, N]` for studies and territories
    (`[B, T, C, H, W]` for videos), `labels` `[B, 18, 5]` (NaN = missing), the `study_id`s, and `index` when the
    dataset has an `index` column (a tensor, so predictions gathered across processes map back to their rows).
    Videos come from `video_bytes` when the example has them (Hub export), else from `video_paths` / `video_path`.

    With `text_column` (e.g. `"video_report"` or `"territory_report"`) the processor must be a `DeepCoroProcessor`:
    the reports are tokenised into `input_ids` / `attention_mask`. `augment=True` applies the processor's training
    augmentation.
    """

    def __init__(self, processor, labels: bool = True, text_column: str | None = None, augment: bool = False,
                 max_text_length: int = 512):
        self.processor = processor
        self.labels = labels
        self.text_column = text_column
        self.augment = augment
        self.max_text_length = max_text_length

    def __call__(self, batch: dict[str, list]) -> dict[str, Any]:
        if "video_bytes" in batch:
            sources = batch["video_bytes"]
        else:
            sources = batch["video_paths"] if "video_paths" in batch else batch["video_path"]
        is_study = isinstance(sources[0], (list, tuple))
        inputs = {"studies": [list(s) for s in sources]} if is_study else {"videos": list(sources)}
        if self.augment:
            inputs["do_augment"] = True
        if self.text_column is not None:
            inputs.update(text=list(batch[self.text_column]), max_length=self.max_text_length)
        encoded = self.processor(**inputs, return_tensors="pt")
        keys = ["pixel_values_videos", "video_mask"] if is_study else ["pixel_values_videos"]
        if self.text_column is not None:
            keys += ["input_ids", "attention_mask"]
        out = {key: encoded[key] for key in keys}
        if self.labels:
            out["labels"] = torch.as_tensor(np.asarray(batch["labels"], dtype=np.float32))
        if "index" in batch:
            out["index"] = torch.as_tensor(batch["index"])
        out["study_id"] = list(batch["study_id"])
        return out


__all__ = ["DeepCoroMini", "DeepCoroMiniConfig", "StudyTransform", "export_hub_layout", "load_deepcoro_mini", "manifest_fingerprint"]
