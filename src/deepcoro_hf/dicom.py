"""Read X-ray angiography (XA) multi-frame DICOM cines as uint8 frames plus the metadata a study needs.

The original research pipeline converted each DICOM to an MJPG AVI with OpenCV and read the AVI back. This module
reads the DICOM directly, with pydicom doing the parsing and decoding, and returns what the video processor and the
study assembly need: frames, frame rate, view, UIDs, acquisition times.

Codecs
    Cath labs mostly write JPEG Lossless SV1; JPEG baseline, JPEG-LS, JPEG 2000 and RLE also occur. pydicom decodes
    them through plugin packages (pylibjpeg with -libjpeg / -openjpeg / -rle, pyjpegls, python-gdcm) and decides which
    plugins it can use when its decoders module is first imported. This module imports the codec packages before
    pydicom's decoders, and re-registers any plugin that pydicom found missing but that imports now (pydicom was
    imported before the codec packages became importable). A transfer syntax with no usable plugin raises
    `MissingCodecError`, whose message names the package to `pip install`. python-gdcm is used only when no other
    plugin decodes the transfer syntax: on some corrupt JPEG data it aborts the whole process (an uncaught C++
    exception) instead of raising, although it decodes JPEG Lossless about 1.5x faster than pylibjpeg.

Frames
    With `frame_indices`, only those frames are decoded (compressed decoding dominates the cost, and the video
    processor keeps 16 frames out of 30-150); uncompressed frames are sliced from the pixel buffer. Indices may repeat
    and come in any order: each distinct frame is decoded once.

8-bit mapping (the model was trained on 0-255 frames)
    * 8-bit unsigned data (Bits Stored 8) passes through unchanged, window or not, including RGB, as the original
      AVI conversion kept it; MONOCHROME1 is inverted (255 - x).
    * Deeper or signed monochrome data with a VOI LUT (VOI LUT Sequence, else Window Center / Width): the Modality LUT
      (`apply_modality_lut`) then the first VOI LUT or window (`apply_voi` / `apply_windowing`, the two halves of
      `apply_voi_lut`) are applied, and the VOI output range [lo, hi] is mapped linearly to 0-255. The output range
      is [0, 2**n - 1] for a VOI LUT of n-bit entries and, for windowing, the range pydicom's windowing targets
      (the stored range, or the Modality LUT's / rescaled range).
    * Otherwise (no usable VOI, or colour data deeper than 8 bits): the full stored range maps to 0-255, lo = 0 and
      hi = 2**BitsStored - 1 (unsigned) or lo = -2**(BitsStored - 1), hi = 2**(BitsStored - 1) - 1 (signed).
      Rescale Slope / Intercept are linear, so they would not change this mapping and are not applied.
    * In every case y = clip(rint((v - lo) * 255 / (hi - lo)), 0, 255), then MONOCHROME1 is inverted (255 - y).
    For 8- and 16-bit integer data the rule is evaluated once per possible stored value into a lookup table that
    the frames index, so the per-pixel cost is one table lookup. A Window Width pydicom rejects (for example < 1)
    is logged as a warning and the stored-range rule is used instead. Enhanced XA windows kept only in per-frame
    functional groups (Frame VOI LUT Sequence) are not read: such files get the stored-range rule.

Photometric interpretations
    MONOCHROME1 and MONOCHROME2 give [T, H, W]; RGB and the YBR colour spaces that pydicom or the codec converts to
    RGB (YBR_FULL, YBR_FULL_422, YBR_ICT, YBR_RCT) give [T, H, W, 3]. PALETTE COLOR is refused: angiograms are
    acquired in grey levels, so a palette image is a pseudo-colour rendering, not an acquisition the model was
    trained on. Other values (YBR_PARTIAL_*, retired ones) are refused too.

Frame rate (frames per second), first usable value wins
    1. Frame Time (0018,1063), ms per frame: fps = 1000 / FrameTime.
    2. Cine Rate (0018,0040).
    3. Recommended Display Frame Rate (0008,2144).
    4. Frame Time Vector (0018,1065): fps = 1000 / mean of its increments (the first entry, the time of frame 1, is
       left out when there are several).
    5. None. Values that are missing, not numbers or not positive are skipped (non-positive ones with a warning).
    Timing is read at the top level only (Enhanced XA files that keep it in functional groups get None).

View
    Positioner Primary / Secondary Angle, at the top level (XA) or else in the shared or first per-frame functional
    group (Enhanced XA), classified by `vocabulary.classify_view` into the paper's 12 views.

Ordering videos within a study
    `DicomHeader.sort_key`: Study Instance UID, then Series Date/Time (what the original pipeline sorted by), then
    Acquisition Date/Time (Acquisition DateTime when present), then Content Date/Time, Series Number, Instance Number
    and SOP Instance UID. Missing values sort after present ones.

Privacy
    Patient ID is read (patient-level splits need it) but is left out of repr/str and never logged.

Errors
    Every error derives from `DicomError` (a ValueError) and names the file and what was expected: `NotDicomError`,
    `CorruptDicomError` (unparseable header, undecodable pixel data) and its `TruncatedDicomError` (pixel data
    shorter than Rows x Columns x Frames, fewer compressed fragments than frames, or an image header without Pixel
    Data), `NoPixelDataError` (no Image Pixel module at all), `SingleFrameError`, `UnsupportedPhotometricError`,
    `UnsupportedTransferSyntaxError`, `MissingCodecError`, `DicomTooLargeError` and `FrameIndexError`.
"""

