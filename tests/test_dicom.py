"""Tests of the DICOM reading layer: synthetic XA cines round-tripped through every codec cath labs use, the 8-bit
mapping against pydicom's own VOI functions, metadata, typed errors, and every file bundled with pydicom."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pydicom.data.download
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MPEG4HP41,
    RLELossless,
    XRayAngiographicImageStorage,
    generate_uid,
)

from deepcoro_hf.dicom import (
    CorruptDicomError,
    DicomError,
    DicomTooLargeError,
    FrameIndexError,
    MissingCodecError,
    NoPixelDataError,
    NotDicomError,
    SingleFrameError,
    TruncatedDicomError,
    UnsupportedPhotometricError,
    UnsupportedTransferSyntaxError,
    is_dicom,
    read_dicom_header,
    read_dicom_video,
)
from deepcoro_hf.vocabulary import VIEWS, classify_view

PATIENT_ID = "PHI-PATIENT-7781"


def xa_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 8, **elements) -> Dataset:
    """A synthetic XA multi-frame dataset, uncompressed; `elements` are set (or, when None, left out) last."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.SOPClassUID = XRayAngiographicImageStorage
    ds.Modality = "XA"
    ds.PatientID = PATIENT_ID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameTime = 1000.0 / 15
    ds.PositionerPrimaryAngle = -30.0
    ds.PositionerSecondaryAngle = 25.0
    ds.SeriesDate, ds.SeriesTime = "20240305", "101500"
    ds.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=bits_stored)
    for keyword, value in elements.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def gray(frames=6, rows=24, cols=40, bits=8, seed=0) -> np.ndarray:
    """Random grey frames (non-square, so a rows/columns swap cannot go unnoticed)."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.random.default_rng(seed).integers(0, 2**bits, (frames, rows, cols), dtype=dtype)


def stored_range_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The documented mapping, written out independently of the module."""
    return np.clip(np.rint((values.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------
# Uncompressed round trips and the 8-bit mapping
# --------------------------------------------------------------------------------------------------------------
def test_uncompressed_8bit_round_trip_and_metadata(tmp_path):
    pixels = gray(frames=6, rows=24, cols=40)
    ds = xa_dataset(pixels, InstanceNumber=3, SeriesNumber=7)
    path = write(ds, tmp_path / "xa.dcm")

    video = read_dicom_video(path)

    assert video.frames.dtype == np.uint8 and video.frames.shape == (6, 24, 40)
    np.testing.assert_array_equal(video.frames, pixels)  # 8-bit MONOCHROME2 passes through unchanged
    assert video.frame_indices == tuple(range(6))
    assert (video.num_frames, video.rows, video.columns) == (6, 24, 40)
    assert (video.bits_allocated, video.bits_stored, video.signed) == (8, 8, False)
    assert video.photometric_interpretation == "MONOCHROME2"
    assert video.transfer_syntax == "Explicit VR Little Endian"
    assert video.fps == pytest.approx(15.0) and video.fps_source == "FrameTime"
    assert (video.primary_angle, video.secondary_angle, video.view) == (-30.0, 25.0, "RAO Cranial")
    assert (video.study_uid, video.series_uid, video.sop_uid) == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
    )
    assert video.patient_id == PATIENT_ID
    assert (video.series_number, video.instance_number) == (7, 3)
    assert video.series_datetime.isoformat() == "2024-03-05T10:15:00"
    assert video.source == str(path)


@pytest.mark.parametrize("as_source", ["path", "str", "bytes", "file", "dataset"])
def test_every_source_kind_gives_the_same_frames(tmp_path, as_source):
    pixels = gray(frames=3, bits=8, seed=1)
    path = write(xa_dataset(pixels), tmp_path / "xa.dcm")
    source = {
        "path": lambda: path,
        "str": lambda: str(path),
        "bytes": lambda: path.read_bytes(),
        "file": lambda: io.BytesIO(path.read_bytes()),
        "dataset": lambda: pydicom.dcmread(path),
    }[as_source]()
    np.testing.assert_array_equal(read_dicom_video(source).frames, pixels)


def test_12bit_without_window_maps_the_stored_range(tmp_path):
    pixels = gray(bits=12, seed=2)
    video = read_dicom_video(write(xa_dataset(pixels, bits_stored=12), tmp_path / "xa.dcm"))
    assert video.frames.dtype == np.uint8
    np.testing.assert_array_equal(video.frames, stored_range_to_uint8(pixels, 0, 4095))
    assert video.frames.min() == 0 and video.frames.max() == 255  # full 12-bit range used


def _voi_lut_item() -> Dataset:
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 16])
    item.add_new("LUTData", "US", [int(v) for v in np.round(np.sqrt(np.arange(4096) / 4095) * 65535)])
    return item


