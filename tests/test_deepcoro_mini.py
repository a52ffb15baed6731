"""DeepCORO-mini manifest checks, the datasets builder, the Hub-native Parquet export and lazy decoding."""

import logging
import math
import shutil

import datasets
import numpy as np
import pandas as pd
import pytest

from deepcoro_hf.deepcoro_mini import StudyTransform, export_hub_layout, load_deepcoro_mini
from deepcoro_hf.manifest import ManifestError, read_manifest
from deepcoro_hf.vocabulary import SEGMENT_KEYS, SEGMENT_TASKS, label_column


@pytest.fixture
def editable_phantoms(phantom_dir, tmp_path):
    """A private copy of the phantom folder that a test may break."""
    root = tmp_path / "mini"
    shutil.copytree(phantom_dir, root)
    return root


def _edit(root, table, change):
    path = root / f"{table}.csv"
    frame = pd.read_csv(path, dtype=str)
    change(frame)
    frame.to_csv(path, index=False)


def test_builder_gives_patient_level_splits_and_exact_labels(phantom_dir, tmp_path):
    studies = pd.read_csv(phantom_dir / "studies.csv", dtype={"study_id": str})
    videos = pd.read_csv(phantom_dir / "videos.csv", dtype={"study_id": str, "acquisition_time": str})
    ds = load_deepcoro_mini(phantom_dir, cache_dir=tmp_path / "cache")
    assert set(ds) == set(studies["split"]) and sum(len(split) for split in ds.values()) == len(studies)
    patients = {split: set(ds[split]["patient_id"]) for split in ds}
    assert all(a == b or not (patients[a] & patients[b]) for a in patients for b in patients)

    example = next(iter(ds["train"]))
    row = studies.set_index("study_id").loc[example["study_id"]]
    labels = np.asarray(example["labels"])
    assert labels.shape == (18, 5)
    for i, segment in enumerate(SEGMENT_KEYS):
        for j, task in enumerate(SEGMENT_TASKS):
            expected = row[label_column(segment, task)]
            assert (math.isnan(labels[i, j]) and pd.isna(expected)) or labels[i, j] == pytest.approx(expected)
    assert example["report"] == row["report"] and example["dominance"] == row["dominance"]
    mine = videos[videos["study_id"] == example["study_id"]].sort_values("acquisition_time")
    assert example["video_files"] == mine["video_path"].tolist()  # acquisition order
    assert example["views"] == mine["view"].tolist()
    assert all(path.startswith("/") for path in example["video_paths"])
    assert "PatientName" not in str(example) and "Phantom^" not in str(example)

    video_level = load_deepcoro_mini(phantom_dir, level="videos", cache_dir=tmp_path / "cache")
    assert sum(len(split) for split in video_level.values()) == len(videos)
    assert set(video_level["train"][0]) >= {"video_path", "video_report", "territory", "labels"}


def test_rebuilds_when_the_manifest_changes(editable_phantoms, tmp_path):
    first = load_deepcoro_mini(editable_phantoms, cache_dir=tmp_path / "cache")
    _edit(editable_phantoms, "studies", lambda f: f.__setitem__("report", "edited"))
    second = load_deepcoro_mini(editable_phantoms, cache_dir=tmp_path / "cache")
    assert set(second["train"]["report"]) == {"edited"} and set(first["train"]["report"]) != {"edited"}


@pytest.mark.parametrize(
    "table, change, message",
    [
        ("studies", lambda f: f.loc.__setitem__((1, "study_id"), f.loc[0, "study_id"]), "duplicate study_id at line 2"),
        ("studies", lambda f: f.loc.__setitem__((0, "split"), "val"), r"unknown split at line 2: 'val'; expected one of"),
        ("studies", lambda f: f.loc.__setitem__((2, "prox_lad_stenosis"), "120"), "prox_lad_stenosis must be a percentage between 0 and 100 at line 4"),
        ("studies", lambda f: f.loc.__setitem__((0, "mid_rca_cto"), "0.5"), "mid_rca_cto must be 0 or 1 at line 2"),
        ("studies", lambda f: f.loc.__setitem__((0, "om1_calcif"), "huge"), "om1_calcif must be one of"),
        ("studies", lambda f: f.__delitem__("split"), r"missing required columns \['split'\]"),
        ("videos", lambda f: f.loc.__setitem__((1, "video_path"), f.loc[0, "video_path"]), "duplicate video_path"),
        ("videos", lambda f: f.loc.__setitem__((0, "study_id"), "1.2.3"), "study_id not listed in studies.csv at line 2"),
    ],
)
def test_manifest_problems_are_named(editable_phantoms, table, change, message):
    _edit(editable_phantoms, table, change)
    with pytest.raises(ManifestError, match=message):
        read_manifest(editable_phantoms)


def test_a_patient_in_two_splits_is_an_error(editable_phantoms):
    def leak(frame):
        patient = frame["patient_id"].iloc[0]
        other = next(s for s in ("train", "validation", "test") if s != frame["split"].iloc[0])
        frame.loc[len(frame)] = frame.iloc[0]
        frame.loc[len(frame) - 1, ["study_id", "split"]] = ["9.9.9", other]
        frame.loc[frame["study_id"] == "9.9.9", "patient_id"] = patient

    _edit(editable_phantoms, "studies", leak)
    with pytest.raises(ManifestError, match="1 patients appear in more than one split"):
        read_manifest(editable_phantoms, on_empty_study="skip")