from __future__ import annotations

import importlib
import io
import logging
import math
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from typing import BinaryIO

import numpy as np

from .vocabulary import classify_view


logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------
# Codec plugins: import them before pydicom's decoders, and repair pydicom's plugin table if it was built first
# --------------------------------------------------------------------------------------------------------------
# Import name -> PyPI name of each codec package pydicom can use.
CODEC_PACKAGES: dict[str, str] = {
    "pylibjpeg": "pylibjpeg",
    "libjpeg": "pylibjpeg-libjpeg",
    "openjpeg": "pylibjpeg-openjpeg",
    "rle": "pylibjpeg-rle",
    "jpeg_ls": "pyjpegls",
    "gdcm": "python-gdcm",
}


def _import_codec_packages() -> None:
    """Import each installed codec package so that it is loaded before pydicom builds its plugin table."""
    for module in CODEC_PACKAGES:
        try:
            importlib.import_module(module)
        except ImportError:
            logger.debug("codec package %s (pip install %s) is not installed", module, CODEC_PACKAGES[module])


_import_codec_packages()

import pydicom  # noqa: E402  (after the codec packages, on purpose)
from pydicom import uid as dicom_uid  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.encaps import parse_fragments  # noqa: E402
from pydicom.errors import BytesLengthException, InvalidDicomError  # noqa: E402
from pydicom.misc import is_dicom as has_dicm_marker  # noqa: E402
from pydicom.pixels import (  # noqa: E402
    apply_modality_lut,
    apply_voi,
    apply_windowing,
    as_pixel_options,
    get_decoder,
)
from pydicom.pixels.decoders.base import Decoder  # noqa: E402
from pydicom.pixels.utils import get_expected_length  # noqa: E402
from pydicom.valuerep import DA, DT, TM  # noqa: E402

# pydicom's decoding plugins (label -> module); each module decides its own availability.
_PYDICOM_PLUGINS: dict[str, str] = {
    "gdcm": "pydicom.pixels.decoders.gdcm",
    "pylibjpeg": "pydicom.pixels.decoders.pylibjpeg",
    "pyjpegls": "pydicom.pixels.decoders.pyjpegls",
    "pillow": "pydicom.pixels.decoders.pillow",
}


def _register_late_codecs() -> None:
    """Re-register pydicom plugins that were unavailable when pydicom's decoders were imported but work now.

    pydicom checks plugin availability once, at import (and caches the codec modules it found), so a codec package
    that became importable later, for example through a sys.path change, would stay unused. For each such plugin
    the pydicom plugin module is reloaded and the plugin added again, through pydicom's public Decoder API.
    """
    reloaded: set[str] = set()
    for syntax in dicom_uid.AllTransferSyntaxes:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            continue
        if not decoder.is_encapsulated:
            continue
        for label, module_name in _PYDICOM_PLUGINS.items():
            if label in decoder.available_plugins:
                continue
            try:
                decoder.remove_plugin(label)  # registered but unavailable
            except ValueError:
                continue  # pydicom has no such plugin for this transfer syntax
            if label not in reloaded:
                importlib.reload(importlib.import_module(module_name))
                reloaded.add(label)
            decoder.add_plugin(label, (module_name, "_decode_frame"))
            if label in decoder.available_plugins:
                logger.debug("enabled pydicom plugin %s for %s", label, syntax.name)


_register_late_codecs()