@pytest.mark.parametrize(
    "voi, output_range",
    [
        ({"WindowCenter": 1500, "WindowWidth": 1200}, (0, 4095)),
        ({"WindowCenter": 600, "WindowWidth": 1000, "VOILUTFunction": "SIGMOID"}, (0, 4095)),
        ({"WindowCenter": 0, "WindowWidth": 2000, "RescaleSlope": 1, "RescaleIntercept": -1024}, (-1024, 3071)),
        ({"VOILUTSequence": None}, (0, 65535)),
    ],
    ids=["window", "sigmoid", "window+rescale", "voi-lut-sequence"],
)
def test_12bit_with_voi_equals_pydicom_apply_voi_lut(tmp_path, voi, output_range):
    pixels = gray(bits=12, seed=3)
    if "VOILUTSequence" in voi:
        voi = {"VOILUTSequence": Sequence([_voi_lut_item()])}
    ds = xa_dataset(pixels, bits_stored=12, **voi)
    video = read_dicom_video(write(ds, tmp_path / "xa.dcm"))

    reference = pydicom.dcmread(tmp_path / "xa.dcm")
    expected_values = apply_voi_lut(apply_modality_lut(reference.pixel_array, reference), reference)
    expected = stored_range_to_uint8(expected_values, *output_range)
    np.testing.assert_array_equal(video.frames, expected)
    assert len(np.unique(video.frames)) > 50  # a real spread, not a constant image


def test_8bit_data_passes_through_even_with_a_window(tmp_path):
    pixels = gray(seed=12)
    video = read_dicom_video(write(xa_dataset(pixels, WindowCenter=100, WindowWidth=50), tmp_path / "xa.dcm"))
    np.testing.assert_array_equal(video.frames, pixels)


def test_unusable_window_falls_back_to_the_stored_range_with_a_warning(tmp_path, caplog):
    pixels = gray(bits=12, seed=13)
    path = write(xa_dataset(pixels, bits_stored=12, WindowCenter=2000, WindowWidth=0), tmp_path / "xa.dcm")
    with caplog.at_level(logging.WARNING, logger="deepcoro_hf.dicom"):
        video = read_dicom_video(path)
    np.testing.assert_array_equal(video.frames, stored_range_to_uint8(pixels, 0, 4095))
    assert "window not usable" in caplog.text and "xa.dcm" in caplog.text


def test_monochrome1_is_inverted(tmp_path):
    eight = gray(bits=8, seed=4)
    video = read_dicom_video(write(xa_dataset(eight, "MONOCHROME1"), tmp_path / "m8.dcm"))
    np.testing.assert_array_equal(video.frames, 255 - eight)

    twelve = gray(bits=12, seed=5)
    video = read_dicom_video(write(xa_dataset(twelve, "MONOCHROME1", 12), tmp_path / "m12.dcm"))
    np.testing.assert_array_equal(video.frames, 255 - stored_range_to_uint8(twelve, 0, 4095))


def test_signed_data_maps_the_signed_stored_range(tmp_path):
    pixels = np.random.default_rng(6).integers(-2048, 2048, (4, 16, 20), dtype=np.int16)
    video = read_dicom_video(write(xa_dataset(pixels, bits_stored=12), tmp_path / "s.dcm"))
    assert video.signed
    np.testing.assert_array_equal(video.frames, stored_range_to_uint8(pixels, -2048, 2047))


