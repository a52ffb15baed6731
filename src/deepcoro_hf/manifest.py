"""The DeepCORO-mini folder layout: two manifest tables and the videos they point to.

```
ROOT/
  studies.csv (or .parquet)   one row per study: patient_id, study_id, split, [study_date, serial_index,
                              change_from_previous, dominance, report], label columns `{segment}_{task}`
                              (vocabulary.LABEL_COLUMNS; any subset, absent or empty = missing), [`{segment}_calcif` grades]
  videos.csv (or .parquet)    one row per video: study_id, video_path (relative to ROOT, POSIX), [series_uid, sop_uid,
                              territory (LCA/RCA), view, primary_angle, secondary_angle, acquisition_time, fps,
                              num_frames, rows, columns, bits_stored, transfer_syntax, video_report]
  dicom/...                   the videos (DICOM; AVI/MP4 also work with the video processor)
```

`deepcoro phantoms` writes exactly this layout, so synthetic and real data go through the same code. Splits are
patient-level: `train`, `validation`, `test`; a patient in two splits is an error.

Reading checks everything and either raises `ManifestError` naming the file, the rows and what was expected, or —
for the problems a user may choose to tolerate (missing video files, studies without videos) — skips them, counts
them in a `ManifestReport` and logs the counts. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .vocabulary import (
    CALCIFICATION_GRADES,
    LVEF_TASKS,
    MACE_TASKS,
    SEGMENT_KEYS,
    SEGMENT_TASKS,
    label_column,
)

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
CALCIFICATION_GRADE_COLUMNS: tuple[str, ...] = tuple(label_column(key, "calcif") for key in SEGMENT_KEYS)
STUDY_REQUIRED: tuple[str, ...] = ("patient_id", "study_id", "split")
STUDY_OPTIONAL: tuple[str, ...] = ("study_date", "serial_index", "change_from_previous", "dominance", "report")
STUDY_COLUMNS: tuple[str, ...] = (
    *STUDY_REQUIRED, *STUDY_OPTIONAL, *(label_column(s, t) for s in SEGMENT_KEYS for t in SEGMENT_TASKS),
    *CALCIFICATION_GRADE_COLUMNS,
)
VIDEO_REQUIRED: tuple[str, ...] = ("study_id", "video_path")
VIDEO_OPTIONAL: tuple[str, ...] = (
    "series_uid", "sop_uid", "territory", "view", "primary_angle", "secondary_angle", "acquisition_time", "fps",
    "num_frames", "rows", "columns", "bits_stored", "transfer_syntax", "video_report",
)
VIDEO_COLUMNS: tuple[str, ...] = (*VIDEO_REQUIRED, *VIDEO_OPTIONAL)
_TEXT_COLUMNS = {
    "patient_id", "study_id", "split", "study_date", "change_from_previous", "dominance", "report", "video_path",
    "series_uid", "sop_uid", "territory", "view", "acquisition_time", "transfer_syntax", "video_report",
    *CALCIFICATION_GRADE_COLUMNS,
}
ON_PROBLEM = ("error", "skip")
# Every label column the layout knows, with its task type: per-segment columns and the study-level transfer tasks.
LABEL_TYPES: dict[str, str] = {
    **{label_column(s, t): kind for s in SEGMENT_KEYS for t, kind in SEGMENT_TASKS.items()},
    **MACE_TASKS,
    **LVEF_TASKS,
}


class ManifestError(ValueError):
    """A manifest that cannot be used as it is; the message names the file, the rows and what was expected."""


@dataclass
class ManifestReport:
    """What reading a manifest skipped, and why (counts are also logged)."""

    missing_video_files: list[str] = field(default_factory=list)
    studies_without_videos: list[str] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return len(self.missing_video_files) + len(self.studies_without_videos)

    def summary(self) -> str:
        return (
            f"skipped {len(self.missing_video_files)} video rows whose file is missing and "
            f"{len(self.studies_without_videos)} studies left without videos"
        )


@dataclass
class Manifest:
    """Validated manifest tables: `studies` indexed by study_id, `videos` in study, acquisition order."""

    root: Path
    studies: pd.DataFrame
    videos: pd.DataFrame
    report: ManifestReport


def _find_table(root: Path, stem: str) -> Path:
    candidates = [root / f"{stem}.parquet", root / f"{stem}.csv"]
    found = [path for path in candidates if path.is_file()]
    if not found:
        raise ManifestError(f"{root} is not a DeepCORO-mini folder: expected {stem}.csv or {stem}.parquet in it")
    return found[0]


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        # Text columns stay text (UIDs, "080000.000" times); numbers are parsed where the layout has numbers.
        table = pd.read_csv(path, dtype={c: "string" for c in _TEXT_COLUMNS}, keep_default_na=True)
    for column in table.columns:
        if column in _TEXT_COLUMNS:
            table[column] = table[column].astype("string")
    return table


def _rows(frame: pd.DataFrame, mask: pd.Series, column: str, limit: int = 5) -> str:
    """Human-readable list of offending rows (1-based line numbers of a CSV with header) and values."""
    hits = frame.index[mask.to_numpy()].tolist()[:limit]
    described = ", ".join(f"line {i + 2}: {frame.at[i, column]!r}" for i in hits)
    more = int(mask.sum()) - len(hits)
    return described + (f" and {more} more" if more > 0 else "")


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], path: Path) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ManifestError(f"{path}: missing required columns {missing}; found {list(frame.columns)}")


def _check_studies(studies: pd.DataFrame, path: Path) -> None:
    _require_columns(studies, STUDY_REQUIRED, path)
    for column in STUDY_REQUIRED:
        empty = studies[column].isna() | (studies[column].str.strip() == "")
        if empty.any():
            raise ManifestError(f"{path}: empty {column} at {_rows(studies, empty, column)}")
    duplicated = studies["study_id"].duplicated(keep=False)
    if duplicated.any():
        raise ManifestError(f"{path}: duplicate study_id at {_rows(studies, duplicated, 'study_id')}")
    unknown = ~studies["split"].isin(SPLITS)
    if unknown.any():
        raise ManifestError(f"{path}: unknown split at {_rows(studies, unknown, 'split')}; expected one of {SPLITS}")
    splits_per_patient = studies.groupby("patient_id")["split"].nunique()
    leaking = splits_per_patient[splits_per_patient > 1]
    if len(leaking):
        raise ManifestError(
            f"{path}: {len(leaking)} patients appear in more than one split (splits must be patient-level, or the "
            "test set leaks into training); first rows: "
            + _rows(studies, studies["patient_id"].isin(leaking.index[:3]), "split")
        )
    for column, kind in LABEL_TYPES.items():
        if column not in studies.columns:
            continue
        values = pd.to_numeric(studies[column], errors="coerce")
        not_numeric = values.isna() & studies[column].notna()
        if not_numeric.any():
            raise ManifestError(f"{path}: {column} must be numeric at {_rows(studies, not_numeric, column)}")
        if kind == "regression":
            bad = (values < 0) | (values > 100)
            expected = "a percentage between 0 and 100"
        else:
            bad = values.notna() & ~values.isin([0, 1])
            expected = "0 or 1"
        if bad.any():
            raise ManifestError(f"{path}: {column} must be {expected} at {_rows(studies, bad, column)}")
        studies[column] = values.astype("float32")
    for column in CALCIFICATION_GRADE_COLUMNS:
        if column in studies.columns:
            bad = studies[column].notna() & ~studies[column].isin(CALCIFICATION_GRADES)
            if bad.any():
                raise ManifestError(
                    f"{path}: {column} must be one of {CALCIFICATION_GRADES} at {_rows(studies, bad, column)}"
                )


def read_manifest(root: str | Path, on_missing_file: str = "error", on_empty_study: str = "error") -> Manifest:
    """Read and validate a DeepCORO-mini folder.

    `on_missing_file` / `on_empty_study`: `"error"` (default) raises; `"skip"` drops the video rows whose file does
    not exist / the studies left without any video, and counts them in the returned report.
    """
    for name, policy in (("on_missing_file", on_missing_file), ("on_empty_study", on_empty_study)):
        if policy not in ON_PROBLEM:
            raise ValueError(f"{name} must be one of {ON_PROBLEM}, got {policy!r}")
    root = Path(root)
    studies_path, videos_path = _find_table(root, "studies"), _find_table(root, "videos")
    studies, videos = _read_table(studies_path), _read_table(videos_path)
    _check_studies(studies, studies_path)
    _require_columns(videos, VIDEO_REQUIRED, videos_path)
    report = ManifestReport()

    empty_path = videos["video_path"].isna() | (videos["video_path"].str.strip() == "")
    if empty_path.any():
        raise ManifestError(f"{videos_path}: empty video_path at {_rows(videos, empty_path, 'study_id')}")
    duplicated = videos["video_path"].duplicated(keep=False)
    if duplicated.any():
        raise ManifestError(f"{videos_path}: duplicate video_path at {_rows(videos, duplicated, 'video_path')}")
    orphans = ~videos["study_id"].isin(studies["study_id"])
    if orphans.any():
        raise ManifestError(
            f"{videos_path}: study_id not listed in {studies_path.name} at {_rows(videos, orphans, 'study_id')}"
        )
    exists = videos["video_path"].map(lambda p: (root / p).is_file())
    if not exists.all():
        missing = videos.loc[~exists, "video_path"].tolist()
        if on_missing_file == "error":
            raise ManifestError(
                f"{videos_path}: {len(missing)} video files do not exist under {root}, e.g. "
                f"{_rows(videos, ~exists, 'video_path', limit=3)} (pass on_missing_file='skip' to leave them out)"
            )
        report.missing_video_files = missing
        videos = videos.loc[exists]
    without = ~studies["study_id"].isin(videos["study_id"])
    if without.any():
        if on_empty_study == "error":
            raise ManifestError(
                f"{studies_path}: {int(without.sum())} studies have no video, e.g. {_rows(studies, without, 'study_id', 3)} "
                "(pass on_empty_study='skip' to leave them out)"
            )
        report.studies_without_videos = studies.loc[without, "study_id"].tolist()
        studies = studies.loc[~without]
    if report.num_skipped:
        logger.warning("%s: %s", root, report.summary())

    videos = videos.assign(_row=range(len(videos)))
    order = ["study_id", "acquisition_time", "_row"] if "acquisition_time" in videos.columns else ["study_id", "_row"]
    videos = videos.sort_values(order, na_position="last", kind="stable").drop(columns="_row").reset_index(drop=True)
    studies = studies.set_index("study_id", drop=False)
    return Manifest(root=root, studies=studies, videos=videos, report=report)


def labels_matrix(row: pd.Series, segments: tuple[str, ...] | list[str] = SEGMENT_KEYS,
                  tasks: tuple[str, ...] | list[str] = tuple(SEGMENT_TASKS)) -> list[list[float]]:
    """`[segments][tasks]` label grid of one study row; NaN where the label is missing (or its column absent)."""
    grid = []
    for segment in segments or [None]:
        values = []
        for task in tasks:
            column = label_column(segment, task) if segment else task
            value = row.get(column, math.nan)
            values.append(math.nan if value is None or pd.isna(value) else float(value))
        grid.append(values)
    return grid


__all__ = [
    "CALCIFICATION_GRADE_COLUMNS",
    "LABEL_TYPES",
    "Manifest",
    "ManifestError",
    "ManifestReport",
    "SPLITS",
    "STUDY_COLUMNS",
    "VIDEO_COLUMNS",
    "labels_matrix",
    "read_manifest",
]