# What to install when no plugin can decode a transfer syntax (pydicom's own RLE decoder needs nothing).
_CODEC_INSTALL_HINTS: dict[str, str] = {
    **dict.fromkeys(
        (
            dicom_uid.JPEGBaseline8Bit,
            dicom_uid.JPEGExtended12Bit,
            dicom_uid.JPEGLossless,
            dicom_uid.JPEGLosslessSV1,
        ),
        "pip install pylibjpeg pylibjpeg-libjpeg (or: pip install python-gdcm)",
    ),
    **dict.fromkeys(
        (dicom_uid.JPEGLSLossless, dicom_uid.JPEGLSNearLossless),
        "pip install pyjpegls (or: pip install pylibjpeg pylibjpeg-libjpeg)",
    ),
    **dict.fromkeys(
        (
            dicom_uid.JPEG2000Lossless,
            dicom_uid.JPEG2000,
            dicom_uid.HTJ2KLossless,
            dicom_uid.HTJ2KLosslessRPCL,
            dicom_uid.HTJ2K,
        ),
        "pip install pylibjpeg pylibjpeg-openjpeg",
    ),
    dicom_uid.RLELossless: "pip install pylibjpeg pylibjpeg-rle",
}

# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


class DicomError(ValueError):
    """A DICOM file that cannot be read as an angiography cine; the message names the file and the expectation."""


class NotDicomError(DicomError):
    """Not a DICOM Part 10 file (no 'DICM' marker after the 128-byte preamble)."""


class CorruptDicomError(DicomError):
    """A DICOM file whose content cannot be parsed or decoded."""


class TruncatedDicomError(CorruptDicomError):
    """The file is shorter than its header says: pixel data or compressed frames are missing."""


class NoPixelDataError(DicomError):
    """The dataset has no Pixel Data (7FE0,0010): a report, a DICOMDIR, a structured document..."""


class SingleFrameError(DicomError):
    """One frame only: an image, not a cine."""


class UnsupportedPhotometricError(DicomError):
    """A Photometric Interpretation this module does not turn into grey or RGB frames (e.g. PALETTE COLOR)."""


class UnsupportedTransferSyntaxError(DicomError):
    """A transfer syntax pydicom cannot decode at all (MPEG-2, H.264, HEVC...) or a missing Transfer Syntax UID."""


class MissingCodecError(DicomError):
    """pydicom can decode the transfer syntax, but the plugin package it needs is not installed."""

    def __init__(self, message: str, install: str) -> None:
        super().__init__(message)
        self.install = install
        """The pip command that provides a decoder, e.g. "pip install pyjpegls"."""


class DicomTooLargeError(DicomError):
    """NumberOfFrames x Rows x Columns is over the caller's limit (checked from the header, before decoding)."""


class FrameIndexError(DicomError):
    """A requested frame index is outside 0 .. NumberOfFrames - 1."""


# --------------------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------------------
MAX_PIXELS = 512 * 1024 * 1024
"""Default limit on NumberOfFrames x Rows x Columns: 512 frames of 1024 x 1024 (about 1 GiB once decoded)."""

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
"""Colour spaces that pydicom or the codec delivers as RGB."""

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Dataset


@dataclass(frozen=True)
class DicomHeader:
    """What the header of an XA cine says, read without decoding pixels."""

    source: str
    """Path of the file, or a placeholder such as "<bytes>" for in-memory data."""
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    patient_id: str | None = field(repr=False)
    """Patient ID (0010,0020) for patient-level splits. Left out of repr/str; never log it."""
    modality: str | None
    num_frames: int
    """Number of Frames (0028,0008) in the file."""
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric_interpretation: str
    transfer_syntax: str
    """Transfer syntax name, e.g. "JPEG Lossless, Non-Hierarchical, First-Order Prediction (...)"."""
    transfer_syntax_uid: str
    fps: float | None
    fps_source: str | None
    """Keyword of the element the frame rate came from (see the module docstring), None without a rate."""
    primary_angle: float | None
    """Positioner Primary Angle (0018,1510): LAO positive, RAO negative, degrees."""
    secondary_angle: float | None
    """Positioner Secondary Angle (0018,1511): cranial positive, caudal negative, degrees."""
    view: str
    """One of the paper's 12 view classes (`vocabulary.VIEWS`), from the two angles."""
    series_datetime: datetime | None
    acquisition_datetime: datetime | None
    content_datetime: datetime | None
    series_number: int | None
    instance_number: int | None

    @property
    def sort_key(self) -> tuple:
        """Key that orders videos by study, then by time (see the module docstring); missing values sort last."""
        return (
            _present_last(self.study_uid, ""),
            _present_last(self.series_datetime, datetime.min),
            _present_last(self.acquisition_datetime, datetime.min),
            _present_last(self.content_datetime, datetime.min),
            _present_last(self.series_number, 0),
            _present_last(self.instance_number, 0),
            _present_last(self.sop_uid, ""),
        )

    @property
    def num_pixels(self) -> int:
        """NumberOfFrames x Rows x Columns, the quantity `max_pixels` limits."""
        return self.num_frames * self.rows * self.columns