def test_rgb_frames_have_three_channels(tmp_path):
    pixels = np.random.default_rng(7).integers(0, 256, (4, 32, 40, 3), dtype=np.uint8)
    video = read_dicom_video(write(xa_dataset(pixels, "RGB"), tmp_path / "rgb.dcm"))
    assert video.frames.shape == (4, 32, 40, 3)
    np.testing.assert_array_equal(video.frames, pixels)

    # JPEG 2000 colour with the reversible colour transform (YBR_RCT); the codec gives RGB back, losslessly.
    ds = xa_dataset(pixels, "RGB")
    ds.PhotometricInterpretation = "YBR_RCT"  # tells pydicom's encoder to apply the transform
    path = compressed(tmp_path, ds, JPEG2000Lossless)
    video = read_dicom_video(path)
    assert video.photometric_interpretation == "YBR_RCT"
    np.testing.assert_array_equal(video.frames, pixels)


# --------------------------------------------------------------------------------------------------------------
# Compressed transfer syntaxes
# --------------------------------------------------------------------------------------------------------------
def _jpeg_tool(src: Path, dst: Path, lossless: bool) -> None:
    """Compress with dcmtk's dcmcjpeg (or gdcmconv): pydicom has no JPEG encoder. Skips when neither exists."""
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    if dcmcjpeg := shutil.which("dcmcjpeg", path=search):
        command = [dcmcjpeg, "+e1" if lossless else "+eb", str(src), str(dst)]
    elif gdcmconv := shutil.which("gdcmconv", path=search):
        command = [gdcmconv, "--jpeg", *([] if lossless else ["--lossy"]), str(src), str(dst)]
    else:
        pytest.skip("JPEG fixtures need dcmtk's dcmcjpeg or gdcmconv (pydicom has no JPEG encoder): neither found")
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def compressed(tmp_path: Path, ds: Dataset, syntax) -> Path:
    path = tmp_path / f"xa_{syntax.keyword}.dcm"
    if syntax in (JPEGLosslessSV1, JPEGBaseline8Bit):
        _jpeg_tool(write(ds, tmp_path / "plain.dcm"), path, lossless=syntax == JPEGLosslessSV1)
    else:
        ds.compress(syntax)  # RLE: pydicom; JPEG-LS: pyjpegls; JPEG 2000: pylibjpeg-openjpeg
        write(ds, path)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    return path


LOSSLESS = [RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLosslessSV1]
LOSSY = {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000, HTJ2K}


@pytest.mark.parametrize("syntax", LOSSLESS, ids=lambda s: s.keyword)
@pytest.mark.parametrize("bits", [8, 12])
def test_lossless_syntaxes_round_trip_exactly(tmp_path, syntax, bits):
    pixels = gray(frames=5, rows=32, cols=48, bits=bits, seed=8)  # JPEG 2000 needs >= 32 px a side
    path = compressed(tmp_path, xa_dataset(pixels, bits_stored=bits), syntax)

    video = read_dicom_video(path)

    assert video.transfer_syntax == syntax.name
    # 8-bit frames pass through, so this is bit-exact decoding; 12-bit goes through the documented mapping.
    expected = pixels if bits == 8 else stored_range_to_uint8(pixels, 0, 4095)
    np.testing.assert_array_equal(video.frames, expected)


def test_jpeg_baseline_matches_pydicom_decoding(tmp_path):
    y, x = np.mgrid[0:32, 0:48]
    smooth = np.stack([np.rint(127.5 + 127.5 * np.sin(x / 7 + t) * np.cos(y / 9)).astype(np.uint8) for t in range(4)])
    smooth[:, 0, :2] = 0, 255  # the full range: dcmcjpeg's lossy mode rescales min..max otherwise
    path = compressed(tmp_path, xa_dataset(smooth), JPEGBaseline8Bit)
    video = read_dicom_video(path)
    # Lossy JPEG decoders may differ by one grey level (the standard allows IDCT rounding differences).
    assert np.abs(video.frames.astype(int) - pydicom.dcmread(path).pixel_array).max() <= 1
    assert np.abs(video.frames.astype(int) - smooth).mean() < 3  # lossy, but close to the source


