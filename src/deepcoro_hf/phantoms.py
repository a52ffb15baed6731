"""Synthetic coronary angiography studies ("phantoms") with exact ground truth, written as XA multi-frame DICOM.

Labelled angiograms (DeepCORO-mini) are controlled-access, so tests, demos and benchmarks need studies whose truth
is known by construction. Each phantom video draws a left or right coronary tree as 3-D centerlines on a heart-shaped
ellipsoid, deforms it with a cardiac cycle, projects it with the C-arm angles of one of the paper's 12 views and fills
it with contrast that arrives along the tree and washes out. Lesions (stenosis, chronic total occlusion, calcification,
thrombus) sit on known segments, so the labels of all 18 segments, the report text and the change between a patient's
serial studies are exact.

Layout written by `generate_phantoms` (the DeepCORO-mini layout read by the dataset builder):

    OUT_DIR/studies.csv   one row per study: ids, split, date, dominance, report, 90 labels, 18 calcification grades
    OUT_DIR/videos.csv    one row per video: DICOM path, UIDs, territory, view, angles, timing, pixel format, report
    OUT_DIR/dicom/<patient_id>/<study_uid>/<series_uid>.dcm

Rendering is vectorised: per cardiac phase the projected centerlines are rasterised once and a distance transform
gives every pixel near a vessel its nearest centerline sample; each frame then only scales the precomputed lumen
thickness of those pixels by the contrast reaching that sample.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, XRayAngiographicImageStorage, generate_uid
from scipy import ndimage
from scipy.interpolate import make_interp_spline

from .manifest import CALCIFICATION_GRADE_COLUMNS, SPLITS, STUDY_COLUMNS, VIDEO_COLUMNS
from .vocabulary import (
    CALCIFICATION_GRADES,
    LABEL_COLUMNS,
    SEGMENT_KEYS,
    SEGMENT_TASKS,
    SIGNIFICANT_STENOSIS,
    VIEW_ANGLES,
    VIEWS,
    Dominance,
    Territory,
    build_report,
    classify_progression,
    classify_view,
    label_column,
)

logger = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)  # of patients, in manifest.SPLITS order
RLE_FRACTION = 0.15
"""Default share of videos written RLE Lossless: enough to exercise decoders, small because RLE encoding (pylibjpeg-rle,
about 10 ms a 512x512 16-bit frame) costs more than rendering."""
# The manifest layout is defined once, in manifest.py, for the writer (here) and the readers.
CALCIF_GRADE_COLUMNS = CALCIFICATION_GRADE_COLUMNS


class PhantomError(ValueError):
    """Invalid phantom option or specification (names the field and what was expected)."""


# --------------------------------------------------------------------------------------------------------------
# Specifications
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """Disease of one segment: the ground truth its labels are computed from and its pixels are drawn with."""

    segment: str
    stenosis: float = 0.0
    """Percent diameter reduction at the lesion centre (0-99); a CTO is labelled 100 whatever this says."""
    cto: bool = False
    """Chronic total occlusion: the lumen ends at the lesion and nothing distal to it fills with contrast."""
    calcification: str = "none"
    """Grade from `CALCIFICATION_GRADES`: radio-opaque tracks along the wall, visible before contrast arrives."""
    thrombus: bool = False
    """Intraluminal filling defect just distal to the lesion centre."""
    position: float = 0.5
    """Lesion centre as a fraction of the segment's length."""
    length_mm: float = 8.0
    """Length of the narrowing (and the scale of the calcified wall track)."""

    def __post_init__(self) -> None:
        if self.segment not in SEGMENT_KEYS:
            raise PhantomError(f"Finding.segment must be one of SEGMENT_KEYS, got {self.segment!r}")
        if not 0.0 <= self.stenosis < 100.0:
            raise PhantomError(f"Finding.stenosis of {self.segment} must be in [0, 100), got {self.stenosis}")
        if self.calcification not in CALCIFICATION_GRADES:
            raise PhantomError(
                f"Finding.calcification of {self.segment} must be one of {CALCIFICATION_GRADES}, "
                f"got {self.calcification!r}"
            )
        if not 0.05 <= self.position <= 0.95:
            raise PhantomError(f"Finding.position of {self.segment} must be in [0.05, 0.95], got {self.position}")
        if not 1.0 <= self.length_mm <= 40.0:
            raise PhantomError(f"Finding.length_mm of {self.segment} must be in [1, 40], got {self.length_mm}")

    @property
    def stenosis_label(self) -> float:
        return 100.0 if self.cto else float(self.stenosis)