def test_missing_files_raise_or_are_skipped_counted_and_logged(editable_phantoms, tmp_path, caplog):
    videos = pd.read_csv(editable_phantoms / "videos.csv", dtype=str)
    victims = videos.groupby("study_id")["video_path"].first().iloc[:2].tolist()
    for path in victims:
        (editable_phantoms / path).unlink()
    with pytest.raises(ManifestError, match="2 video files do not exist"):
        read_manifest(editable_phantoms)
    with caplog.at_level(logging.WARNING):
        manifest = read_manifest(editable_phantoms, on_missing_file="skip")
    assert sorted(manifest.report.missing_video_files) == sorted(victims)
    assert len(manifest.videos) == len(videos) - 2
    assert "skipped 2 video rows whose file is missing" in caplog.text

    # A study that loses every video: an error, or skipped and counted.
    lonely = videos["study_id"].iloc[0]
    for path in videos.loc[videos["study_id"] == lonely, "video_path"]:
        (editable_phantoms / path).unlink(missing_ok=True)
    with pytest.raises(ManifestError, match="1 studies have no video"):
        read_manifest(editable_phantoms, on_missing_file="skip")
    manifest = read_manifest(editable_phantoms, on_missing_file="skip", on_empty_study="skip")
    assert manifest.report.studies_without_videos == [lonely] and lonely not in manifest.studies.index
    ds = load_deepcoro_mini(editable_phantoms, cache_dir=tmp_path / "c", on_missing_file="skip", on_empty_study="skip")
    assert sum(len(s) for s in ds.values()) == len(manifest.studies)


def test_parquet_export_round_trips_through_load_dataset(phantom_dir, tmp_path):
    ds = load_deepcoro_mini(phantom_dir, cache_dir=tmp_path / "cache")
    out = export_hub_layout(ds, tmp_path / "hub")
    card = (out / "README.md").read_text()
    assert "configs:" in card and "data/train-*.parquet" in card
    hub = datasets.load_dataset(str(out))
    assert set(hub) == set(ds)
    original, loaded = ds["train"][0], hub["train"][0]
    for key in ("study_id", "patient_id", "report", "views", "video_files", "calcification_grades"):
        assert loaded[key] == original[key], key
    np.testing.assert_array_equal(np.asarray(loaded["labels"]), np.asarray(original["labels"]))  # NaN stays NaN
    assert hub["train"].features["labels"] == ds["train"].features["labels"]
    assert [bytes(b) for b in loaded["video_bytes"]] == [open(p, "rb").read() for p in original["video_paths"]]


class _RecordingProcessor:
    """Stands in for the video processor where only the transform's plumbing is under test."""

    def __init__(self):
        self.calls = []

    def __call__(self, studies=None, videos=None, return_tensors=None):
        import torch

        self.calls.append(studies if studies is not None else videos)
        if studies is not None:
            longest = max(len(s) for s in studies)
            mask = torch.tensor([[i < len(s) for i in range(longest)] for s in studies])
            return {"pixel_values_videos": torch.zeros(len(studies), longest, 2, 3, 8, 8), "video_mask": mask}
        return {"pixel_values_videos": torch.zeros(len(videos), 2, 3, 8, 8)}


def test_transform_decodes_only_when_accessed(phantom_dir, tmp_path):
    ds = load_deepcoro_mini(phantom_dir, cache_dir=tmp_path / "cache")["train"]
    processor = _RecordingProcessor()
    lazy = ds.with_transform(StudyTransform(processor))
    assert processor.calls == []  # nothing decoded up front
    batch = lazy[:2]
    assert len(processor.calls) == 1 and processor.calls[0] == [ds[0]["video_paths"], ds[1]["video_paths"]]
    assert batch["labels"].shape == (2, 18, 5) and batch["video_mask"].shape[0] == 2
    assert batch["study_id"] == ds[:2]["study_id"]


def test_dataloader_workers_decode_phantom_studies_into_model_inputs(phantom_dir, tmp_path):
    import torch
    from conftest import tiny_clip_config

    from deepcoro_hf import DeepCoroForSegmentClassification, DeepCoroVideoProcessor

    config = tiny_clip_config(max_videos=10)
    processor = DeepCoroVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, max_videos=10)
    ds = load_deepcoro_mini(phantom_dir, cache_dir=tmp_path / "cache")["train"]
    loader = torch.utils.data.DataLoader(ds.with_transform(StudyTransform(processor)), batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch["pixel_values_videos"].shape == (2, 10, 4, 3, 32, 32)
    assert batch["video_mask"].dtype == torch.bool
    assert batch["video_mask"].sum(1).tolist() == [len(p) for p in ds[:2]["video_paths"]]
    torch.testing.assert_close(batch["labels"], torch.as_tensor(np.asarray(ds[:2]["labels"], dtype=np.float32)), equal_nan=True)
    model = DeepCoroForSegmentClassification(config).eval()
    with torch.no_grad():
        out = model(batch["pixel_values_videos"], batch["video_mask"], labels=batch["labels"])
    assert out.logits.shape == (2, 18, 5) and torch.isfinite(out.loss)