# --------------------------------------------------------------------------------------------------------------
# Frame selection
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("syntax", [None, RLELossless, JPEGLosslessSV1], ids=["native", "RLE", "JPEG-lossless"])
def test_frame_indices_equal_slicing_and_decode_only_those_frames(tmp_path, monkeypatch, syntax):
    pixels = gray(frames=10, bits=12, seed=9)
    ds = xa_dataset(pixels, bits_stored=12)
    path = write(ds, tmp_path / "xa.dcm") if syntax is None else compressed(tmp_path, ds, syntax)
    full = read_dicom_video(path).frames

    # Count compressed frames pydicom extracts: each distinct requested frame once, nothing else.
    import pydicom.pixels.decoders.base as decoder_base

    fetched: list[int] = []
    original = decoder_base.get_frame

    def counting_get_frame(buffer, index, **kwargs):
        fetched.append(index)
        return original(buffer, index, **kwargs)

    monkeypatch.setattr(decoder_base, "get_frame", counting_get_frame)
    wanted = [7, 0, 7, 9, 2]
    video = read_dicom_video(path, frame_indices=np.array(wanted))

    np.testing.assert_array_equal(video.frames, full[wanted])
    assert video.frame_indices == tuple(wanted)
    assert video.num_frames == 10
    if syntax is not None:
        assert sorted(fetched) == [0, 2, 7, 9]


def test_bad_frame_indices_are_refused(tmp_path):
    path = write(xa_dataset(gray(frames=4)), tmp_path / "xa.dcm")
    with pytest.raises(FrameIndexError, match=r"\[4\].*expected 0 \.\. 3"):
        read_dicom_video(path, frame_indices=[0, 4])
    with pytest.raises(FrameIndexError, match="expected 0 .. 3"):
        read_dicom_video(path, frame_indices=[-1])
    with pytest.raises(FrameIndexError, match="at least one"):
        read_dicom_video(path, frame_indices=[])
    with pytest.raises(FrameIndexError, match="integers"):
        read_dicom_video(path, frame_indices=[0.5])


# --------------------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "elements, fps, source",
    [
        ({"FrameTime": 50.0, "CineRate": 30, "RecommendedDisplayFrameRate": 25}, 20.0, "FrameTime"),
        ({"FrameTime": None, "CineRate": 30, "RecommendedDisplayFrameRate": 25}, 30.0, "CineRate"),
        ({"FrameTime": None, "RecommendedDisplayFrameRate": 25}, 25.0, "RecommendedDisplayFrameRate"),
        ({"FrameTime": None, "FrameTimeVector": [0, 40, 40, 40]}, 25.0, "FrameTimeVector"),
        ({"FrameTime": 0.0, "CineRate": 12}, 12.0, "CineRate"),
        ({"FrameTime": None}, None, None),
    ],
    ids=["frame-time", "cine-rate", "display-rate", "frame-time-vector", "zero-frame-time", "none"],
)
def test_fps_precedence(elements, fps, source, caplog):
    ds = xa_dataset(gray(frames=4, rows=4, cols=4), **elements)
    with caplog.at_level(logging.WARNING, logger="deepcoro_hf.dicom"):
        header = read_dicom_header(ds)
    assert header.fps == (None if fps is None else pytest.approx(fps))
    assert header.fps_source == source
    if elements.get("FrameTime") == 0.0:
        assert "FrameTime is not positive" in caplog.text


@pytest.mark.parametrize(
    "primary, secondary, view",
    [
        (-30, 25, "RAO Cranial"),
        (0, 30, "AP Cranial"),
        (40, -20, "LAO Caudal"),
        (0, -30, "AP Caudal"),
        (-25, 5, "RAO Straight"),
        (90, 0, "LAO Lateral"),
        (-90, 3, "RAO Lateral"),
        (60, 60, "Other"),
        (None, None, "Other"),
    ],
)
def test_view_from_positioner_angles(primary, secondary, view):
    ds = xa_dataset(gray(frames=2, rows=4, cols=4), PositionerPrimaryAngle=primary, PositionerSecondaryAngle=secondary)
    header = read_dicom_header(ds)
    assert header.view == view == classify_view(primary, secondary)
    assert header.view in VIEWS