@dataclass(frozen=True)
class Anatomy:
    """A patient's coronary anatomy; fixed across the patient's serial studies."""

    dominance: Dominance
    has_ramus: bool
    vessel_scale: float = 1.0
    """Multiplies every lumen diameter (small or large arteries)."""
    heart_length_mm: float = 125.0
    heart_width_mm: float = 92.0
    axis_jitter_deg: tuple[float, float] = (0.0, 0.0)
    """Rotation of the long axis about the patient's left-right and head-foot axes (heart position varies)."""
    seed: int = 0
    """Seeds the small per-patient variation of the vessel courses."""

    def __post_init__(self) -> None:
        if self.dominance not in ("right", "left", "co"):
            raise PhantomError(f"Anatomy.dominance must be 'right', 'left' or 'co', got {self.dominance!r}")

    @property
    def segments(self) -> tuple[str, ...]:
        """Segments this anatomy has; the others get missing labels."""
        absent = set() if self.has_ramus else {"bx"}
        if self.dominance == "right":
            absent.add("lvp")
        return tuple(key for key in SEGMENT_KEYS if key not in absent)


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video and write it as DICOM (the pixels also depend on the render rng)."""

    anatomy: Anatomy
    findings: tuple[Finding, ...]
    territory: Territory
    view: str
    primary_angle: float
    """DICOM PositionerPrimaryAngle: LAO > 0 > RAO (degrees)."""
    secondary_angle: float
    """DICOM PositionerSecondaryAngle: cranial > 0 > caudal (degrees)."""
    num_frames: int = 32
    fps: int = 15
    image_size: int = 512
    bits_stored: int = 10
    heart_rate: float = 70.0
    cardiac_phase: float = 0.0
    """Cardiac phase of the first frame (0 = end-diastole)."""
    inject_start: float = 0.1
    """Fraction of the video at which contrast leaves the catheter tip region."""
    fill_time: float = 0.25
    """Fraction of the video the contrast front takes to travel the whole tree."""
    washout_start: float = 0.65
    washout_time: float = 0.5
    residual_contrast: float = 0.2
    """Fraction of the contrast left in the vessels once washed out."""
    contrast_per_mm: float = 0.2
    """Log-attenuation per mm of fully opacified lumen."""
    noise: float = 0.02
    """Quantum-noise standard deviation relative to the brightest background."""
    fill_factor: float = 0.88
    """Fraction of the field of view covered by the tree at end-diastole."""
    pan: tuple[float, float] = (0.0, 0.0)
    """Offset of the tree from the image centre, as fractions of the field of view (row, column)."""
    noise_seed: int = 0
    """Seed of the render rng (background texture and noise) used when the phantom set is written."""
    transfer_syntax: str = ExplicitVRLittleEndian
    series_uid: str = ""
    sop_uid: str = ""
    series_number: int = 1
    acquisition_time: str = "120000.000000"

    def __post_init__(self) -> None:
        if self.territory not in ("LCA", "RCA"):
            raise PhantomError(f"VideoSpec.territory must be 'LCA' or 'RCA', got {self.territory!r}")
        if self.view not in VIEWS:
            raise PhantomError(f"VideoSpec.view must be one of VIEWS, got {self.view!r}")
        if self.num_frames < 2:
            raise PhantomError(f"VideoSpec.num_frames must be >= 2, got {self.num_frames}")
        if self.image_size < 32:
            raise PhantomError(f"VideoSpec.image_size must be >= 32, got {self.image_size}")
        if self.bits_stored not in (8, 10, 12):
            raise PhantomError(f"VideoSpec.bits_stored must be 8, 10 or 12, got {self.bits_stored}")
        if self.transfer_syntax not in (ExplicitVRLittleEndian, RLELossless):
            raise PhantomError(
                f"VideoSpec.transfer_syntax must be {ExplicitVRLittleEndian} or {RLELossless}, "
                f"got {self.transfer_syntax!r}"
            )
        segments = [f.segment for f in self.findings]
        if len(set(segments)) != len(segments):
            raise PhantomError(f"VideoSpec.findings must have at most one finding per segment, got {segments}")
        absent = set(segments) - set(self.anatomy.segments)
        if absent:
            raise PhantomError(f"VideoSpec.findings on segments this anatomy lacks: {sorted(absent)}")

    @property
    def max_value(self) -> int:
        return (1 << self.bits_stored) - 1


@dataclass(frozen=True)
class StudySpec:
    """One angiography study of a patient: identity, anatomy, findings and its videos."""

    patient_id: str
    study_uid: str
    study_date: dt.date
    study_time: str
    serial_index: int
    split: str  # one of manifest.SPLITS
    anatomy: Anatomy
    findings: tuple[Finding, ...]
    videos: tuple[VideoSpec, ...]
    change_from_previous: str = ""
    patient_name: str = field(default="", repr=False)
    """Synthetic PHI, written only into the DICOM files (kept out of repr, logs and the manifest)."""
    birth_date: dt.date | None = field(default=None, repr=False)
    patient_sex: str = "O"

    @property
    def labels(self) -> dict[str, float | str]:
        return study_labels(self.anatomy, self.findings)


@dataclass(frozen=True)
class PhantomManifest:
    """What `generate_phantoms` wrote."""

    out_dir: Path
    studies_csv: Path
    videos_csv: Path
    num_patients: int
    num_studies: int
    num_videos: int


# --------------------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------------------
def study_labels(anatomy: Anatomy, findings: tuple[Finding, ...]) -> dict[str, float | str]:
    """Label columns (`LABEL_COLUMNS`) plus `{segment}_calcif` grades; segments the anatomy lacks are NaN."""
    by_segment = {f.segment: f for f in findings}
    present = set(anatomy.segments)
    labels: dict[str, float | str] = {}
    for key in SEGMENT_KEYS:
        finding = by_segment.get(key)
        if key not in present:
            if finding is not None:
                raise PhantomError(
                    f"finding on segment {key!r}, which this anatomy ({anatomy.dominance} dominance) lacks"
                )
            values: dict[str, float | str] = {task: math.nan for task in (*SEGMENT_TASKS, "calcif")}
        else:
            finding = finding or Finding(key)
            stenosis = finding.stenosis_label
            values = {
                "stenosis": stenosis,
                "stenosis_binary": float(stenosis >= SIGNIFICANT_STENOSIS),
                "calcif_binary": float(finding.calcification in CALCIFICATION_GRADES[2:]),  # moderate or severe
                "cto": float(finding.cto),
                "thrombus": float(finding.thrombus),
                "calcif": finding.calcification,
            }
        for task, value in values.items():
            labels[label_column(key, task)] = value
    return labels


def stenosis_by_segment(labels: dict[str, float | str]) -> dict[str, float]:
    """Per-segment stenosis (NaN where missing), the input of `classify_progression`."""
    return {key: float(labels[label_column(key, "stenosis")]) for key in SEGMENT_KEYS}


# --------------------------------------------------------------------------------------------------------------
# Anatomy: vessel courses on the heart surface
# --------------------------------------------------------------------------------------------------------------
# A point on the heart is (u, psi, lift): u runs along the long axis from the base (-1) to the apex (+1); psi is the
# azimuth in degrees (0 anterior, +90 obtuse margin, +-180 crux on the diaphragmatic surface, -90 acute margin);
# lift scales the distance from the axis (1 = on the epicardial surface, < 1 inside: septal branches).
_AV_GROOVE_U = -0.46
_OSTIA = {"left_ostium": (-0.64, 40.0, 0.78), "right_ostium": (-0.66, -34.0, 0.76)}


@dataclass(frozen=True)
class _Course:
    """Path of one vessel: where it leaves from and the keypoints it runs through.

    `start` is an ostium name or `(segment, fraction)` of a parent's length. Each keypoint is (segment or None for an
    unlabelled side branch, u, psi, lift); the path leading to a keypoint belongs to that keypoint's segment.
    With `relative`, u and psi are offsets from the start point.
    """

    start: str | tuple[str, float]
    points: tuple[tuple[str | None, float, float, float], ...]
    diameter_mm: tuple[float, float] | None = None
    """Start and end diameter of an unlabelled branch (labelled segments use `_DIAMETER_MM`)."""
    relative: bool = False


# Reference lumen diameters (start, end of segment) in mm, right-dominant adult.
_DIAMETER_MM: dict[str, tuple[float, float]] = {
    "prox_rca": (4.0, 3.7),
    "mid_rca": (3.6, 3.2),
    "dist_rca": (3.1, 2.7),
    "pda": (2.3, 1.5),
    "posterolateral": (2.3, 1.5),
    "left_main": (4.6, 4.3),
    "prox_lad": (3.9, 3.4),
    "mid_lad": (3.2, 2.6),
    "dist_lad": (2.3, 1.4),
    "D1": (2.5, 1.6),
    "D2": (2.1, 1.3),
    "prox_lcx": (3.6, 3.1),
    "mid_lcx": (2.9, 2.4),
    "dist_lcx": (2.2, 1.6),
    "om1": (2.5, 1.5),
    "om2": (2.2, 1.4),
    "bx": (2.4, 1.5),
    "lvp": (2.1, 1.4),
}
# Which artery supplies the inferior wall scales the two trees: the dominant one is larger.
_DOMINANCE_SCALE: dict[str, dict[str, float]] = {
    "right": {"LCA": 1.0, "RCA": 1.0, "LCX": 1.0},
    "left": {"LCA": 1.0, "RCA": 0.62, "LCX": 1.2},
    "co": {"LCA": 1.0, "RCA": 0.85, "LCX": 1.1},
}
_LCX_TREE = {"prox_lcx", "mid_lcx", "dist_lcx", "om1", "om2", "lvp", "pda", "posterolateral"}


def _courses(anatomy: Anatomy, territory: Territory) -> list[_Course]:
    """Vessel courses of one territory, parents before children (a hand-drawn SYNTAX tree)."""
    right = anatomy.dominance == "right"
    if territory == "LCA":
        courses = [
            _Course("left_ostium", (("left_main", -0.61, 43, 0.88), ("left_main", -0.56, 48, 1.0))),
            _Course(
                ("left_main", 1.0),
                (
                    ("prox_lad", -0.44, 30, 1.0),
                    ("prox_lad", -0.26, 17, 1.0),
                    ("mid_lad", 0.0, 12, 1.0),
                    ("mid_lad", 0.28, 12, 1.0),
                    ("dist_lad", 0.56, 15, 1.0),
                    ("dist_lad", 0.82, 25, 1.0),
                    ("dist_lad", 0.94, 55, 1.0),
                ),
            ),
            _Course(
                ("left_main", 1.0),
                (
                    ("prox_lcx", -0.50, 72, 1.0),
                    ("prox_lcx", _AV_GROOVE_U, 95, 1.0),
                    ("mid_lcx", _AV_GROOVE_U, 118, 1.0),
                    ("mid_lcx", _AV_GROOVE_U, 134, 1.0),
                    *(
                        (("dist_lcx", _AV_GROOVE_U, 150, 1.0), ("dist_lcx", -0.40, 162, 1.0))
                        if right
                        else (("dist_lcx", _AV_GROOVE_U, 156, 1.0), ("dist_lcx", _AV_GROOVE_U, 178, 1.0))
                    ),
                ),
            ),
            _Course(("prox_lad", 1.0), (("D1", -0.08, 38, 1.0), ("D1", 0.18, 56, 1.0), ("D1", 0.40, 68, 1.0))),
            _Course(("mid_lad", 1.0), (("D2", 0.45, 34, 1.0), ("D2", 0.66, 50, 1.0))),
            _Course(("prox_lcx", 1.0), (("om1", -0.22, 100, 1.0), ("om1", 0.15, 106, 1.0), ("om1", 0.45, 110, 1.0))),
            _Course(("mid_lcx", 1.0), (("om2", -0.18, 140, 1.0), ("om2", 0.25, 146, 1.0))),
            # Septal perforators dive into the interventricular septum (unlabelled).
            _Course(("prox_lad", 0.8), ((None, 0.10, -14, 0.82), (None, 0.20, -22, 0.70)), (1.3, 0.7), relative=True),
            _Course(("mid_lad", 0.35), ((None, 0.10, -14, 0.82), (None, 0.20, -22, 0.70)), (1.2, 0.7), relative=True),
            _Course(("mid_lad", 0.85), ((None, 0.08, -12, 0.85), (None, 0.15, -18, 0.76)), (1.0, 0.6), relative=True),
        ]
        if anatomy.has_ramus:
            courses.append(
                _Course(("left_main", 1.0), (("bx", -0.32, 66, 1.0), ("bx", 0.0, 76, 1.0), ("bx", 0.28, 82, 1.0)))
            )
        if not right:
            courses += [
                _Course(
                    ("dist_lcx", 1.0), (("pda", -0.30, 181, 1.0), ("pda", 0.05, 182, 1.0), ("pda", 0.45, 184, 1.0))
                ),
                _Course(
                    ("dist_lcx", 0.55),
                    (
                        ("posterolateral", -0.34, 160, 1.0),
                        ("posterolateral", -0.05, 150, 1.0),
                        ("posterolateral", 0.18, 146, 1.0),
                    ),
                ),
                _Course(("dist_lcx", 1.0), (("lvp", -0.25, 173, 1.0), ("lvp", 0.20, 168, 1.0))),
            ]
        return courses
    crux = anatomy.dominance != "left"
    courses = [
        _Course(
            "right_ostium",
            (
                ("prox_rca", -0.58, -40, 0.95),
                ("prox_rca", -0.48, -56, 1.0),
                ("prox_rca", _AV_GROOVE_U, -75, 1.0),
                ("mid_rca", -0.43, -100, 1.0),
                ("mid_rca", -0.41, -127, 1.0),
                *(
                    (("dist_rca", -0.43, -154, 1.0), ("dist_rca", _AV_GROOVE_U, -180, 1.0))
                    if crux
                    else (("dist_rca", -0.42, -140, 1.0), ("dist_rca", -0.36, -152, 1.0))
                ),
            ),
        ),
        # Conus branch to the right-ventricular outflow tract and an acute marginal branch (unlabelled).
        _Course(("prox_rca", 0.2), ((None, -0.04, 25, 1.0), (None, 0.02, 45, 1.0)), (1.2, 0.7), relative=True),
        _Course(("mid_rca", 0.55), ((None, 0.25, 6, 1.0), (None, 0.55, 12, 1.0)), (1.6, 0.9), relative=True),
    ]
    if right:
        courses += [
            _Course(("dist_rca", 1.0), (("pda", -0.30, -181, 1.0), ("pda", 0.05, -180, 1.0), ("pda", 0.45, -176, 1.0))),
            _Course(
                ("dist_rca", 1.0),
                (
                    ("posterolateral", -0.47, -198, 1.0),
                    ("posterolateral", -0.36, -212, 1.0),
                    ("posterolateral", -0.05, -220, 1.0),
                ),
            ),
        ]
    return courses


def _parents(anatomy: Anatomy) -> dict[str, str | None]:
    """Segment -> the segment it leaves from (None at an ostium), read off the course table."""
    parents: dict[str, str | None] = {}
    for territory in ("LCA", "RCA"):
        for course in _courses(anatomy, territory):
            previous = None if isinstance(course.start, str) else course.start[0]
            for key, *_ in course.points:
                if key is None:
                    break
                if key not in parents:
                    parents[key] = previous
                previous = key
    return parents


def downstream_segments(anatomy: Anatomy, segment: str) -> set[str]:
    """Segments distal to `segment` (which fill through it), e.g. an occluded mid LAD blocks the distal LAD and D2."""
    parents = _parents(anatomy)
    out: set[str] = set()
    changed = True
    while changed:
        changed = False
        for key, parent in parents.items():
            if key not in out and (parent == segment or parent in out):
                out.add(key)
                changed = True
    return out


# --------------------------------------------------------------------------------------------------------------
# Geometry: the tree as 3-D samples, cardiac motion and C-arm projection
# --------------------------------------------------------------------------------------------------------------
_SAMPLE_MM = 0.25
_CATHETER_RADIUS_MM = 1.0
_CATHETER_FLOOR = 0.45  # opacity of the catheter without contrast (its wall), relative to a full column of contrast
_CATHETER_ARC_SCALE = 0.15  # contrast crosses the catheter quickly: its arc length counts this much
_SEGMENT_CODE = {key: i for i, key in enumerate(SEGMENT_KEYS)}
_UNLABELLED, _CATHETER = -1, -2


@dataclass
class _Tree:
    """Centerline samples of one territory (plus the catheter), as parallel arrays."""

    position: np.ndarray  # (N, 3) mm, patient LPS axes, heart centre at the origin, end-diastole
    lumen: np.ndarray  # (N,) lumen radius in mm after lesions (0 where nothing fills)
    wall: np.ndarray  # (N,) reference radius in mm (calcification sits on it)
    arc: np.ndarray  # (N,) mm from the ostium along the tree (negative on the catheter)
    code: np.ndarray  # (N,) segment index, _UNLABELLED or _CATHETER
    piece: np.ndarray  # (N,) index of the polyline the sample belongs to
    end: np.ndarray  # (N,) -1 first sample of a piece, +1 last, 0 inside
    anchor: np.ndarray  # (N,) for the first samples of a branch, the parent sample it leaves from (else -1)
    floor: np.ndarray  # (N,) minimum opacity (catheter wall)
    calcification: np.ndarray  # (N,) peak log-attenuation of the wall tracks
    thrombus: np.ndarray  # (N,) radius of the filling defect in mm
    thrombus_offset: np.ndarray  # (N,) offset of the defect from the axis in mm (signed)
    motion: np.ndarray  # (N,) how much the sample follows the heart (1 on the heart, fading up the catheter)


def _heart_axes(anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (e1: psi=0, e2: psi=90, e3: base->apex) of the heart frame in patient LPS coordinates."""
    tilt, swing = np.deg2rad(anatomy.axis_jitter_deg)
    long_axis = np.array([0.62, -0.52, -0.45])  # apex points left, anterior and inferior
    rx = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    rz = np.array([[math.cos(swing), -math.sin(swing), 0], [math.sin(swing), math.cos(swing), 0], [0, 0, 1]])
    e3 = rz @ rx @ long_axis
    e3 /= np.linalg.norm(e3)
    anterior = np.array([0.0, -1.0, 0.0])
    e1 = anterior - (anterior @ e3) * e3
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(e1, e3), e3