@dataclass(frozen=True, eq=False)
class DicomVideo(DicomHeader):
    """Decoded frames of an XA cine with its header."""

    frames: np.ndarray = field(repr=False)
    """uint8 frames, [T, H, W] for grey data or [T, H, W, 3] for colour; frames[i] is frame frame_indices[i]."""
    frame_indices: tuple[int, ...]
    """Index in the file (0-based) of each decoded frame, in the order asked for."""

    # Two videos are equal only if they are the same object: comparing frame arrays field by field is ambiguous.
    __eq__ = object.__eq__
    __hash__ = object.__hash__


def _present_last(value, missing):
    """Sort key element that puts missing values after present ones."""
    return (value is None, missing if value is None else value)


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------
def is_dicom(path: str | os.PathLike) -> bool:
    """Whether `path` is a regular file with the DICOM Part 10 'DICM' marker after its 128-byte preamble."""
    return os.path.isfile(path) and has_dicm_marker(path)


def read_dicom_header(source: Source, max_pixels: int = MAX_PIXELS) -> DicomHeader:
    """Read the metadata of a cine without its pixel data, for ordering and grouping a folder of files.

    Raises the errors a header can reveal (not DICOM, no image, single frame, unsupported photometric interpretation
    or transfer syntax, missing codec, over `max_pixels`), so that a header that passes describes a decodable cine.
    """
    name = _source_name(source)
    with _parse_errors_as_corrupt(name):
        ds = _read_dataset(source, name, stop_before_pixels=True)
        header = _header_from_dataset(ds, name)
        _check_header(header, max_pixels)
    return header


def read_dicom_video(
    source: Source,
    frame_indices: Iterable[int] | Callable[[DicomHeader], Iterable[int]] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> DicomVideo:
    """Decode an XA cine (path, bytes, binary file object or `pydicom.Dataset`) to uint8 frames and metadata.

    `frame_indices` selects frames (0-based, any order, repeats allowed); only those are decoded. It may also be a
    function of the header (e.g. of its frame count), so a caller that samples frames parses the file once. The whole
    file is refused when NumberOfFrames x Rows x Columns exceeds `max_pixels`, before anything is decoded. From a path,
    the pixel data is not read into memory: only the requested frames are read from the file.
    """
    name = _source_name(source)
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    with _parse_errors_as_corrupt(name), _pixel_stream(source, name, path) as (ds, stream):
        header = _header_from_dataset(ds, name)
        _check_header(header, max_pixels)
        _check_pixel_data(ds, header, stream)
        if callable(frame_indices):
            frame_indices = frame_indices(header)
        indices = _check_indices(frame_indices, header)
        frames = _decode_to_uint8(ds, header, indices, stream)
    logger.debug("decoded %d of %d frames from %s", len(frames), header.num_frames, name)
    return DicomVideo(
        **{f.name: getattr(header, f.name) for f in fields(header)},
        frames=frames,
        frame_indices=tuple(range(header.num_frames)) if indices is None else tuple(indices),
    )


def _source_name(source: Source) -> str:
    """How errors and logs name the source: its path when there is one."""
    if isinstance(source, Dataset):
        filename = getattr(source, "filename", None)
        return filename if isinstance(filename, str) else "<Dataset>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if hasattr(source, "read"):
        return str(getattr(source, "name", "<file object>"))
    return os.fspath(source)


# pydicom converts elements lazily, so a damaged element raises one of these when first read, not in dcmread.
_PARSE_ERRORS = (
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    NotImplementedError,
    OverflowError,
    struct.error,
    BytesLengthException,
)


@contextmanager
def _parse_errors_as_corrupt(name: str) -> Iterator[None]:
    try:
        yield
    except DicomError:
        raise
    except _PARSE_ERRORS as err:
        raise CorruptDicomError(f"{name}: the DICOM data cannot be parsed ({err.__class__.__name__}: {err})") from err


def _read_dataset(source: Source, name: str, stop_before_pixels: bool, defer_size: int | None = None) -> Dataset:
    """Parse `source` with pydicom; Part 10 files only (a 'DICM' marker), so a text file is never misread."""
    if isinstance(source, Dataset):
        return source
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        ds = pydicom.dcmread(stream, stop_before_pixels=stop_before_pixels, defer_size=defer_size)
    except InvalidDicomError as err:
        raise NotDicomError(f"{name}: not a DICOM file (expected 'DICM' after a 128-byte preamble)") from err
    if len(ds) == 0:
        # pydicom returns an empty dataset (after a warning) when the file ends inside encapsulated pixel data.
        raise TruncatedDicomError(
            f"{name}: no data element could be read after the file meta; expected a dataset (the file is truncated)"
        )
    return ds


@dataclass
class _PixelStream:
    """The Pixel Data value of a file, left on disk: an open file positioned at the value, and its length."""

    file: BinaryIO
    offset: int
    length: int  # 0xFFFFFFFF for encapsulated (undefined length) data
    available: int  # bytes from the value's start to the end of the file


_DEFER_SIZE = 1 << 20  # elements of 1 MiB or more (in practice, Pixel Data) are not read by dcmread


@contextmanager
def _pixel_stream(source: Source, name: str, path: str | None) -> Iterator[tuple[Dataset, _PixelStream | None]]:
    """Parse the dataset; from a path, leave Pixel Data on disk and hand out the file positioned at its value, so
    decoding reads only the requested frames (uncompressed) or fragments (compressed)."""
    ds = _read_dataset(source, name, stop_before_pixels=False, defer_size=_DEFER_SIZE if path else None)
    element = ds.get_item("PixelData", keep_deferred=True) if path and "PixelData" in ds else None
    if element is None or getattr(element, "value", b"") is not None or not hasattr(element, "value_tell"):
        yield ds, None
        return
    with open(path, "rb") as file:
        available = os.fstat(file.fileno()).st_size - element.value_tell
        file.seek(element.value_tell)
        yield ds, _PixelStream(file, element.value_tell, element.length, available)


def _header_from_dataset(ds: Dataset, name: str) -> DicomHeader:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    primary, secondary = _positioner_angles(ds)
    fps, fps_source = _frame_rate(ds, name)
    return DicomHeader(
        source=name,
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        modality=_text(ds, "Modality"),
        num_frames=_integer(ds, "NumberOfFrames", default=1, name=name),
        rows=_integer(ds, "Rows", default=0, name=name),
        columns=_integer(ds, "Columns", default=0, name=name),
        samples_per_pixel=_integer(ds, "SamplesPerPixel", default=1, name=name),
        bits_allocated=_integer(ds, "BitsAllocated", default=0, name=name),
        bits_stored=_integer(ds, "BitsStored", default=_integer(ds, "BitsAllocated", default=0, name=name), name=name),
        signed=_integer(ds, "PixelRepresentation", default=0, name=name) == 1,
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "") or "").strip().upper(),
        transfer_syntax=syntax.name if syntax else "",
        transfer_syntax_uid=str(syntax or ""),
        fps=fps,
        fps_source=fps_source,
        primary_angle=primary,
        secondary_angle=secondary,
        view=classify_view(primary, secondary),
        series_datetime=_datetime(ds, "SeriesDate", "SeriesTime", name=name),
        acquisition_datetime=_datetime(
            ds, "AcquisitionDate", "AcquisitionTime", name=name, combined="AcquisitionDateTime"
        ),
        content_datetime=_datetime(ds, "ContentDate", "ContentTime", name=name),
        series_number=_integer(ds, "SeriesNumber", default=None, name=name),
        instance_number=_integer(ds, "InstanceNumber", default=None, name=name),
    )