def test_enhanced_xa_angles_from_functional_groups():
    position = Dataset()
    position.PositionerPrimaryAngle, position.PositionerSecondaryAngle = 35.0, -28.0
    shared = Dataset()
    shared.PositionerPositionSequence = Sequence([position])
    ds = xa_dataset(gray(frames=2, rows=4, cols=4), PositionerPrimaryAngle=None, PositionerSecondaryAngle=None)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    header = read_dicom_header(ds)
    assert (header.primary_angle, header.secondary_angle, header.view) == (35.0, -28.0, "LAO Caudal")


def test_sort_key_orders_videos_by_study_then_time():
    study_a, study_b = "1.2.3.1", "1.2.3.2"
    specs = {
        "b-late": dict(StudyInstanceUID=study_b, SeriesTime="090000"),
        "a-late": dict(StudyInstanceUID=study_a, SeriesTime="101500.5"),
        "a-no-time": dict(StudyInstanceUID=study_a, SeriesDate=None, SeriesTime=None),
        "a-early": dict(StudyInstanceUID=study_a, SeriesTime="083000"),
        # Same series time: the acquisition time (here a DT with a timezone) breaks the tie.
        "a-late-acq2": dict(StudyInstanceUID=study_a, SeriesTime="101500.5", AcquisitionDateTime="20240305101730+0100"),
        "a-late-acq1": dict(StudyInstanceUID=study_a, SeriesTime="101500.5", AcquisitionDate="20240305",
                            AcquisitionTime="101600"),
    }
    headers = {name: read_dicom_header(xa_dataset(gray(frames=2, rows=4, cols=4), **e)) for name, e in specs.items()}
    order = sorted(headers, key=lambda name: headers[name].sort_key)
    assert order == ["a-early", "a-late-acq1", "a-late-acq2", "a-late", "a-no-time", "b-late"]
    assert headers["a-late-acq2"].acquisition_datetime.isoformat() == "2024-03-05T10:17:30"


def test_patient_id_is_available_but_never_shown_or_logged(tmp_path, caplog):
    path = write(xa_dataset(gray(frames=3), FrameTime=0.0), tmp_path / "xa.dcm")  # FrameTime 0 -> a warning
    with caplog.at_level(logging.DEBUG):
        video = read_dicom_video(path)
        header = read_dicom_header(path)
    assert video.patient_id == header.patient_id == PATIENT_ID
    assert caplog.records  # something was logged, and none of it is the patient ID
    for text in (repr(video), str(video), repr(header), str(header), caplog.text):
        assert PATIENT_ID not in text
    assert "patient_id=" not in repr(header)


# --------------------------------------------------------------------------------------------------------------
# Typed errors
# --------------------------------------------------------------------------------------------------------------
def test_not_dicom(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("stenosis 70% in the mid LAD\n" * 20)
    assert not is_dicom(text) and not is_dicom(tmp_path)
    assert is_dicom(write(xa_dataset(gray(frames=2)), tmp_path / "xa.dcm"))
    with pytest.raises(NotDicomError, match=r"notes\.txt.*expected 'DICM'"):
        read_dicom_video(text)
    with pytest.raises(NotDicomError, match="<bytes>"):
        read_dicom_header(text.read_bytes())


@pytest.mark.parametrize("syntax", [None, RLELossless], ids=["native", "RLE"])
def test_truncated_file(tmp_path, syntax):
    ds = xa_dataset(gray(frames=6, bits=12), bits_stored=12)
    path = write(ds, tmp_path / "xa.dcm") if syntax is None else compressed(tmp_path, ds, syntax)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    read_dicom_header(cut)  # the header is intact
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the missing sequence delimiter
        with pytest.raises(TruncatedDicomError, match=r"cut\.dcm.*(expected|truncated)"):
            read_dicom_video(cut)


def test_missing_compressed_fragment_is_truncation(tmp_path):
    path = compressed(tmp_path, xa_dataset(gray(frames=5)), RLELossless)
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=5))
    ds.PixelData = encapsulate(frames[:-1])  # NumberOfFrames still says 5
    with pytest.raises(TruncatedDicomError, match="4 compressed fragments for 5 frames"):
        read_dicom_video(write(ds, tmp_path / "missing.dcm"))