def _surface_points(anatomy: Anatomy, uvl: np.ndarray) -> np.ndarray:
    """(u, psi_deg, lift) -> 3-D points on (or inside) the ellipsoidal heart."""
    e1, e2, e3 = _heart_axes(anatomy)
    half_length, radius = anatomy.heart_length_mm / 2, anatomy.heart_width_mm / 2
    u, psi, lift = uvl[:, 0], np.deg2rad(uvl[:, 1]), uvl[:, 2]
    rho = radius * np.sqrt(np.clip(1.0 - u**2, 0.02, None)) * lift
    radial = np.cos(psi)[:, None] * e1 + np.sin(psi)[:, None] * e2
    return half_length * u[:, None] * e3 + rho[:, None] * radial


def _resample_path(anatomy: Anatomy, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth path through (u, psi, lift) keypoints, resampled every `_SAMPLE_MM` mm.

    Returns 3-D points, (u, psi, lift) and the keypoint parameter of every sample (segment membership).
    """
    knots = np.arange(len(keypoints), dtype=float)
    spline = make_interp_spline(knots, keypoints, k=min(3, len(keypoints) - 1))
    fine_t = np.linspace(0.0, knots[-1], 60 * len(keypoints))
    fine = spline(fine_t)
    xyz = _surface_points(anatomy, fine)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xyz, axis=0), axis=1))])
    count = max(int(arc[-1] / _SAMPLE_MM) + 1, 2)
    targets = np.linspace(0.0, arc[-1], count)
    t = np.interp(targets, arc, fine_t)
    uvl = spline(t)
    return _surface_points(anatomy, uvl), uvl, t


def _bump(x: np.ndarray) -> np.ndarray:
    """Smooth compact bump: 1 at 0, 0 beyond |x| = 1 (cos^2 window)."""
    return np.where(np.abs(x) < 1.0, np.cos(0.5 * np.pi * np.clip(x, -1, 1)) ** 2, 0.0)


_CALCIFICATION = {"none": (0.0, 0.0), "mild": (0.35, 0.6), "moderate": (0.6, 1.0), "severe": (0.9, 1.6)}
"""Grade -> (peak log-attenuation of a 0.35 mm wide wall track, track length relative to the lesion length)."""


@functools.lru_cache(maxsize=8)
def _build_tree(anatomy: Anatomy, findings: tuple[Finding, ...], territory: Territory) -> _Tree:
    """Centerline samples of the territory's vessels with the findings' lesions applied, plus the guiding catheter.

    Cached: the videos of a study share their trees (callers never modify the arrays).
    """
    variation = np.random.default_rng(anatomy.seed)
    by_segment = {f.segment: f for f in findings}
    pieces: list[dict[str, np.ndarray]] = [_catheter_piece(anatomy, territory)]
    piece_of: dict[str, int] = {}  # segment -> index of the piece that draws it
    dominance_scale = _DOMINANCE_SCALE[anatomy.dominance]

    def sample_at(segment: str, fraction: float) -> tuple[dict[str, np.ndarray], int]:
        piece = pieces[piece_of[segment]]
        idx = np.flatnonzero(piece["code"] == _SEGMENT_CODE[segment])
        return piece, int(idx[min(round(fraction * (len(idx) - 1)), len(idx) - 1)])

    for course in _courses(anatomy, territory):
        jitter = variation.normal(0.0, 1.0, (len(course.points), 2)) * (0.025, 4.0)  # same draws whatever is kept
        if isinstance(course.start, str):
            start_uvl, start_arc, start_blocked, parent_radius = np.array(_OSTIA[course.start]), 0.0, False, 0.0
            junction = -1
        else:
            parent, j = sample_at(*course.start)
            junction = parent["offset"] + j
            start_uvl, start_arc = parent["uvl"][j], parent["arc"][j]
            start_blocked = bool(parent["blocked"][j])
            parent_radius = float(parent["wall"][j])
        keys = [key for key, *_ in course.points]
        rel = np.array([p[1:] for p in course.points], dtype=float)
        rel[:, :2] += jitter
        if course.relative:
            rel[:, :2] += start_uvl[:2]
        keypoints = np.vstack([start_uvl, rel])
        xyz, uvl, t = _resample_path(anatomy, keypoints)
        which = np.clip(np.ceil(t - 1e-9).astype(int), 1, len(keys)) - 1
        code = np.array([_UNLABELLED if keys[w] is None else _SEGMENT_CODE[keys[w]] for w in which], dtype=np.int16)
        arc_local = np.arange(len(xyz)) * _SAMPLE_MM
        wall = np.zeros(len(xyz))
        lumen = np.ones(len(xyz))  # multiplicative narrowing
        calcification = np.zeros(len(xyz))
        thrombus = np.zeros(len(xyz))
        thrombus_offset = np.zeros(len(xyz))
        blocked = np.full(len(xyz), start_blocked)
        for key in dict.fromkeys(keys):
            idx = np.flatnonzero(code == (_UNLABELLED if key is None else _SEGMENT_CODE[key]))
            if key is None:
                d0, d1 = course.diameter_mm or (1.0, 0.6)
                scale = 1.0
            else:
                d0, d1 = _DIAMETER_MM[key]
                scale = dominance_scale["LCX"] if key in _LCX_TREE else dominance_scale[territory]
            frac = np.linspace(0.0, 1.0, len(idx))
            wall[idx] = 0.5 * (d0 + (d1 - d0) * frac) * scale * anatomy.vessel_scale
            finding = by_segment.get(key) if key is not None else None
            if finding is None:
                continue
            seg_arc = arc_local[idx]
            centre = seg_arc[0] + finding.position * (seg_arc[-1] - seg_arc[0])
            half = 0.5 * finding.length_mm
            x = (arc_local - centre) / half
            if finding.cto:
                # Tapered stump over half the lesion length, nothing fills beyond the occlusion.
                lumen *= np.where(x >= 0.0, 0.0, np.clip(-x, 0.0, 1.0) ** 0.5)
                blocked |= x >= 0.0
            else:
                lumen *= 1.0 - finding.stenosis / 100.0 * _bump(x)
            if finding.thrombus:
                # Just distal to the narrowing; proximal to an occlusion (nothing fills beyond it).
                xt = (arc_local - (centre + (-1.3 if finding.cto else 0.5) * half)) / (0.8 * half)
                profile = np.sqrt(np.clip(1.0 - xt**2, 0.0, None))
                thrombus = np.maximum(thrombus, 0.55 * profile)  # relative to the local lumen radius
                thrombus_offset = np.where(profile > 0, 0.2, thrombus_offset)
            strength, extent = _CALCIFICATION[finding.calcification]
            if strength > 0.0:
                xc = (arc_local - centre) / (half * extent)
                calcification = np.maximum(calcification, strength * _bump(xc) ** 0.5)
        lumen_radius = np.where(blocked, 0.0, wall * lumen)
        piece = {
            "offset": sum(len(p["xyz"]) for p in pieces),
            "xyz": xyz,
            "uvl": uvl,
            "arc": start_arc + arc_local,
            "code": code,
            "wall": wall,
            "lumen": lumen_radius,
            "blocked": blocked,
            "anchor": np.where(arc_local <= parent_radius + 3.0, junction, -1),
            "calcification": calcification,
            "thrombus": thrombus * lumen_radius,
            "thrombus_offset": thrombus_offset * lumen_radius,
            "floor": np.zeros(len(xyz)),
            "motion": np.ones(len(xyz)),
        }
        pieces.append(piece)
        for key in keys:
            if key is not None:
                piece_of[key] = len(pieces) - 1
    n = [len(p["xyz"]) for p in pieces]
    ends = [np.r_[-1, np.zeros(k - 2, dtype=np.int8), 1] for k in n]
    return _Tree(
        position=np.vstack([p["xyz"] for p in pieces]),
        lumen=np.concatenate([p["lumen"] for p in pieces]),
        wall=np.concatenate([p["wall"] for p in pieces]),
        arc=np.concatenate([p["arc"] for p in pieces]),
        code=np.concatenate([p["code"] for p in pieces]),
        piece=np.repeat(np.arange(len(pieces)), n),
        end=np.concatenate(ends).astype(np.int8),
        anchor=np.concatenate([p["anchor"] for p in pieces]),
        floor=np.concatenate([p["floor"] for p in pieces]),
        calcification=np.concatenate([p["calcification"] for p in pieces]),
        thrombus=np.concatenate([p["thrombus"] for p in pieces]),
        thrombus_offset=np.concatenate([p["thrombus_offset"] for p in pieces]),
        motion=np.concatenate([p["motion"] for p in pieces]),
    )


def _catheter_piece(anatomy: Anatomy, territory: Territory) -> dict[str, np.ndarray]:
    """Guiding catheter: engaged in the ostium, running up the ascending aorta out of the image."""
    ostium = _surface_points(anatomy, np.array([_OSTIA["left_ostium" if territory == "LCA" else "right_ostium"]]))[0]
    # Into the ostium from above: the ascending aorta lies to the right of the left ostium, left of the right one.
    lateral = -12.0 if territory == "LCA" else 8.0
    bend = ostium + (0.4 * lateral, -4.0, 12.0)
    control = np.array(
        [ostium, bend, bend + (lateral, -2.0, 30.0), bend + (lateral - 6, 0.0, 90.0), bend + (lateral - 10, 4.0, 250.0)]
    )
    spline = make_interp_spline(np.arange(len(control), dtype=float), control, k=3)
    fine = spline(np.linspace(0, len(control) - 1, 400))
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    targets = np.arange(0.0, arc[-1], _SAMPLE_MM)
    xyz = np.column_stack([np.interp(targets, arc, fine[:, i]) for i in range(3)])
    count = len(xyz)
    return {
        "xyz": xyz,
        "uvl": np.zeros((count, 3)),
        "arc": -_CATHETER_ARC_SCALE * targets,
        "code": np.full(count, _CATHETER, dtype=np.int16),
        "wall": np.full(count, _CATHETER_RADIUS_MM),
        "lumen": np.full(count, _CATHETER_RADIUS_MM),
        "blocked": np.zeros(count, dtype=bool),
        "anchor": np.full(count, -1),
        "calcification": np.zeros(count),
        "thrombus": np.zeros(count),
        "thrombus_offset": np.zeros(count),
        "floor": np.full(count, _CATHETER_FLOOR),
        "motion": np.exp(-targets / 25.0),
    }


def _systole(phase: np.ndarray | float) -> np.ndarray:
    """Contraction 0 (end-diastole) -> 1 (end-systole) -> 0 over one cardiac cycle; systole takes 35 %."""
    phase = np.mod(phase, 1.0)
    rising = np.sin(0.5 * np.pi * np.clip(phase / 0.35, 0, 1)) ** 2
    falling = np.cos(0.5 * np.pi * np.clip((phase - 0.35) / 0.65, 0, 1)) ** 2
    return np.where(phase <= 0.35, rising, falling)


def _deform(tree: _Tree, anatomy: Anatomy, contraction: float) -> np.ndarray:
    """Sample positions at one point of the cardiac cycle: radial squeeze, base-to-apex shortening and apical twist."""
    _, _, e3 = _heart_axes(anatomy)
    half_length = anatomy.heart_length_mm / 2
    p = tree.position
    axial = p @ e3
    radial = p - axial[:, None] * e3
    apex = 0.95 * half_length
    new_axial = apex - (apex - axial) * (1.0 - 0.10 * contraction)
    twist = np.deg2rad(7.0) * contraction * np.clip((axial / half_length + 1.0) / 2.0, 0, 1)
    # Rodrigues rotation of the radial part about the long axis.
    cross = np.cross(e3, radial)
    rotated = radial * np.cos(twist)[:, None] + cross * np.sin(twist)[:, None]
    moved = new_axial[:, None] * e3 + rotated * (1.0 - 0.12 * contraction)
    return p + tree.motion[:, None] * (moved - p)


def _camera(primary_angle: float, secondary_angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image axes (right, up) and the source-to-detector direction of a C-arm position.

    LAO (primary > 0) swings the detector to the patient's left, cranial (secondary > 0) tilts it toward the head;
    the image is seen from the detector, so in AP the patient's left is on the right and the head at the top.
    """
    a, b = math.radians(primary_angle), math.radians(secondary_angle)
    beam = math.cos(b) * np.array([math.sin(a), -math.cos(a), 0.0]) + math.sin(b) * np.array([0.0, 0.0, 1.0])
    head = np.array([0.0, 0.0, 1.0])
    up = head - (head @ beam) * beam
    up /= np.linalg.norm(up)
    right = np.cross(-beam, up)
    return right, up, beam


@dataclass
class _Projection:
    right: np.ndarray
    up: np.ndarray
    beam: np.ndarray
    centre: np.ndarray  # (right, up) coordinates in mm of the image centre
    mm_per_pixel: float
    size: int

    def pixels(self, points: np.ndarray) -> np.ndarray:
        """3-D points (mm) -> (row, column) pixel coordinates (pixel centres at integers)."""
        half = (self.size - 1) / 2.0
        col = half + (points @ self.right - self.centre[0]) / self.mm_per_pixel
        row = half - (points @ self.up - self.centre[1]) / self.mm_per_pixel
        return np.column_stack([row, col])


def _projection(spec: VideoSpec, tree: _Tree) -> _Projection:
    """Fit the field of view to the tree at end-diastole, like an operator framing the injection."""
    right, up, beam = _camera(spec.primary_angle, spec.secondary_angle)
    vessels = tree.code != _CATHETER
    xy = np.column_stack([tree.position[vessels] @ right, tree.position[vessels] @ up])
    low, high = xy.min(axis=0), xy.max(axis=0)
    fov = float(np.clip((high - low).max() / spec.fill_factor, 100.0, 170.0))
    centre = 0.5 * (low + high) + fov * np.array([-spec.pan[1], spec.pan[0]])
    return _Projection(right, up, beam, centre, fov / spec.image_size, spec.image_size)


_PHASES = 6  # precomputed cardiac phases; frames reuse the nearest one


def _phase_index(spec: VideoSpec) -> np.ndarray:
    """Precomputed cardiac phase (0 .. _PHASES - 1) shown in every frame."""
    cycles = spec.cardiac_phase + np.arange(spec.num_frames) / spec.fps * spec.heart_rate / 60.0
    return np.rint(cycles * _PHASES).astype(int) % _PHASES


def segment_centerlines(spec: VideoSpec, frame_index: int) -> dict[str, np.ndarray]:
    """Projected centerline (row, column) pixel coordinates of every segment drawn in one frame.

    Samples are uniform in arc length, so a finding at `position` sits near index `position * (len - 1)`.
    Useful for overlays and to check that a lesion is where its label says.
    """
    if not 0 <= frame_index < spec.num_frames:
        raise PhantomError(f"frame_index must be in [0, {spec.num_frames}), got {frame_index}")
    tree = _build_tree(spec.anatomy, spec.findings, spec.territory)
    projection = _projection(spec, tree)
    phase = _phase_index(spec)[frame_index] / _PHASES
    pixels = projection.pixels(_deform(tree, spec.anatomy, float(_systole(phase))))
    return {
        key: pixels[tree.code == _SEGMENT_CODE[key]] for key in SEGMENT_KEYS if np.any(tree.code == _SEGMENT_CODE[key])
    }


# --------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------
def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.minimum(np.maximum(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _contrast(spec: VideoSpec, tree: _Tree, frame_index: int) -> np.ndarray:
    """Opacity (0-1) of every sample in one frame: a front travels down the tree, later a wash-out front follows."""
    tau = frame_index / (spec.num_frames - 1)
    filled = tree.lumen > 0
    low, high = float(tree.arc.min()), float(tree.arc[filled].max()) + 10.0
    front_in = low + (high - low) * (tau - spec.inject_start) / spec.fill_time
    front_out = low + (high - low) * (tau - spec.washout_start) / spec.washout_time
    arriving = _smoothstep((front_in - tree.arc) / 8.0)
    leaving = 1.0 - (1.0 - spec.residual_contrast) * _smoothstep((front_out - tree.arc) / 40.0)
    return np.maximum(arriving * leaving, tree.floor).astype(np.float32)


def _chord(radius: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Path length of a ray through a cylinder of `radius` passing at `distance` from its axis."""
    return 2.0 * np.sqrt(np.maximum(radius * radius - distance * distance, 0.0))


def _ellipsoid_chord(origin: np.ndarray, beam: np.ndarray, axes: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """Chord length of parallel rays (origins (M, 3), direction `beam`) through an ellipsoid at the origin."""
    o = (origin @ axes.T) / semi
    d = (axes @ beam) / semi
    a = d @ d
    b = 2.0 * (o @ d)
    c = np.einsum("ij,ij->i", o, o) - 1.0
    disc = np.maximum(b * b - 4 * a * c, 0.0)
    return np.sqrt(disc) / a


def _background(spec: VideoSpec, projection: _Projection, rng: np.random.Generator) -> np.ndarray:
    """Log-attenuation of the static anatomy (heart shadow, mediastinum, spine, ribs, diaphragm, lung texture).

    Drawn on a coarse grid (the structures are smooth) and upsampled; returns a (size, size) float32 map.
    """
    size = spec.image_size
    n = max(size // 4, 32)
    mm = projection.mm_per_pixel * size / n
    coords = (np.arange(n) - (n - 1) / 2.0) * mm
    gx, gy = np.meshgrid(coords + projection.centre[0], projection.centre[1] - coords)  # right, up (mm)
    origins = gx.reshape(-1, 1) * projection.right + gy.reshape(-1, 1) * projection.up
    att = np.zeros(n * n)

    e1, e2, e3 = _heart_axes(spec.anatomy)
    semi = np.array([spec.anatomy.heart_width_mm, spec.anatomy.heart_width_mm, spec.anatomy.heart_length_mm]) * 0.55
    att += 0.0045 * _ellipsoid_chord(origins, projection.beam, np.vstack([e1, e2, e3]), semi)

    # Spine: a column behind the heart along the head-foot axis, with vertebral bodies and disc spaces.
    spine_point, head = np.array([-25.0, 85.0, 0.0]), np.array([0.0, 0.0, 1.0])
    axis2 = np.array([head @ projection.right, head @ projection.up])
    axis_len = float(np.linalg.norm(axis2))
    rel = np.column_stack([gx.ravel(), gy.ravel()]) - [spine_point @ projection.right, spine_point @ projection.up]
    if axis_len > 1e-3:
        along = rel @ (axis2 / axis_len)
        across = np.abs(rel @ np.array([-axis2[1], axis2[0]]) / axis_len)
        vertebrae = 1.0 - 0.25 * _bump((np.mod(along / axis_len + rng.uniform(0, 28), 28.0) - 14.0) / 3.0)
        att += 0.4 * _chord(22.0, across) / 44.0 * vertebrae
        att += 0.20 * np.exp(-((across / 55.0) ** 2))  # mediastinum
    # Ribs: tubes with a cortical shell around the thorax, higher at the back than at the front. The posterior and
    # the (fainter) anterior arcs are drawn in separate passes so that where they cross both show.
    theta = np.linspace(-np.pi, np.pi, 720)
    levels = np.arange(-200.0, 170.0, 26.0) + rng.uniform(0, 26)
    ribs = np.vstack(
        [
            np.column_stack([-20 + 150 * np.sin(theta), 20 - 115 * np.cos(theta), z + 80 * np.abs(theta) / np.pi])
            for z in levels
        ]
    )
    arc_angle = np.tile(np.abs(theta), len(levels))
    rib_cells = np.floor((projection.pixels(ribs) + 0.5) * n / size).astype(int)
    inside = np.all((rib_cells >= 0) & (rib_cells < n), axis=1)
    for part, weight in ((arc_angle > 0.5 * np.pi, 0.22), ((arc_angle <= 0.5 * np.pi) & (arc_angle > 0.6), 0.12)):
        drawn = np.flatnonzero(inside & part)
        if not drawn.size:
            continue
        label = np.full((n, n), -1, dtype=np.int32)
        label[rib_cells[drawn, 0], rib_cells[drawn, 1]] = drawn
        d = ndimage.distance_transform_edt(label < 0).ravel() * mm
        att += weight * (_chord(6.0, d) - 0.6 * _chord(4.5, d)) / 12.0
    # Diaphragm: a dome under the heart; below its edge the abdomen is much denser.
    dome = np.array([20.0, 0.0, -0.5 * spec.anatomy.heart_length_mm - 12.0]) @ np.column_stack(
        [projection.right, projection.up]
    )
    edge = dome[1] - (gx.ravel() - dome[0]) ** 2 / rng.uniform(180.0, 320.0)
    att += 0.6 * _smoothstep((edge - gy.ravel()) / 25.0)
    # Lung texture and detector vignetting.
    texture = ndimage.gaussian_filter(rng.standard_normal((n, n)), 2.5)
    att += 0.04 * (texture / (texture.std() + 1e-9)).ravel()
    radius2 = ((gx.ravel() - projection.centre[0]) ** 2 + (gy.ravel() - projection.centre[1]) ** 2) / (
        0.5 * n * mm
    ) ** 2
    att += -np.log(1.0 - 0.12 * np.clip(radius2, 0, 2))
    att = ndimage.gaussian_filter(att.reshape(n, n), 0.8)  # scatter and focal-spot blur
    att -= np.percentile(att, 2.0)
    return _upsample(att.astype(np.float32), size)


def _upsample(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square image to size x size (pixel-centre aligned, edges clamped).

    The same values as `scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest")`, written as two separable
    gathers because that is four times faster for the one full-resolution upsampling every video needs.
    """
    n = image.shape[0]
    x = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0.0, n - 1)
    low = np.floor(x).astype(int)
    high = np.minimum(low + 1, n - 1)
    w = (x - low).astype(image.dtype)
    rows = image[low] * (1 - w)[:, None] + image[high] * w[:, None]
    return np.ascontiguousarray(rows[:, low] * (1 - w) + rows[:, high] * w)  # column gathers come out F-ordered


@dataclass
class _Band:
    """Pixels near a vessel in one cardiac phase, with what every frame needs to shade them."""

    flat: np.ndarray  # (M,) flat pixel index
    sample: np.ndarray  # (M,) nearest centerline sample
    opacity: np.ndarray  # (M,) log-attenuation at full contrast (contrast_per_mm * lumen chord)
    base: np.ndarray  # (M,) background intensity times the calcification's transmission
    background: np.ndarray  # (M,) background intensity


def _band(spec: VideoSpec, tree: _Tree, projection: _Projection, contraction: float, background: np.ndarray) -> _Band:
    """Rasterise the projected centerlines once and shade the pixels around them (distance transform + lumen chords)."""
    size = spec.image_size
    mm = projection.mm_per_pixel
    pixels = projection.pixels(_deform(tree, spec.anatomy, contraction))
    starts = np.flatnonzero(np.r_[True, np.diff(tree.piece) != 0])
    first = starts[tree.piece]
    last = np.r_[starts[1:], len(tree.piece)][tree.piece] - 1
    # Central differences inside a piece, one-sided at its ends.
    index = np.arange(len(pixels))
    ahead, behind = np.minimum(index + 1, last), np.maximum(index - 1, first)
    tangent = (pixels[ahead] - pixels[behind]) / (ahead - behind)[:, None]
    step = np.linalg.norm(tangent, axis=1) + 1e-6  # pixels between consecutive samples (foreshortened)
    tangent /= step[:, None]

    # Nearest sample by a distance transform, on a half-resolution grid for large images (the exact distance to the
    # sample's tangent line is computed below, so only the choice of sample is coarse).
    factor = 2 if size >= 384 else 1
    n = -(-size // factor)
    cells = np.floor((pixels + 0.5) / factor).astype(int)
    keep = np.all((cells >= 0) & (cells < n), axis=1)
    # Thin vessels first so that where vessels overlap the larger lumen wins the pixel.
    order = np.flatnonzero(keep)[np.argsort(tree.wall[keep], kind="stable")]
    if not order.size:
        return _Band(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.float32, np.float32, np.float32)))
    # A cell is shaded when it may lie within the wall (or the parent's wall, near a branch origin) plus a margin.
    reach_mm = np.maximum(tree.wall, tree.wall[np.maximum(tree.anchor, 0)] * (tree.anchor >= 0)) + 1.5 * mm + 0.5
    reach = reach_mm / (mm * factor) + 1.0
    # The distance transform only needs the box around the tree.
    pad = int(np.ceil(reach.max())) + 1
    low = np.maximum(cells[order].min(axis=0) - pad, 0)
    high = np.minimum(cells[order].max(axis=0) + pad + 1, n)
    label = np.full(tuple(high - low), -1, dtype=np.int32)
    label[cells[order, 0] - low[0], cells[order, 1] - low[1]] = order
    dist, nearest = ndimage.distance_transform_edt(label < 0, return_indices=True)
    closest = label[nearest[0], nearest[1]]
    cy, cx = np.nonzero(dist <= reach[closest])
    sample = closest[cy, cx]  # int32
    cy, cx = cy + low[0], cx + low[1]
    if factor > 1:
        oy, ox = np.divmod(np.arange(factor * factor), factor)
        rows = (cy[:, None] * factor + oy).ravel()
        cols = (cx[:, None] * factor + ox).ravel()
        sample = np.repeat(sample, factor * factor)
        inside = (rows < size) & (cols < size)
        rows, cols, sample = rows[inside], cols[inside], sample[inside]
    else:
        rows, cols = cy, cx

    # float32 and 1-D copies: these gathers run over every candidate pixel.
    py, px, ty, tx = (np.ascontiguousarray(a, dtype=np.float32) for a in (*pixels.T, *tangent.T))
    step, first, last = step.astype(np.float32), first.astype(np.int32), last.astype(np.int32)
    rows_f, cols_f = rows.astype(np.float32), cols.astype(np.float32)

    def nearest_on_piece(j: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """Sample nearest to each pixel on sample j's piece, and the distance (mm) and signed offset (mm) from its
        axis (the tangent line; a round cap past a piece's end).

        j (coarse: from the half-resolution grid) is moved along its piece by the pixel's offset along the tangent.
        """
        along = (rows - py[j]) * ty[j] + (cols - px[j]) * tx[j]
        j = np.clip(j + np.rint(along / step[j]).astype(j.dtype), first[j], last[j])
        dy, dx = rows - py[j], cols - px[j]
        along = dy * ty[j] + dx * tx[j]
        perp = dx * ty[j] - dy * tx[j]
        beyond = np.maximum(along * tree.end[j], 0.0)
        return j, np.hypot(perp, beyond) * mm, perp * mm

    sample, distance, perp = nearest_on_piece(sample, rows_f, cols_f)
    # Near a branch origin the pixel may belong to the parent's lumen: measure from the parent sample as well.
    anchor = tree.anchor[sample]
    branching = np.flatnonzero(anchor >= 0)
    anchor_distance = np.full(len(sample), np.inf)
    anchor[branching], anchor_distance[branching], _ = nearest_on_piece(
        anchor[branching], rows_f[branching], cols_f[branching]
    )
    margin = 1.5 * mm + 0.5
    wall = tree.wall[sample]
    near = (distance < wall + margin) | (anchor_distance < tree.wall[np.maximum(anchor, 0)] + margin)
    rows, cols, sample, distance, perp, wall = (
        rows[near],
        cols[near],
        sample[near],
        distance[near],
        perp[near],
        wall[near],
    )
    anchor, anchor_distance = anchor[near], anchor_distance[near]

    # Lumen chord, averaged over +-0.35 px across the vessel (cheap anti-aliasing).
    aa = 0.35 * mm

    def chord(radius: np.ndarray, d: np.ndarray) -> np.ndarray:
        return 0.5 * (_chord(radius, np.abs(d - aa)) + _chord(radius, d + aa))

    lumen = chord(tree.lumen[sample], distance)
    branching = np.flatnonzero(anchor >= 0)
    lumen[branching] = np.maximum(lumen[branching], chord(tree.lumen[anchor[branching]], anchor_distance[branching]))
    clot = tree.thrombus[sample]
    if np.any(clot > 0):
        lumen = np.maximum(lumen - chord(clot, np.abs(perp - tree.thrombus_offset[sample])), 0.0)
    width = max(0.35, 0.6 * mm)
    calc = tree.calcification[sample] * (0.35 / width) * np.exp(-0.5 * ((distance - wall) / width) ** 2)
    shaded = (lumen > 0) | (calc > 1e-4)
    flat = rows[shaded] * size + cols[shaded]
    return _Band(
        flat=flat,
        sample=sample[shaded],
        opacity=(spec.contrast_per_mm * lumen[shaded]).astype(np.float32),
        base=(background.ravel()[flat] * np.exp(-calc[shaded])).astype(np.float32),
        background=background.ravel()[flat],
    )


def render_video(spec: VideoSpec, rng: np.random.Generator) -> np.ndarray:
    """Pixels of one phantom video, [T, H, W] uint8 (8-bit) or uint16, MONOCHROME2 (vessels dark).

    `rng` draws only the background texture and the noise, in an order that does not depend on the findings, so
    rendering the same spec with and without a lesion (same rng seed) differs only where the lesion is.
    """
    tree = _build_tree(spec.anatomy, spec.findings, spec.territory)
    projection = _projection(spec, tree)
    size, frames = spec.image_size, spec.num_frames
    peak = 0.88 * spec.max_value
    background = (peak * np.exp(-_background(spec, projection, rng))).astype(np.float32)
    noise_sd = (spec.noise * np.sqrt(peak) * np.sqrt(background)).astype(np.float32)
    # Quantum noise: every frame takes a different window of one larger noise field (cheaper than fresh draws).
    pad = 48
    noise_field = rng.standard_normal((size + pad, size + pad), dtype=np.float32)
    offsets = rng.integers(0, pad + 1, size=(frames, 2))

    phase_of_frame = _phase_index(spec)
    bands = {
        k: _band(spec, tree, projection, float(_systole(k / _PHASES)), background) for k in np.unique(phase_of_frame)
    }
    dtype = np.uint8 if spec.bits_stored <= 8 else np.uint16
    video = np.empty((frames, size, size), dtype=dtype)
    frame = np.empty((size, size), dtype=np.float32)
    flat_frame = frame.reshape(-1)
    rounded = background + np.float32(0.5)  # + 0.5 so that the cast to integers rounds
    for t in range(frames):
        band = bands[phase_of_frame[t]]
        opacity = _contrast(spec, tree, t)
        oy, ox = offsets[t]
        np.multiply(noise_sd, noise_field[oy : oy + size, ox : ox + size], out=frame)
        frame += rounded
        flat_frame[band.flat] += band.base * np.exp(-band.opacity * opacity[band.sample]) - band.background
        np.clip(frame, 0.0, spec.max_value, out=video[t], casting="unsafe")
    return video


# --------------------------------------------------------------------------------------------------------------
# Sampling studies
# --------------------------------------------------------------------------------------------------------------
# Relative frequency of lesions per segment (proximal main vessels most often), and of occlusions.
_STENOSIS_WEIGHT = {
    "prox_rca": 2.5, "mid_rca": 2.5, "dist_rca": 1.5, "pda": 1.0, "posterolateral": 0.8, "left_main": 0.8,
    "prox_lad": 3.0, "mid_lad": 3.0, "dist_lad": 1.0, "D1": 1.5, "D2": 1.0, "prox_lcx": 2.0, "mid_lcx": 1.5,
    "dist_lcx": 0.8, "om1": 1.5, "om2": 1.0, "bx": 1.0, "lvp": 0.6,
}  # fmt: skip
_CTO_WEIGHT = {
    "prox_rca": 2.0, "mid_rca": 3.0, "dist_rca": 1.0, "prox_lad": 1.0, "mid_lad": 2.0, "prox_lcx": 1.0,
    "mid_lcx": 1.0, "om1": 0.8, "D1": 0.5,
}  # fmt: skip
_CTO_RATE = 0.2
_THROMBUS_RATE = 0.10
_CALCIFIED_RATE = 0.35
_LESION_COUNT_P = (0.38, 0.30, 0.18, 0.10, 0.04)  # 0-4 stenoses besides a CTO
# View frequencies per territory (LCA: caudal and cranial obliques; RCA: LAO and RAO straight, LAO cranial).
_VIEW_WEIGHT: dict[str, dict[str, float]] = {
    "LCA": {
        "RAO Caudal": 3.0, "RAO Cranial": 2.5, "AP Cranial": 2.5, "LAO Cranial": 2.0, "LAO Caudal": 2.0,
        "AP Caudal": 1.5, "RAO Straight": 1.0, "LAO Lateral": 1.0, "AP": 0.5, "LAO Straight": 0.5,
        "RAO Lateral": 0.3, "Other": 0.3,
    },
    "RCA": {
        "LAO Straight": 3.0, "RAO Straight": 2.0, "LAO Cranial": 2.0, "AP Cranial": 1.5, "LAO Lateral": 0.8,
        "RAO Cranial": 0.5, "RAO Lateral": 0.5, "AP": 0.5, "LAO Caudal": 0.3, "RAO Caudal": 0.3, "AP Caudal": 0.3,
        "Other": 0.3,
    },
}  # fmt: skip
_FPS_CHOICES = (15, 15, 15, 15, 15, 12, 10, 30)
_BITS_CHOICES = (8, 10, 12)


def _weighted_choice(rng: np.random.Generator, weights: dict[str, float], allowed) -> str | None:
    keys = [k for k in weights if k in allowed]
    if not keys:
        return None
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _draw_stenosis(rng: np.random.Generator) -> float:
    """Percent stenosis in steps of 5, mild 38 % / moderate 30 % / severe 20 % / critical 12 % of lesions."""
    low, high = [(25, 45), (50, 65), (70, 85), (90, 95)][int(rng.choice(4, p=(0.38, 0.30, 0.20, 0.12)))]
    return float(5 * rng.integers(low // 5, high // 5 + 1))


def _lesion_shape(rng: np.random.Generator) -> dict[str, float]:
    return {"position": float(rng.uniform(0.3, 0.7)), "length_mm": float(rng.uniform(5.0, 10.0))}


def _sample_anatomy(rng: np.random.Generator) -> Anatomy:
    dominance = ("right", "left", "co")[int(rng.choice(3, p=(0.8, 0.1, 0.1)))]
    return Anatomy(
        dominance=dominance,
        has_ramus=bool(rng.random() < 0.25),
        vessel_scale=float(rng.uniform(0.9, 1.1)),
        heart_length_mm=float(rng.uniform(118.0, 132.0)),
        heart_width_mm=float(rng.uniform(86.0, 98.0)),
        axis_jitter_deg=(float(rng.uniform(-8, 8)), float(rng.uniform(-8, 8))),
        seed=int(rng.integers(2**31)),
    )


def _sample_findings(rng: np.random.Generator, anatomy: Anatomy) -> tuple[Finding, ...]:
    """Baseline disease: an occlusion in ~20 % of studies, 0-4 stenoses, some calcification and thrombus."""
    present = set(anatomy.segments)
    lesions: dict[str, dict] = {}
    blocked: set[str] = set()
    if rng.random() < _CTO_RATE:
        segment = _weighted_choice(rng, _CTO_WEIGHT, present)
        lesions[segment] = {"cto": True, **_lesion_shape(rng)}
        blocked = downstream_segments(anatomy, segment)
    for _ in range(int(rng.choice(len(_LESION_COUNT_P), p=_LESION_COUNT_P))):
        segment = _weighted_choice(rng, _STENOSIS_WEIGHT, present - lesions.keys() - blocked)
        if segment is not None:
            lesions[segment] = {"stenosis": _draw_stenosis(rng), **_lesion_shape(rng)}
    if rng.random() < _THROMBUS_RATE:
        candidates = sorted(k for k, v in lesions.items() if v.get("stenosis", 0) >= 50 or v.get("cto"))
        if candidates:
            lesions[candidates[int(rng.integers(len(candidates)))]]["thrombus"] = True
        else:
            segment = _weighted_choice(rng, _STENOSIS_WEIGHT, present - lesions.keys() - blocked)
            if segment is not None:
                lesions[segment] = {"stenosis": float(5 * rng.integers(8, 13)), "thrombus": True, **_lesion_shape(rng)}
    if rng.random() < _CALCIFIED_RATE:
        for _ in range(int(rng.integers(1, 4))):
            diseased = sorted(lesions)
            if diseased and rng.random() < 0.7:
                segment = diseased[int(rng.integers(len(diseased)))]
            else:
                segment = _weighted_choice(rng, _STENOSIS_WEIGHT, present - blocked)
            grade = CALCIFICATION_GRADES[1 + int(rng.choice(3, p=(0.4, 0.35, 0.25)))]
            lesions.setdefault(segment, _lesion_shape(rng))["calcification"] = grade
    return tuple(Finding(segment, **lesions[segment]) for segment in SEGMENT_KEYS if segment in lesions)


def _follow_up_findings(
    rng: np.random.Generator, anatomy: Anatomy, findings: tuple[Finding, ...]
) -> tuple[Finding, ...]:
    """Disease at the next study: stable, progressed (worse or new lesion) or improved (a lesion treated by PCI).

    The change label is not decided here: it is computed from the labels with `classify_progression`.
    """
    present = set(anatomy.segments)
    current = {f.segment: f for f in findings}
    intent = ("stable", "progressed", "improved")[int(rng.choice(3, p=(0.40, 0.35, 0.25)))]
    # Small changes everywhere (never over the 50 % line upward: that would count as progression).
    for key, f in list(current.items()):
        if f.cto or f.stenosis == 0:
            continue
        step = 5.0 * int(rng.integers(-1, 2))
        stenosis = float(np.clip(f.stenosis + step, 20.0, 95.0))
        if f.stenosis <= 50.0 < stenosis:
            stenosis = f.stenosis
        current[key] = replace(f, stenosis=stenosis, thrombus=f.thrombus and rng.random() < 0.5)
    if intent == "progressed":
        worsening = sorted(k for k, f in current.items() if not f.cto and f.stenosis >= 30)
        blocked = set().union(*(downstream_segments(anatomy, k) for k, f in current.items() if f.cto))
        if worsening and rng.random() < 0.6:
            key = worsening[int(rng.integers(len(worsening)))]
            f = current[key]
            stenosis = f.stenosis + 5.0 * int(rng.integers(4, 9))
            quiet_downstream = not (downstream_segments(anatomy, key) & current.keys())
            if stenosis >= 100.0 and quiet_downstream:
                current[key] = replace(f, cto=True, stenosis=0.0)
            else:
                current[key] = replace(f, stenosis=float(min(stenosis, 95.0)))
        else:
            key = _weighted_choice(rng, _STENOSIS_WEIGHT, present - current.keys() - blocked)
            if key is not None:
                current[key] = Finding(key, stenosis=float(5 * rng.integers(11, 19)), **_lesion_shape(rng))
    elif intent == "improved":
        treatable = sorted(k for k, f in current.items() if f.cto or f.stenosis >= 45)
        if treatable:
            key = treatable[int(rng.integers(len(treatable)))]
            current[key] = replace(current[key], cto=False, thrombus=False, stenosis=float(5 * rng.integers(0, 4)))
    return tuple(current[key] for key in SEGMENT_KEYS if key in current)


def _view_angles(rng: np.random.Generator, view: str) -> tuple[float, float]:
    """Angles near the view's representative pair that still classify to the view."""
    primary, secondary = VIEW_ANGLES[view]
    for spread in (8.0, 4.0, 0.0):
        a = round(primary + rng.uniform(-spread, spread), 1)
        b = round(secondary + rng.uniform(-spread, spread), 1)
        if classify_view(a, b) == view:
            return a, b
    raise RuntimeError(f"VIEW_ANGLES[{view!r}] = {VIEW_ANGLES[view]} does not classify back to {view!r}")


def _format_time(seconds: float) -> str:
    whole, micro = divmod(round(seconds * 1e6), 1_000_000)
    return f"{whole // 3600:02d}{whole // 60 % 60:02d}{whole % 60:02d}.{micro:06d}"


@dataclass(frozen=True)
class _Options:
    seed: int
    image_size: int
    frames: tuple[int, int]
    rle_fraction: float

    def uid(self, *parts: object) -> str:
        """Deterministic UID for this seed and these options."""
        return generate_uid(
            entropy_srcs=[
                "deepcoro-hf phantoms",
                str(self.seed),
                str(self.image_size),
                str(self.frames),
                *map(str, parts),
            ]
        )


def _sample_videos(
    rng: np.random.Generator,
    options: _Options,
    anatomy: Anatomy,
    findings: tuple[Finding, ...],
    patient_id: str,
    serial_index: int,
    start_seconds: float,
) -> tuple[VideoSpec, ...]:
    """2-10 videos from different views, mostly left coronary, acquired one after another."""
    count = int(np.clip(round(rng.normal(5.0, 2.0)), 2, 10))
    rca = int(np.clip(round(count * rng.uniform(0.25, 0.45)), 1, count - 1))
    territories: list[Territory] = ["LCA"] * (count - rca) + ["RCA"] * rca
    used: dict[str, set[str]] = {"LCA": set(), "RCA": set()}
    clock = start_seconds
    videos = []
    for index, territory in enumerate(territories):
        weights = _VIEW_WEIGHT[territory]
        view = _weighted_choice(rng, weights, set(weights) - used[territory]) or _weighted_choice(rng, weights, weights)
        used[territory].add(view)
        primary, secondary = _view_angles(rng, view)
        num_frames = int(rng.integers(options.frames[0], options.frames[1] + 1))
        fps = int(rng.choice(_FPS_CHOICES))
        inject = float(rng.uniform(0.05, 0.15))
        fill = float(rng.uniform(0.15, 0.3))
        washout = inject + fill + float(rng.uniform(0.15, 0.35))
        videos.append(
            VideoSpec(
                anatomy=anatomy,
                findings=findings,
                territory=territory,
                view=view,
                primary_angle=primary,
                secondary_angle=secondary,
                num_frames=num_frames,
                fps=fps,
                image_size=options.image_size,
                bits_stored=int(rng.choice(_BITS_CHOICES)),
                heart_rate=float(rng.uniform(55.0, 95.0)),
                cardiac_phase=float(rng.random()),
                inject_start=inject,
                fill_time=fill,
                washout_start=washout,
                washout_time=float(rng.uniform(0.4, 0.7)),
                residual_contrast=float(rng.uniform(0.15, 0.35)),
                contrast_per_mm=float(rng.uniform(0.17, 0.24)),
                noise=float(rng.uniform(0.015, 0.03)),
                fill_factor=float(rng.uniform(0.68, 0.82)),
                pan=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
                noise_seed=int(rng.integers(2**62)),
                transfer_syntax=RLELossless if rng.random() < options.rle_fraction else ExplicitVRLittleEndian,
                series_uid=options.uid(patient_id, serial_index, index, "series"),
                sop_uid=options.uid(patient_id, serial_index, index, "sop"),
                series_number=index + 1,
                acquisition_time=_format_time(clock),
            )
        )
        clock += num_frames / fps + float(rng.uniform(15.0, 90.0))
    return tuple(videos)


def _sample_patient(options: _Options, patient_index: int, max_studies: int) -> list[StudySpec]:
    """A patient with 1-3 serial studies; every draw comes from the patient's own seed (independent of the others)."""
    rng = np.random.default_rng(np.random.SeedSequence(options.seed, spawn_key=(patient_index,)))
    patient_id = f"PH{patient_index + 1:04d}"
    anatomy = _sample_anatomy(rng)
    count = min(int(rng.choice(3, p=(0.5, 0.3, 0.2))) + 1, max_studies)
    split = SPLITS[min(int(np.searchsorted(np.cumsum(SPLIT_FRACTIONS), rng.random(), side="right")), len(SPLITS) - 1)]
    date = dt.date(2012, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3650)))
    birth_date = date - dt.timedelta(days=int(rng.integers(45 * 365, 85 * 365)))
    sex = "M" if rng.random() < 0.66 else "F"
    findings = _sample_findings(rng, anatomy)
    studies: list[StudySpec] = []
    for serial_index in range(count):
        study_rng = np.random.default_rng(np.random.SeedSequence(options.seed, spawn_key=(patient_index, serial_index)))
        change = ""
        if serial_index:
            previous = studies[-1]
            date = previous.study_date + dt.timedelta(days=int(study_rng.integers(120, 900)))
            findings = _follow_up_findings(study_rng, anatomy, previous.findings)
            change = classify_progression(
                stenosis_by_segment(previous.labels), stenosis_by_segment(study_labels(anatomy, findings))
            )
        start = float(study_rng.uniform(7.5, 16.0)) * 3600.0
        studies.append(
            StudySpec(
                patient_id=patient_id,
                study_uid=options.uid(patient_id, serial_index, "study"),
                study_date=date,
                study_time=_format_time(start - float(study_rng.uniform(60, 600))),
                serial_index=serial_index,
                split=split,
                anatomy=anatomy,
                findings=findings,
                videos=_sample_videos(study_rng, options, anatomy, findings, patient_id, serial_index, start),
                change_from_previous=change,
                patient_name=f"Phantom^{patient_index + 1:04d}",
                birth_date=birth_date,
                patient_sex=sex,
            )
        )
    return studies


def make_studies(
    num_studies: int,
    seed: int,
    image_size: int = 512,
    frames: tuple[int, int] = (16, 64),
    rle_fraction: float = RLE_FRACTION,
) -> list[StudySpec]:
    """Specifications of `num_studies` phantom studies (patients with 1-3 serial studies), deterministic for a seed."""
    options = _check_options(num_studies, seed, image_size, frames, rle_fraction)
    studies: list[StudySpec] = []
    patient_index = 0
    while len(studies) < num_studies:
        studies += _sample_patient(options, patient_index, num_studies - len(studies))
        patient_index += 1
    return studies


def _check_options(
    num_studies: int, seed: int, image_size: int, frames: tuple[int, int], rle_fraction: float
) -> _Options:
    if num_studies < 1:
        raise PhantomError(f"num_studies must be >= 1, got {num_studies}")
    if seed < 0:
        raise PhantomError(f"seed must be >= 0, got {seed}")
    if not 32 <= image_size <= 2048:
        raise PhantomError(f"image_size must be in [32, 2048], got {image_size}")
    low, high = frames
    if not 2 <= low <= high <= 1024:
        raise PhantomError(f"frames must be a range MIN..MAX with 2 <= MIN <= MAX <= 1024, got {low}..{high}")
    if not 0.0 <= rle_fraction <= 1.0:
        raise PhantomError(f"rle_fraction must be in [0, 1], got {rle_fraction}")
    return _Options(int(seed), int(image_size), (int(low), int(high)), float(rle_fraction))


# --------------------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------------------
def _rle_plugin() -> str:
    """pylibjpeg-rle when installed, else pydicom's own encoder: the two write identical bytes (gdcm does not), so a
    seed gives the same files whichever is present; pylibjpeg-rle is about ten times faster."""
    return "pylibjpeg" if "pylibjpeg" in RLELosslessEncoder.available_plugins else "pydicom"


def video_dataset(study: StudySpec, video: VideoSpec, pixels: np.ndarray) -> Dataset:
    """XA multi-frame dataset (X-Ray Angiographic Image Storage) of one rendered video."""
    if pixels.shape != (video.num_frames, video.image_size, video.image_size):
        raise PhantomError(
            f"pixels of series {video.series_number} have shape {pixels.shape}, expected "
            f"{(video.num_frames, video.image_size, video.image_size)}"
        )
    date = study.study_date.strftime("%Y%m%d")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    meta.MediaStorageSOPInstanceUID = video.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.SOPClassUID = XRayAngiographicImageStorage
    ds.SOPInstanceUID = video.sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = study.study_time
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = video.acquisition_time
    ds.AcquisitionDateTime = date + video.acquisition_time
    ds.AccessionNumber = ""
    ds.Modality = "XA"
    ds.Manufacturer = "deepcoro-hf"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Coronary angiography (synthetic phantom)"
    ds.SeriesDescription = f"{video.territory} {video.view}"
    ds.ManufacturerModelName = "deepcoro-hf phantom"
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.birth_date.strftime("%Y%m%d") if study.birth_date else ""
    ds.PatientSex = study.patient_sex
    ds.ContrastBolusAgent = "Iodinated contrast"
    ds.BodyPartExamined = "HEART"
    ds.CineRate = video.fps
    ds.KVP = 80
    ds.DistanceSourceToDetector = 1100
    ds.DistanceSourceToPatient = 750
    ds.ExposureTime = 7
    ds.XRayTubeCurrent = 600
    ds.RadiationSetting = "GR"
    ds.FrameTime = f"{1000.0 / video.fps:.4f}"
    ds.PositionerMotion = "STATIC"
    ds.PositionerPrimaryAngle = f"{video.primary_angle:.1f}"
    ds.PositionerSecondaryAngle = f"{video.secondary_angle:.1f}"
    ds.RecommendedDisplayFrameRate = video.fps
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = video.series_uid
    ds.StudyID = str(study.serial_index + 1)
    ds.SeriesNumber = video.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = video.num_frames
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.Rows = ds.Columns = video.image_size
    ds.BitsAllocated = 8 if video.bits_stored <= 8 else 16
    ds.BitsStored = video.bits_stored
    ds.HighBit = video.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    ds.LossyImageCompression = "00"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="u1" if ds.BitsAllocated == 8 else "<u2").tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    if video.transfer_syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin=_rle_plugin(), generate_instance_uid=False)
    return ds


def write_video_dicom(path: str | Path, study: StudySpec, video: VideoSpec, pixels: np.ndarray) -> Path:
    """Write one video as an XA multi-frame DICOM file (Part 10, with preamble and file meta)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, video_dataset(study, video, pixels), enforce_file_format=True)
    return path


# --------------------------------------------------------------------------------------------------------------
# Manifest and driver
# --------------------------------------------------------------------------------------------------------------
def _csv_value(value: object) -> object:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return int(value) if value.is_integer() else value
    return value


def video_path(study: StudySpec, video: VideoSpec) -> str:
    """POSIX path of a video relative to OUT_DIR."""
    return f"dicom/{study.patient_id}/{study.study_uid}/{video.series_uid}.dcm"


def _write_study_videos(out_dir: Path, study: StudySpec) -> int:
    """Render and write every video of a study (each video draws its noise from its own seed, so the bytes do not depend
    on which process writes it)."""
    for video in study.videos:
        pixels = render_video(video, np.random.default_rng(video.noise_seed))
        write_video_dicom(out_dir / video_path(study, video), study, video, pixels)
    return len(study.videos)


def generate_phantoms(
    out_dir: str | Path,
    num_studies: int,
    seed: int = 0,
    image_size: int = 512,
    frames: tuple[int, int] = (16, 64),
    rle_fraction: float = RLE_FRACTION,
    workers: int = 1,
) -> PhantomManifest:
    """Write `num_studies` phantom studies as XA DICOM plus `studies.csv` and `videos.csv` under `out_dir`.

    The same seed and options give the same bytes, whatever the number of `workers` (processes rendering studies in
    parallel). `out_dir` must not already hold a phantom set.
    """
    out_dir = Path(out_dir)
    options = _check_options(num_studies, seed, image_size, frames, rle_fraction)
    if not isinstance(workers, int) or workers < 1:
        raise PhantomError(f"workers must be a positive integer, got {workers!r}")
    for name in ("studies.csv", "videos.csv", "dicom"):
        if (out_dir / name).exists():
            raise PhantomError(f"{out_dir / name} already exists; write phantoms into an empty directory")
    studies = make_studies(num_studies, options.seed, options.image_size, options.frames, options.rle_fraction)
    out_dir.mkdir(parents=True, exist_ok=True)
    write = functools.partial(_write_study_videos, out_dir)
    if workers == 1:
        written = map(write, studies)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        written = pool.map(write, studies, chunksize=max(1, min(8, len(studies) // (4 * workers))))
    try:
        for index, count in enumerate(written, 1):
            logger.info("study %d/%d written (%d videos)", index, len(studies), count)
    finally:
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    study_rows, video_rows = [], []
    for study in studies:
        labels = study.labels
        study_rows.append(
            {
                "patient_id": study.patient_id,
                "study_id": study.study_uid,
                "split": study.split,
                "study_date": study.study_date.isoformat(),
                "serial_index": study.serial_index,
                "change_from_previous": study.change_from_previous,
                "dominance": study.anatomy.dominance,
                "report": build_report(labels, study.anatomy.dominance),
                **{column: _csv_value(labels[column]) for column in (*LABEL_COLUMNS, *CALCIF_GRADE_COLUMNS)},
            }
        )
        for video in study.videos:
            video_rows.append(
                {
                    "study_id": study.study_uid,
                    "video_path": video_path(study, video),
                    "series_uid": video.series_uid,
                    "sop_uid": video.sop_uid,
                    "territory": video.territory,
                    "view": video.view,
                    "primary_angle": f"{video.primary_angle:.1f}",
                    "secondary_angle": f"{video.secondary_angle:.1f}",
                    "acquisition_time": video.acquisition_time,
                    "fps": video.fps,
                    "num_frames": video.num_frames,
                    "rows": video.image_size,
                    "columns": video.image_size,
                    "bits_stored": video.bits_stored,
                    "transfer_syntax": video.transfer_syntax,
                    "video_report": build_report(labels, study.anatomy.dominance, territory=video.territory),
                }
            )
    studies_csv, videos_csv = out_dir / "studies.csv", out_dir / "videos.csv"
    for path, columns, rows in ((studies_csv, STUDY_COLUMNS, study_rows), (videos_csv, VIDEO_COLUMNS, video_rows)):
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    patients = len({study.patient_id for study in studies})
    manifest = PhantomManifest(out_dir, studies_csv, videos_csv, patients, len(study_rows), len(video_rows))
    logger.info(
        "wrote %d studies (%d videos, %d patients) to %s",
        manifest.num_studies,
        manifest.num_videos,
        manifest.num_patients,
        out_dir,
    )
    return manifest


# --------------------------------------------------------------------------------------------------------------
# Command line: deepcoro phantoms OUT_DIR --studies N --seed S
# --------------------------------------------------------------------------------------------------------------
def _frame_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("..")
    try:
        return (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frame count N or a range MIN..MAX, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "out_dir", type=Path, metavar="OUT_DIR", help="empty directory to write dicom/, studies.csv and videos.csv into"
    )
    parser.add_argument("--studies", type=int, default=10, help="number of studies (default: 10)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same files (default: 0)"
    )
    parser.add_argument("--size", type=int, default=512, help="rows and columns of every video (default: 512)")
    parser.add_argument(
        "--frames", type=_frame_range, default=(16, 64), help="frames per video, N or MIN..MAX (default: 16..64)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes rendering studies in parallel; same files (default: 1)"
    )
    parser.add_argument(
        "--rle-fraction",
        type=float,
        default=RLE_FRACTION,
        help=f"fraction of videos written RLE Lossless compressed (default: {RLE_FRACTION})",
    )


def run(args: argparse.Namespace) -> int:
    manifest = generate_phantoms(
        args.out_dir, args.studies, args.seed, args.size, args.frames, args.rle_fraction, workers=args.workers
    )
    print(
        f"wrote {manifest.num_studies} studies ({manifest.num_videos} videos, {manifest.num_patients} patients) "
        f"to {manifest.out_dir}: {manifest.studies_csv.name}, {manifest.videos_csv.name}"
    )
    return 0


__all__ = [
    "CALCIF_GRADE_COLUMNS",
    "RLE_FRACTION",
    "STUDY_COLUMNS",
    "VIDEO_COLUMNS",
    "Anatomy",
    "Finding",
    "PhantomError",
    "PhantomManifest",
    "StudySpec",
    "VideoSpec",
    "add_arguments",
    "downstream_segments",
    "generate_phantoms",
    "make_studies",
    "render_video",
    "run",
    "segment_centerlines",
    "stenosis_by_segment",
    "study_labels",
    "video_dataset",
    "video_path",
    "write_video_dicom",
]