def _check_header(header: DicomHeader, max_pixels: int) -> None:
    """The checks a header alone allows; cheapest and most telling first."""
    name = header.source
    if not header.rows or not header.columns or not header.bits_allocated:
        raise NoPixelDataError(
            f"{name}: no image in this DICOM file (expected Rows, Columns and Bits Allocated of an Image Pixel module; "
            f"modality {header.modality or 'unknown'})"
        )
    if header.num_frames < 2:
        raise SingleFrameError(
            f"{name}: Number of Frames is {header.num_frames} (an image, not a cine); expected 2 or more"
        )
    _check_codec(header)  # before the photometric check: MPEG cines also carry an unsupported YBR_PARTIAL_420
    photometric = header.photometric_interpretation
    if photometric not in MONOCHROME + COLOUR:
        raise UnsupportedPhotometricError(
            f"{name}: Photometric Interpretation {photometric or '(missing)'} is not supported; expected one of "
            f"{', '.join(MONOCHROME + COLOUR)} (PALETTE COLOR is a pseudo-colour rendering, not an angiogram)"
        )
    if (photometric in MONOCHROME) != (header.samples_per_pixel == 1) or header.samples_per_pixel not in (1, 3):
        raise UnsupportedPhotometricError(
            f"{name}: Samples per Pixel {header.samples_per_pixel} does not fit Photometric Interpretation "
            f"{photometric}; expected 1 for MONOCHROME1/2 and 3 for colour"
        )
    if header.num_pixels > max_pixels:
        raise DicomTooLargeError(
            f"{name}: {header.num_frames} frames x {header.rows} x {header.columns} = {header.num_pixels:,} pixels is "
            f"over the limit of {max_pixels:,} (max_pixels)"
        )