def test_no_pixel_data(tmp_path):
    ds = xa_dataset(gray(frames=2))
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "NumberOfFrames"):
        delattr(ds, keyword)
    with pytest.raises(NoPixelDataError, match=r"report\.dcm.*expected Rows, Columns"):
        read_dicom_video(write(ds, tmp_path / "report.dcm"))


def test_pixel_data_removed_from_an_image_header(tmp_path):
    ds = xa_dataset(gray(frames=2))
    del ds.PixelData
    with pytest.raises(TruncatedDicomError, match=r"stripped\.dcm.*no Pixel Data \(7FE0,0010\); expected it"):
        read_dicom_video(write(ds, tmp_path / "stripped.dcm"))


def test_single_frame_image(tmp_path):
    ds = xa_dataset(gray(frames=1)[0])
    with pytest.raises(SingleFrameError, match=r"still\.dcm: Number of Frames is 1 .*expected 2 or more"):
        read_dicom_video(write(ds, tmp_path / "still.dcm"))


def test_palette_colour_is_refused(tmp_path):
    ds = xa_dataset(gray(frames=3), "PALETTE COLOR")
    with pytest.raises(UnsupportedPhotometricError, match="PALETTE COLOR is not supported"):
        read_dicom_header(write(ds, tmp_path / "palette.dcm"))


def test_too_big_is_refused_before_decoding(tmp_path, monkeypatch):
    import deepcoro_hf.dicom as dicom_module

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the header is over the limit")

    monkeypatch.setattr(dicom_module, "_decode_to_uint8", no_decoding)
    path = write(xa_dataset(gray(frames=4, rows=24, cols=40)), tmp_path / "big.dcm")
    with pytest.raises(DicomTooLargeError, match=r"big\.dcm: 4 frames x 24 x 40 = 3,840 pixels.*3,839"):
        read_dicom_video(path, max_pixels=3839)
    with pytest.raises(DicomTooLargeError):
        read_dicom_header(path, max_pixels=3839)
    monkeypatch.undo()
    assert read_dicom_video(path, max_pixels=3840).frames.shape == (4, 24, 40)


def test_missing_codec_names_the_package(tmp_path, monkeypatch):
    path = compressed(tmp_path, xa_dataset(gray(frames=3)), JPEGLSLossless)
    monkeypatch.setattr(get_decoder(JPEGLSLossless), "_available", {})  # as if no JPEG-LS plugin were installed
    with pytest.raises(MissingCodecError, match=r"xa_JPEGLSLossless\.dcm.*JPEG-LS.*pip install pyjpegls") as caught:
        read_dicom_video(path)
    assert caught.value.install.startswith("pip install pyjpegls")