def _check_codec(header: DicomHeader) -> None:
    name, syntax = header.source, header.transfer_syntax_uid
    if not syntax:
        raise UnsupportedTransferSyntaxError(
            f"{name}: the file meta has no Transfer Syntax UID (0002,0010); expected one to know how pixels are encoded"
        )
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedTransferSyntaxError(
            f"{name}: pydicom cannot decode transfer syntax {header.transfer_syntax or syntax} ({syntax}); expected "
            "uncompressed, RLE, JPEG, JPEG-LS or JPEG 2000 pixel data (re-export the cine in one of those)"
        ) from None
    if not decoder.is_available:
        install = _CODEC_INSTALL_HINTS.get(syntax, "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
        raise MissingCodecError(
            f"{name}: no decoder installed for {header.transfer_syntax} ({syntax}); run `{install}`", install
        )


def _check_pixel_data(ds: Dataset, header: DicomHeader, stream: _PixelStream | None = None) -> None:
    """Pixel Data present and as long as the header says (encapsulated: at least one fragment per frame)."""
    name = header.source
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise NoPixelDataError(f"{name}: float pixel data; expected integer Pixel Data (7FE0,0010)")
        raise TruncatedDicomError(
            f"{name}: the header describes {header.num_frames} frames of {header.rows} x {header.columns} but there is "
            "no Pixel Data (7FE0,0010); expected it after the header (the file is truncated, or the dataset was read "
            "with stop_before_pixels)"
        )
    data = ds.PixelData if stream is None else stream.file
    if dicom_uid.UID(header.transfer_syntax_uid).is_encapsulated:
        try:
            items, _ = parse_fragments(data)  # reads only the item headers of a file
        except ValueError as err:
            raise TruncatedDicomError(f"{name}: the compressed pixel data is cut short ({err})") from err
        finally:
            if stream is not None:
                stream.file.seek(stream.offset)
        fragments = items - 1  # the first item is the Basic Offset Table
        if fragments < header.num_frames:
            raise TruncatedDicomError(
                f"{name}: {fragments} compressed fragments for {header.num_frames} frames; expected at least one "
                "fragment per frame (the file is truncated or frames are missing)"
            )
        return
    expected = get_expected_length(ds, "bytes")
    present = len(data) if stream is None else min(stream.length, stream.available)
    if present < expected:
        raise TruncatedDicomError(
            f"{name}: {present:,} bytes of pixel data, expected {expected:,} for {header.num_frames} frames of "
            f"{header.rows} x {header.columns} x {header.samples_per_pixel} at {header.bits_allocated} bits"
        )


def _check_indices(frame_indices: Iterable[int] | None, header: DicomHeader) -> list[int] | None:
    if frame_indices is None:
        return None
    array = np.asarray(list(frame_indices)).reshape(-1)
    if array.size and array.dtype.kind not in "iu":
        raise FrameIndexError(f"{header.source}: frame indices must be integers, got {array.dtype} values")
    indices = [int(i) for i in array]
    if not indices:
        raise FrameIndexError(f"{header.source}: no frame index given; expected at least one, or None for all frames")
    bad = [i for i in indices if not 0 <= i < header.num_frames]
    if bad:
        raise FrameIndexError(
            f"{header.source}: frame indices {bad[:5]} out of range; expected 0 .. {header.num_frames - 1}"
        )
    return indices


# --------------------------------------------------------------------------------------------------------------
# Decoding and the 8-bit mapping
# --------------------------------------------------------------------------------------------------------------
def _decode_to_uint8(
    ds: Dataset, header: DicomHeader, indices: list[int] | None, stream: _PixelStream | None = None
) -> np.ndarray:
    """Decode frame by frame (each distinct requested frame once) straight into the uint8 output.

    Mapping each frame as it is decoded keeps the peak memory at the uint8 output plus one decoded frame. With a
    `stream`, pydicom reads the frames from the file instead of from an in-memory Pixel Data value.
    """
    requested = list(range(header.num_frames)) if indices is None else indices
    distinct = sorted(set(requested))
    positions: dict[int, list[int]] = {}
    for position, index in enumerate(requested):
        positions.setdefault(index, []).append(position)

    decoder = get_decoder(header.transfer_syntax_uid)
    # indices=None lets pydicom stream every frame in one pass over the fragments.
    options = as_pixel_options(ds)
    if stream is not None:
        options["pixel_keyword"] = "PixelData"  # what a Dataset source would tell the decoder by itself
    frames = decoder.iter_array(
        ds if stream is None else stream.file,
        indices=None if indices is None else distinct,
        decoding_plugin=_decoding_plugin(decoder),
        **options,
    )
    out, decoded = None, 0
    try:
        for index, (frame, properties) in zip(distinct, frames):
            if out is None:
                to_uint8 = _uint8_mapper(frame.dtype, ds, header, str(properties["photometric_interpretation"]))
                out = np.empty((len(requested),) + frame.shape, dtype=np.uint8)
            first, *repeats = positions[index]
            out[first] = to_uint8(frame)
            out[repeats] = out[first]
            decoded += 1
    except (ValueError, RuntimeError, KeyError, NotImplementedError, AttributeError) as err:
        raise _undecodable(header, err) from err
    except BaseException as err:
        # Rust codecs (pylibjpeg-rle) panic on corrupt data with pyo3's PanicException, a BaseException.
        if type(err).__name__ != "PanicException":
            raise
        raise _undecodable(header, err) from err
    if out is None or decoded < len(distinct):
        raise TruncatedDicomError(
            f"{header.source}: {decoded} frames could be decoded, expected {len(distinct)} (frames are missing)"
        )
    return out


def _decoding_plugin(decoder: Decoder) -> str:
    """The pydicom plugin to decode with; "" lets pydicom try its plugins in order.

    python-gdcm aborts the whole process (an uncaught C++ exception) on some corrupt JPEG data, and pydicom moves on
    to the next plugin when one fails, so gdcm is left out whenever another plugin can decode the transfer syntax.
    pyjpegls decodes JPEG-LS about 4x faster than pylibjpeg; Pillow's JPEG decoding matches gdcm's output exactly.
    """
    available = decoder.available_plugins
    if "gdcm" not in available:
        return ""
    return next((plugin for plugin in ("pyjpegls", "pillow", "pylibjpeg") if plugin in available), "")


def _undecodable(header: DicomHeader, err: BaseException) -> CorruptDicomError:
    return CorruptDicomError(f"{header.source}: pixel data could not be decoded as {header.transfer_syntax} ({err})")


def _uint8_mapper(
    dtype: np.dtype, ds: Dataset, header: DicomHeader, photometric: str
) -> Callable[[np.ndarray], np.ndarray]:
    """Function mapping one decoded frame to uint8 by the rule in the module docstring (a lookup table if possible)."""
    if photometric not in MONOCHROME + ("RGB",):
        raise UnsupportedPhotometricError(
            f"{header.source}: decoding gave {photometric} pixels; expected MONOCHROME1/2 or RGB "
            f"(Photometric Interpretation {header.photometric_interpretation})"
        )
    if dtype == np.uint8 and header.bits_stored == 8 and not header.signed:
        if photometric == "MONOCHROME1":
            return lambda frame: np.subtract(255, frame, dtype=np.uint8)
        return lambda frame: frame
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        unsigned = np.dtype(dtype.str.replace("i", "u"))
        every_value = np.arange(2 ** (8 * unsigned.itemsize), dtype=unsigned).view(dtype)
        lut = _map_values(every_value, ds, header, photometric)
        return lambda frame: np.take(lut, frame.view(unsigned))  # np.take: faster than lut[...] here
    return lambda frame: _map_values(frame, ds, header, photometric)


def _map_values(values: np.ndarray, ds: Dataset, header: DicomHeader, photometric: str) -> np.ndarray:
    """The pointwise 8-bit rule: VOI (when present, monochrome only) or stored range, scaled, MONOCHROME1 inverted."""
    mapped, lo, hi = None, 0.0, 0.0
    if photometric in MONOCHROME:
        mapped, lo, hi = _apply_voi(values, ds, header)
    if mapped is None:
        mapped, (lo, hi) = values, _stored_range(header)
    out = np.clip(np.rint((mapped.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return np.subtract(255, out, dtype=np.uint8) if photometric == "MONOCHROME1" else out


def _stored_range(header: DicomHeader) -> tuple[float, float]:
    if header.signed:
        return -(2.0 ** (header.bits_stored - 1)), 2.0 ** (header.bits_stored - 1) - 1
    return 0.0, 2.0**header.bits_stored - 1


def _apply_voi(values: np.ndarray, ds: Dataset, header: DicomHeader) -> tuple[np.ndarray | None, float, float]:
    """Modality LUT then the first VOI LUT or window; returns (None, 0, 0) when the dataset has no usable VOI."""
    lut_item = (ds.get("VOILUTSequence") or [None])[0]
    has_lut = lut_item is not None and "LUTDescriptor" in lut_item and "LUTData" in lut_item
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if not has_lut and not has_window:
        return None, 0.0, 0.0
    try:
        modality = apply_modality_lut(values, ds)
        if has_lut:
            return apply_voi(modality, ds), 0.0, 2.0 ** int(lut_item.LUTDescriptor[2]) - 1
        lo, hi = _window_output_range(ds, header)
        return apply_windowing(modality, ds), lo, hi
    except (ValueError, NotImplementedError, AttributeError, IndexError, TypeError) as err:
        logger.warning("%s: VOI LUT / window not usable (%s); mapping the stored range instead", header.source, err)
        return None, 0.0, 0.0


def _window_output_range(ds: Dataset, header: DicomHeader) -> tuple[float, float]:
    """Range pydicom's `apply_windowing` maps a window onto (PS3.3 C.11.2.1.2): the Modality LUT's or stored range,
    through Rescale Slope / Intercept when present."""
    modality_lut = (ds.get("ModalityLUTSequence") or [None])[0]
    if modality_lut is not None:
        lo, hi = 0.0, 2.0 ** int(modality_lut.LUTDescriptor[2]) - 1
    else:
        lo, hi = _stored_range(header)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return lo, hi


# --------------------------------------------------------------------------------------------------------------
# Header values
# --------------------------------------------------------------------------------------------------------------
def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    return str(value).strip() or None


def _integer(ds: Dataset, keyword: str, default: int | None, name: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise CorruptDicomError(f"{name}: {keyword} is {value!r}; expected an integer") from err


def _numbers(value) -> list[float]:
    """The finite numbers of a DS / IS / FD value, single or multi-valued; text that is not a number is skipped."""
    values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    numbers = []
    for item in values:
        try:
            number = float(item)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            numbers.append(number)
    return numbers


def _number(value) -> float | None:
    """The first finite number of a value, None when there is none."""
    numbers = _numbers(value) if value is not None and value != "" else []
    return numbers[0] if numbers else None


def _frame_rate(ds: Dataset, name: str) -> tuple[float | None, str | None]:
    """Frames per second and the element it came from, by the precedence in the module docstring."""
    for keyword in ("FrameTime", "CineRate", "RecommendedDisplayFrameRate", "FrameTimeVector"):
        fps = _fps_from(ds, keyword)
        if fps is None:
            continue
        if fps > 0:
            return fps, keyword
        logger.warning("%s: %s is not positive; looking further for the frame rate", name, keyword)
    return None, None


def _fps_from(ds: Dataset, keyword: str) -> float | None:
    """The rate one element gives (<= 0 when the element is), None when it is absent or not a number."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if keyword == "FrameTime":
        milliseconds = _number(value)
        return None if milliseconds is None else (1000.0 / milliseconds if milliseconds else 0.0)
    if keyword == "FrameTimeVector":
        increments = _numbers(value)
        increments = increments[1:] if len(increments) > 1 else increments  # entry 1 is frame 1's time, 0
        if not increments:
            return None
        milliseconds = float(np.mean(increments))
        return 1000.0 / milliseconds if milliseconds else 0.0
    return _number(value)


def _positioner_angles(ds: Dataset) -> tuple[float | None, float | None]:
    """Primary / secondary angles from the top level (XA), else the functional groups (Enhanced XA)."""
    places = [ds]
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(sequence) or []
        if groups:
            places.extend(groups[0].get("PositionerPositionSequence") or [])
    for place in places:
        primary = _number(place.get("PositionerPrimaryAngle"))
        secondary = _number(place.get("PositionerSecondaryAngle"))
        if primary is not None or secondary is not None:
            return primary, secondary
    return None, None


def _datetime(
    ds: Dataset, date_keyword: str, time_keyword: str, name: str, combined: str | None = None
) -> datetime | None:
    """A naive datetime from a DT element or a DA + TM pair; a time without date is placed on date.min.

    Unparseable values are logged (keyword only: dates are identifying) and treated as missing.
    """
    try:
        if combined and ds.get(combined):
            value = DT(str(ds.get(combined)).strip())
            return None if value is None else value.replace(tzinfo=None)
        day = DA(str(ds.get(date_keyword) or "").strip()) if ds.get(date_keyword) else None
        moment = TM(str(ds.get(time_keyword) or "").strip()) if ds.get(time_keyword) else None
    except (ValueError, TypeError, OverflowError):
        logger.warning("%s: %s / %s could not be parsed; left out of the ordering", name, date_keyword, time_keyword)
        return None
    if day is None and moment is None:
        return None
    return datetime.combine(day or date.min, (moment or time.min).replace(tzinfo=None))


__all__ = [
    "CODEC_PACKAGES",
    "COLOUR",
    "MAX_PIXELS",
    "MONOCHROME",
    "CorruptDicomError",
    "DicomError",
    "DicomHeader",
    "DicomTooLargeError",
    "DicomVideo",
    "FrameIndexError",
    "MissingCodecError",
    "NoPixelDataError",
    "NotDicomError",
    "SingleFrameError",
    "TruncatedDicomError",
    "UnsupportedPhotometricError",
    "UnsupportedTransferSyntaxError",
    "is_dicom",
    "read_dicom_header",
    "read_dicom_video",
]