def test_transfer_syntax_pydicom_cannot_decode(tmp_path):
    ds = xa_dataset(gray(frames=2))
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])  # an MPEG-4 stream stand-in
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "YBR_PARTIAL_420", 3  # as MPEG cines are labelled
    with pytest.raises(UnsupportedTransferSyntaxError, match="MPEG-4 AVC/H.264"):
        read_dicom_header(write(ds, tmp_path / "mpeg.dcm"))


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter; deepcoro_hf.dicom is imported there without the package __init__ (which
    loads torch), to keep the run short."""
    prelude = textwrap.dedent(
        """
        import importlib.util, sys, types
        package = types.ModuleType("deepcoro_hf")
        package.__path__ = importlib.util.find_spec("deepcoro_hf").submodule_search_locations
        sys.modules["deepcoro_hf"] = package
        """
    )
    command = [sys.executable, "-c", prelude + textwrap.dedent(code)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_codecs_work_when_pydicom_was_imported_before_them(tmp_path):
    """pydicom fixes plugin availability at import; importing our module later must still enable the codecs."""
    path = compressed(tmp_path, xa_dataset(gray(frames=3, seed=11)), JPEGLosslessSV1)
    result = run_python(
        f"""
        import importlib.abc
        BLOCKED = {{"pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "gdcm"}}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(name)

        sys.meta_path.insert(0, Block())
        from pydicom.pixels import get_decoder
        from pydicom.uid import JPEGLosslessSV1
        assert not get_decoder(JPEGLosslessSV1).is_available  # pydicom saw no codec
        sys.meta_path.pop(0)  # the codec packages become importable afterwards

        import numpy as np, pydicom
        from deepcoro_hf.dicom import read_dicom_video
        frames = read_dicom_video({str(path)!r}).frames
        assert np.array_equal(frames, pydicom.dcmread({str(path)!r}).pixel_array)
        print("decoded", frames.shape)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "decoded (3, 24, 40)" in result.stdout


def test_corrupt_jpeg_does_not_crash_the_process(tmp_path):
    """python-gdcm aborts the process on this corruption (zeros right after the JPEG SOI marker), and pydicom tries
    it first; reading must end in frames or a typed error instead."""
    path = compressed(tmp_path, xa_dataset(gray(frames=3, seed=11)), JPEGLosslessSV1)
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\xd8") + 2  # after the first frame's JPEG start-of-image marker
    data[start : start + 4] = bytes(4)
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(bytes(data))
    result = run_python(
        f"""
        from deepcoro_hf.dicom import CorruptDicomError, read_dicom_video
        try:
            print("decoded", read_dicom_video({str(corrupt)!r}).frames.shape)
        except CorruptDicomError as err:
            print("typed error:", err)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "decoded (3, 24, 40)" in result.stdout or "typed error:" in result.stdout


# --------------------------------------------------------------------------------------------------------------
# Every file bundled with pydicom decodes or gets a typed error
# --------------------------------------------------------------------------------------------------------------
def _bundled_test_files() -> list[str]:
    """pydicom's bundled test files; downloads of its optional extra data are switched off and warned about."""
    bundled = Path(pydicom.data.__file__).parent / "test_files"
    outage = pydicom.data.download._SIMULATE_NETWORK_OUTAGE
    pydicom.data.download._SIMULATE_NETWORK_OUTAGE = True  # pydicom's own switch: no download attempts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "One or more download failures occurred..."
            files = pydicom.data.get_testdata_files()
    finally:
        pydicom.data.download._SIMULATE_NETWORK_OUTAGE = outage
    return sorted(str(Path(f).relative_to(bundled)) for f in files if Path(f).is_file() and bundled in Path(f).parents)


BUNDLED = _bundled_test_files()


def test_bundled_files_were_found():
    assert len(BUNDLED) > 100 and "MR_small.dcm" in BUNDLED and "SC_rgb_rle_2frame.dcm" in BUNDLED


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_pydicom_file_decodes_or_raises_a_typed_error(name):
    path = Path(pydicom.data.__file__).parent / "test_files" / name
    try:
        header = read_dicom_header(path)
        video = read_dicom_video(path, frame_indices=[0, header.num_frames - 1])
    except DicomError as err:
        assert str(path) in str(err)
        return
    expected_shape = (2, header.rows, header.columns) + ((3,) if header.samples_per_pixel == 3 else ())
    assert video.frames.shape == expected_shape and video.frames.dtype == np.uint8
    reference = pydicom.dcmread(path).pixel_array[[0, header.num_frames - 1]]
    if header.bits_stored > 8 or header.signed:
        bits = header.bits_stored
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if header.signed else (0, 2**bits - 1)
        reference = stored_range_to_uint8(reference, lo, hi)
    # Lossy JPEG decoders may differ by one grey level (the standard allows IDCT rounding differences).
    tolerance = 1 if header.transfer_syntax_uid in LOSSY else 0
    assert np.abs(video.frames.astype(int) - reference).max() <= tolerance


@pytest.mark.filterwarnings("ignore::UserWarning")  # badVR.dcm: pydicom warns about the invalid IS value
@pytest.mark.parametrize(
    "name, error",
    [
        ("README.txt", NotDicomError),
        ("MR_small.dcm", SingleFrameError),
        ("rtplan.dcm", NoPixelDataError),
        ("badVR.dcm", CorruptDicomError),
    ],
)
def test_bundled_files_get_the_right_error(name, error):
    with pytest.raises(error):
        read_dicom_header(Path(pydicom.data.__file__).parent / "test_files" / name)
