"""Tests of the synthetic angiography studies: valid XA DICOM (checked by dicom3tools' dciodvfy and read back with
pydicom), a manifest whose labels agree with each other and with the vocabulary, lesions that are really in the
pixels, byte-for-byte determinism, the `deepcoro phantoms` command and no PHI outside the DICOM files."""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import shutil
import subprocess
from collections import defaultdict
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, XRayAngiographicImageStorage
from scipy import ndimage

from deepcoro_hf import cli
from deepcoro_hf.phantoms import (
    STUDY_COLUMNS,
    VIDEO_COLUMNS,
    Anatomy,
    Finding,
    PhantomError,
    VideoSpec,
    downstream_segments,
    generate_phantoms,
    make_studies,
    render_video,
    segment_centerlines,
    stenosis_by_segment,
    study_labels,
)
from deepcoro_hf.vocabulary import (
    CALCIFICATION_GRADES,
    LABEL_COLUMNS,
    SEGMENT_KEYS,
    SEGMENT_TASKS,
    VIEW_ANGLES,
    build_report,
    classify_progression,
    classify_view,
    label_column,
    segments_for_territory,
)

SEED = 7
OPTIONS = {"image_size": 128, "frames": (12, 16), "rle_fraction": 0.5}
NUM_STUDIES = 4


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def number(text: str) -> float:
    return math.nan if text == "" else float(text)


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    manifest = generate_phantoms(out, NUM_STUDIES, SEED, **OPTIONS)
    _, studies = read_csv(manifest.studies_csv)
    _, videos = read_csv(manifest.videos_csv)
    specs = {video.sop_uid: video for study in make_studies(NUM_STUDIES, SEED, **OPTIONS) for video in study.videos}
    return manifest, studies, videos, specs


# ------------------------------------------------------------------------------------------------------------------
# Files and manifest
# ------------------------------------------------------------------------------------------------------------------
def test_manifest_layout(phantom_set):
    manifest, studies, videos, _ = phantom_set
    study_header, _ = read_csv(manifest.studies_csv)
    video_header, _ = read_csv(manifest.videos_csv)
    assert study_header == [
        "patient_id", "study_id", "split", "study_date", "serial_index", "change_from_previous", "dominance", "report",
        *LABEL_COLUMNS, *(f"{key}_calcif" for key in SEGMENT_KEYS),
    ]  # fmt: skip
    assert study_header == list(STUDY_COLUMNS)
    assert video_header == list(VIDEO_COLUMNS) == [
        "study_id", "video_path", "series_uid", "sop_uid", "territory", "view", "primary_angle", "secondary_angle",
        "acquisition_time", "fps", "num_frames", "rows", "columns", "bits_stored", "transfer_syntax", "video_report",
    ]  # fmt: skip
    assert manifest.num_studies == len(studies) == NUM_STUDIES
    assert manifest.num_videos == len(videos)
    assert manifest.num_patients == len({row["patient_id"] for row in studies})

    study_ids = {row["study_id"] for row in studies}
    per_study = defaultdict(int)
    for row in videos:
        assert row["study_id"] in study_ids
        per_study[row["study_id"]] += 1
        path = Path(row["video_path"])
        assert not path.is_absolute() and "\\" not in row["video_path"]
        assert path.parts[0] == "dicom" and path.name == f"{row['series_uid']}.dcm"
        assert (manifest.out_dir / path).is_file()
    assert all(2 <= count <= 10 for count in per_study.values()) and len(per_study) == NUM_STUDIES
    assert {row["territory"] for row in videos} == {"LCA", "RCA"}

    by_patient = defaultdict(list)
    for row in studies:
        assert row["split"] in ("train", "validation", "test")
        assert row["dominance"] in ("right", "left", "co")
        by_patient[row["patient_id"]].append(row)
    for rows in by_patient.values():
        assert len({row["split"] for row in rows}) == 1  # split assigned per patient
        assert [int(row["serial_index"]) for row in rows] == list(range(len(rows)))
        dates = [row["study_date"] for row in rows]
        assert dates == sorted(dates) and len(set(dates)) == len(dates)
        assert rows[0]["change_from_previous"] == ""


def test_dciodvfy_reports_no_errors(phantom_set):
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dicom3tools' dciodvfy is not installed")
    manifest, _, videos, _ = phantom_set
    problems = {}
    for row in videos:
        result = subprocess.run(
            [dciodvfy, str(manifest.out_dir / row["video_path"])], capture_output=True, text=True, check=False
        )
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        if errors:
            problems[row["video_path"]] = errors
    assert not problems


def test_dciodvfy_check_catches_a_broken_file(phantom_set, tmp_path):
    """The check above parses dciodvfy's output correctly: a file missing a required attribute is reported."""
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dicom3tools' dciodvfy is not installed")
    manifest, _, videos, _ = phantom_set
    ds = pydicom.dcmread(manifest.out_dir / videos[0]["video_path"])
    del ds.FrameTime
    ds.save_as(tmp_path / "broken.dcm")
    result = subprocess.run([dciodvfy, str(tmp_path / "broken.dcm")], capture_output=True, text=True, check=False)
    assert any(line.startswith("Error") for line in (result.stdout + result.stderr).splitlines())


def test_dicom_attributes_match_manifest(phantom_set):
    manifest, studies, videos, _ = phantom_set
    dates = {row["study_id"]: row["study_date"].replace("-", "") for row in studies}
    patients = {row["study_id"]: row["patient_id"] for row in studies}
    times = defaultdict(list)
    for row in videos:
        ds = pydicom.dcmread(manifest.out_dir / row["video_path"])
        assert ds.SOPClassUID == XRayAngiographicImageStorage == ds.file_meta.MediaStorageSOPClassUID
        assert ds.Modality == "XA"
        assert ds.file_meta.TransferSyntaxUID == row["transfer_syntax"]
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
            row["study_id"], row["series_uid"], row["sop_uid"],
        )  # fmt: skip
        assert ds.PatientID == patients[row["study_id"]] and ds.StudyDate == dates[row["study_id"]]
        assert ds.NumberOfFrames == int(row["num_frames"]) and 12 <= ds.NumberOfFrames <= 16
        assert ds.Rows == ds.Columns == int(row["rows"]) == int(row["columns"]) == 128
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
        assert ds.BitsStored == int(row["bits_stored"]) and ds.HighBit == ds.BitsStored - 1
        assert ds.BitsAllocated == (8 if ds.BitsStored == 8 else 16)
        fps = int(row["fps"])
        assert float(ds.FrameTime) == pytest.approx(1000.0 / fps, abs=1e-3)
        assert ds.FrameIncrementPointer == 0x00181063  # Frame Time
        assert int(ds.CineRate) == int(ds.RecommendedDisplayFrameRate) == fps
        primary, secondary = float(ds.PositionerPrimaryAngle), float(ds.PositionerSecondaryAngle)
        assert (primary, secondary) == (float(row["primary_angle"]), float(row["secondary_angle"]))
        assert classify_view(primary, secondary) == row["view"]
        assert ds.AcquisitionTime == ds.SeriesTime == ds.ContentTime == row["acquisition_time"]
        times[row["study_id"]].append((int(ds.SeriesNumber), ds.AcquisitionTime))
    for study_times in times.values():
        ordered = [time for _, time in sorted(study_times)]
        assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)  # strictly increasing
    # The options ask for a mix of pixel formats.
    assert {row["transfer_syntax"] for row in videos} == {ExplicitVRLittleEndian, RLELossless}
    assert len({row["bits_stored"] for row in videos}) >= 2


def test_pixels_read_back_equal_the_render(phantom_set):
    manifest, _, videos, specs = phantom_set
    for row in videos:
        spec = specs[row["sop_uid"]]
        expected = render_video(spec, np.random.default_rng(spec.noise_seed))
        ds = pydicom.dcmread(manifest.out_dir / row["video_path"])
        pixels = ds.pixel_array
        assert pixels.shape == (spec.num_frames, 128, 128)
        assert expected.dtype == (np.uint8 if spec.bits_stored == 8 else np.uint16)
        assert int(expected.max()) <= (1 << spec.bits_stored) - 1
        np.testing.assert_array_equal(pixels, expected, err_msg=row["video_path"])


def test_manifest_labels_are_consistent(phantom_set):
    _, studies, videos, _ = phantom_set
    for row in studies:
        labels = {}
        for key in SEGMENT_KEYS:
            values = {task: number(row[label_column(key, task)]) for task in SEGMENT_TASKS}
            grade = row[label_column(key, "calcif")]
            if math.isnan(values["stenosis"]):
                assert all(math.isnan(v) for v in values.values()) and grade == "", key
                continue
            assert not any(math.isnan(v) for v in values.values()) and grade in CALCIFICATION_GRADES, key
            assert 0 <= values["stenosis"] <= 100
            assert values["stenosis_binary"] == float(values["stenosis"] >= 70)
            assert values["cto"] in (0.0, 1.0) and values["thrombus"] in (0.0, 1.0)
            if values["cto"]:
                assert values["stenosis"] == 100
            assert values["calcif_binary"] == float(grade in ("moderate", "severe"))
            labels.update({label_column(key, task): value for task, value in values.items()})
            labels[label_column(key, "calcif")] = grade
        labels.update(
            {
                label_column(key, "stenosis"): math.nan
                for key in SEGMENT_KEYS
                if label_column(key, "stenosis") not in labels
            }
        )
        assert row["report"] == build_report(labels, row["dominance"])
        for video in (v for v in videos if v["study_id"] == row["study_id"]):
            assert video["video_report"] == build_report(labels, row["dominance"], territory=video["territory"])


def test_progression_labels_follow_the_paper_rule(phantom_set):
    _, studies, _, _ = phantom_set
    by_patient = defaultdict(list)
    for row in studies:
        by_patient[row["patient_id"]].append(row)
    for rows in by_patient.values():
        for previous, current in pairwise(rows):
            before = {key: number(previous[label_column(key, "stenosis")]) for key in SEGMENT_KEYS}
            after = {key: number(current[label_column(key, "stenosis")]) for key in SEGMENT_KEYS}
            assert current["change_from_previous"] == classify_progression(before, after)
    # Over many patients every group occurs, and labels follow the rule on every consecutive pair.
    many = make_studies(150, 3, image_size=64, frames=(2, 2))
    for previous, current in pairwise(many):
        if current.serial_index:
            assert current.patient_id == previous.patient_id
            expected = classify_progression(stenosis_by_segment(previous.labels), stenosis_by_segment(current.labels))
            assert current.change_from_previous == expected
    assert {s.change_from_previous for s in many if s.serial_index} == {"stable", "progressed", "improved"}


def test_label_prevalence_and_missing_segments():
    studies = make_studies(300, 11, image_size=64, frames=(2, 2))
    significant = np.mean([any(f.stenosis_label >= 70 for f in s.findings) for s in studies])
    occluded = np.mean([any(f.cto for f in s.findings) for s in studies])
    assert 0.35 <= significant <= 0.6 and 0.1 <= occluded <= 0.3
    assert len({f.segment for s in studies for f in s.findings if f.stenosis_label >= 70}) >= 15  # lesions spread out
    assert {s.anatomy.dominance for s in studies} == {"right", "left", "co"}
    for study in studies:
        labels = study.labels
        anatomy = study.anatomy
        lvp, ramus = labels["lvp_stenosis"], labels["bx_stenosis"]
        assert math.isnan(lvp) == (anatomy.dominance == "right")
        assert math.isnan(ramus) == (not anatomy.has_ramus)
        assert not any(math.isnan(labels[label_column(k, "stenosis")]) for k in SEGMENT_KEYS if k not in ("lvp", "bx"))
        # Nothing downstream of an occlusion carries a lesion: it cannot fill, so it cannot be seen.
        for finding in (f for f in study.findings if f.cto):
            blocked = downstream_segments(anatomy, finding.segment)
            assert not any(labels[label_column(k, "stenosis")] > 0 for k in blocked)


def test_study_labels_of_absent_segment_are_missing_in_every_task():
    labels = study_labels(Anatomy("right", has_ramus=False), (Finding("mid_lad", stenosis=75),))
    for key in ("bx", "lvp"):
        assert all(math.isnan(labels[label_column(key, task)]) for task in (*SEGMENT_TASKS, "calcif"))
    assert labels["mid_lad_stenosis"] == 75 and labels["mid_lad_stenosis_binary"] == 1
    assert labels["prox_lad_stenosis"] == 0 and labels["prox_lad_calcif"] == "none"
    with pytest.raises(PhantomError, match="bx"):
        study_labels(Anatomy("right", has_ramus=False), (Finding("bx", stenosis=50),))


# ------------------------------------------------------------------------------------------------------------------
# Lesions in the pixels
# ------------------------------------------------------------------------------------------------------------------
ANATOMY = Anatomy("right", has_ramus=False, seed=3)
PEAK = 8  # with the timing below, every vessel is fully opacified at frame 8 of 16 (and none at frame 0)


def spec_for(findings, territory="LCA", view="AP Cranial", size=128, **overrides) -> VideoSpec:
    primary, secondary = VIEW_ANGLES[view]
    return VideoSpec(
        anatomy=ANATOMY, findings=tuple(findings), territory=territory, view=view, primary_angle=primary,
        secondary_angle=secondary, num_frames=16, image_size=size, bits_stored=12, inject_start=0.1, fill_time=0.25,
        washout_start=0.7, **overrides,
    )  # fmt: skip


def render(spec: VideoSpec) -> np.ndarray:
    """Same rng seed for every variant: background and noise are identical, so differences are the lesion."""
    return render_video(spec, np.random.default_rng(0)).astype(np.float64)


def darkness(spec: VideoSpec) -> np.ndarray:
    """Attenuation by contrast: the render minus the same render with no contrast at all."""
    return render(replace(spec, contrast_per_mm=0.0)) - render(spec)


def lesion_window(spec: VideoSpec, finding: Finding, frame: int, extra_mm: float = 0.0) -> np.ndarray:
    """Rounded pixels of the segment's centerline samples within the lesion (samples are 0.25 mm apart)."""
    line = segment_centerlines(spec, frame)[finding.segment]
    centre = round(finding.position * (len(line) - 1))
    half = int((finding.length_mm / 2 + extra_mm) / 0.25)
    return np.rint(line[max(centre - half, 0) : centre + half + 1]).astype(int)


def near(pixels: np.ndarray, points: np.ndarray, radius: float) -> np.ndarray:
    """Whether each (row, col) pixel lies within `radius` of any of `points`."""
    d = np.linalg.norm(pixels[:, None, :].astype(float) - points[None, :, :].astype(float), axis=2)
    return d.min(axis=1) <= radius


def test_stenosis_narrows_the_lumen_where_labelled():
    finding = Finding("mid_lad", stenosis=80, position=0.5, length_mm=8)
    lesioned, healthy = spec_for([finding]), spec_for([])
    with_lesion, without = darkness(lesioned)[PEAK], darkness(healthy)[PEAK]
    core = lesion_window(lesioned, replace(finding, length_mm=1.0), PEAK)  # the narrowest 1 mm
    rows, cols = core[:, 0], core[:, 1]
    assert np.median(without[rows, cols]) > 150  # the healthy lumen is clearly opacified (12-bit scale)
    assert np.max(with_lesion[rows, cols]) < 0.5 * np.median(without[rows, cols])
    # Away from the lesion the two videos are identical, pixel for pixel, in every frame (and before the contrast
    # arrives, everywhere).
    video, reference = render(lesioned), render(healthy)
    assert np.array_equal(video[0], reference[0]) and np.any(video[PEAK] != reference[PEAK])
    for frame in range(lesioned.num_frames):
        changed = np.argwhere(video[frame] != reference[frame])
        assert near(changed, lesion_window(lesioned, finding, frame, extra_mm=1.0), radius=4.0).all(), frame


def test_stenosis_darkness_decreases_with_severity():
    values = []
    for stenosis in (0, 50, 70, 90):
        finding = Finding("prox_rca", stenosis=stenosis, position=0.5, length_mm=8)
        spec = spec_for([finding], territory="RCA", view="LAO Straight")
        core = lesion_window(spec, replace(finding, length_mm=1.0), PEAK)
        values.append(np.mean(darkness(spec)[PEAK][core[:, 0], core[:, 1]]))
    assert values == sorted(values, reverse=True) and values[-1] < 0.3 * values[0]


def test_cto_stops_filling_at_the_occlusion():
    finding = Finding("mid_rca", cto=True, position=0.5, length_mm=8)
    occluded, patent = (
        spec_for([finding], territory="RCA", view="LAO Straight"),
        spec_for([], territory="RCA", view="LAO Straight"),
    )
    blocked = downstream_segments(ANATOMY, "mid_rca")
    assert blocked == {"dist_rca", "pda", "posterolateral"}
    no_contrast = render(replace(occluded, contrast_per_mm=0.0))
    video, reference = render(occluded), render(patent)
    lines = segment_centerlines(occluded, PEAK)
    distal = np.rint(np.vstack([lines[k] for k in sorted(blocked)])).astype(int)
    filled = np.rint(np.vstack([lines[k] for k in lines if k not in blocked and k != "mid_rca"])).astype(int)
    distal = distal[~near(distal, filled, radius=6.0)]  # pixels shared with a filled vessel in projection
    assert len(distal) > 200
    rows, cols = distal[:, 0], distal[:, 1]
    # Without the occlusion these pixels fill; with it they never do: equal to the contrast-free render.
    assert np.median(no_contrast[PEAK][rows, cols] - reference[PEAK][rows, cols]) > 150
    assert np.mean(video[:, rows, cols] == no_contrast[:, rows, cols]) > 0.97
    # Proximal to the occlusion the vessel fills as usual.
    proximal = np.rint(lines["prox_rca"]).astype(int)
    assert (
        np.median(no_contrast[PEAK][proximal[:, 0], proximal[:, 1]] - video[PEAK][proximal[:, 0], proximal[:, 1]]) > 150
    )
    assert study_labels(ANATOMY, (finding,))["mid_rca_stenosis"] == 100


def test_calcification_is_visible_before_contrast_arrives():
    finding = Finding("mid_lad", calcification="severe", position=0.5, length_mm=8)
    calcified, healthy = spec_for([finding]), spec_for([])
    first = render(calcified)[0] - render(healthy)[0]
    window = lesion_window(calcified, finding, 0, extra_mm=4.0)
    no_contrast = render(replace(healthy, contrast_per_mm=0.0))[0]
    assert np.array_equal(no_contrast[window[:, 0], window[:, 1]], render(healthy)[0][window[:, 0], window[:, 1]])
    darker = np.argwhere(first < -30)  # clearly darker (12-bit scale) in the first, contrast-free frame
    assert len(darker) >= 10
    assert near(darker, window, radius=5.0).all() and not (first > 0).any()
    labels = study_labels(ANATOMY, (finding,))
    assert labels["mid_lad_calcif"] == "severe" and labels["mid_lad_calcif_binary"] == 1
    assert labels["mid_lad_stenosis"] == 0


def test_thrombus_is_a_filling_defect_inside_the_lumen():
    finding = Finding("prox_rca", thrombus=True, position=0.5, length_mm=10)
    clot, healthy = (spec_for(f, territory="RCA", view="LAO Straight", size=256) for f in ([finding], []))
    with_clot, without = darkness(clot)[PEAK], darkness(healthy)[PEAK]
    # The defect sits just distal to the lesion centre (a quarter of its length).
    line = segment_centerlines(clot, PEAK)["prox_rca"]
    centre = round(finding.position * (len(line) - 1)) + int(finding.length_mm / 4 / 0.25)
    core = np.rint(line[centre - 4 : centre + 5]).astype(int)
    assert np.mean(with_clot[core[:, 0], core[:, 1]]) < 0.75 * np.mean(without[core[:, 0], core[:, 1]])
    # Unlike a stenosis the lumen outline stays: the opacified width across the vessel is unchanged.
    tangent = line[centre + 4] - line[centre - 4]
    normal = np.array([-tangent[1], tangent[0]]) / np.linalg.norm(tangent)
    offsets = np.arange(-12, 13)
    across = np.rint(line[centre] + offsets[:, None] * normal).astype(int)
    width_with = np.sum(with_clot[across[:, 0], across[:, 1]] > 0.25 * without.max())
    width_without = np.sum(without[across[:, 0], across[:, 1]] > 0.25 * without.max())
    assert abs(int(width_with) - int(width_without)) <= 2 and width_without >= 6
    assert study_labels(ANATOMY, (finding,))["prox_rca_thrombus"] == 1


def test_cardiac_motion_and_contrast_timing():
    spec = spec_for([], heart_rate=90.0)
    video = render(spec)
    line0 = segment_centerlines(spec, 0)["mid_lad"]
    moved = [np.abs(segment_centerlines(spec, t)["mid_lad"] - line0).max() for t in range(1, 16)]
    assert max(moved) > 2.0  # the tree moves with the heartbeat (pixels at 128 px)
    contrast = darkness(spec).sum(axis=(1, 2))
    assert contrast[0] < 0.05 * contrast.max()  # contrast has not arrived in the first frame
    assert int(np.argmax(contrast)) in range(5, 11)  # full around the middle
    assert contrast[-1] < 0.8 * contrast.max()  # and washing out at the end
    assert video.shape == (16, 128, 128)


# ------------------------------------------------------------------------------------------------------------------
# Determinism, command line, privacy, errors
# ------------------------------------------------------------------------------------------------------------------
def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path):
    options = {"image_size": 64, "frames": (6, 8), "rle_fraction": 0.5}
    first = generate_phantoms(tmp_path / "a", 3, 5, **options)
    second = generate_phantoms(tmp_path / "b", 3, 5, workers=2, **options)  # parallel rendering writes the same files
    other = generate_phantoms(tmp_path / "c", 3, 6, **options)
    digest = tree_digest(first.out_dir)
    assert len(digest) == first.num_videos + 2
    assert digest == tree_digest(second.out_dir)
    assert digest["studies.csv"] != tree_digest(other.out_dir)["studies.csv"]


def test_cli_writes_a_phantom_set_without_phi_in_logs_or_manifest(tmp_path, caplog, capsys):
    out = tmp_path / "set"
    caplog.set_level(logging.INFO, logger="deepcoro_hf")
    code = cli.main(["phantoms", str(out), "--studies", "2", "--seed", "3", "--size", "64", "--frames", "8..10", "-v"])
    assert code == 0
    printed = capsys.readouterr()
    _, studies = read_csv(out / "studies.csv")
    _, videos = read_csv(out / "videos.csv")
    assert len(studies) == 2 and len(videos) >= 4
    assert all(8 <= int(row["num_frames"]) <= 10 and row["rows"] == "64" for row in videos)
    assert "2 studies" in printed.out

    phi = set()
    for row in videos:
        ds = pydicom.dcmread(out / row["video_path"])
        assert str(ds.PatientName).startswith("Phantom^") and len(ds.PatientBirthDate) == 8
        birth = ds.PatientBirthDate
        phi |= {str(ds.PatientName), birth, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"}
    manifest_text = (out / "studies.csv").read_text() + (out / "videos.csv").read_text()
    logs = caplog.text + printed.out + printed.err
    assert caplog.records  # progress was logged...
    for value in phi:
        assert value not in manifest_text and value not in logs  # ...without names or birth dates
    assert "Phantom" not in manifest_text + logs


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    out = tmp_path / "set"
    assert cli.main(["phantoms", str(out), "--studies", "1", "--size", "48", "--frames", "4"]) == 0
    capsys.readouterr()
    assert cli.main(["phantoms", str(out), "--studies", "1", "--size", "48", "--frames", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and len(err.splitlines()) == 1
    assert cli.main(["phantoms", str(tmp_path / "x"), "--frames", "9..3"]) == 1
    assert "frames" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["phantoms", str(tmp_path / "y"), "--frames", "many"])


def test_typed_errors_name_the_field():
    assert issubclass(PhantomError, ValueError)
    with pytest.raises(PhantomError, match="Finding.segment"):
        Finding("lad")
    with pytest.raises(PhantomError, match="Finding.stenosis of mid_lad"):
        Finding("mid_lad", stenosis=120)
    with pytest.raises(PhantomError, match="Finding.calcification"):
        Finding("mid_lad", calcification="heavy")
    with pytest.raises(PhantomError, match="lacks"):
        spec_for([Finding("bx", stenosis=50)])  # no ramus in this anatomy
    with pytest.raises(PhantomError, match="VideoSpec.view"):
        replace(spec_for([]), view="Spider")
    with pytest.raises(PhantomError, match="num_studies"):
        make_studies(0, 1)
    with pytest.raises(PhantomError, match="frames"):
        make_studies(1, 1, frames=(10, 5))
    with pytest.raises(PhantomError, match="frame_index"):
        segment_centerlines(spec_for([]), 16)
    with pytest.raises(PhantomError, match="workers must be a positive integer"):
        generate_phantoms("unused", 1, workers=0)


def test_vessel_calibre_suits_low_resolution_training():
    """Proximal lumens span roughly 2.5-4 % of the image width, so lesions survive downsampling to ~128 px."""
    spec = spec_for([])
    dark = darkness(spec)[PEAK]
    for segment in ("prox_lad", "prox_lcx"):
        line = segment_centerlines(spec, PEAK)[segment]
        centre = len(line) // 2
        tangent = line[centre + 4] - line[centre - 4]
        normal = np.array([-tangent[1], tangent[0]]) / np.linalg.norm(tangent)
        offsets = np.arange(-8.0, 8.25, 0.25)
        profile = ndimage.map_coordinates(dark, (line[centre] + offsets[:, None] * normal).T, order=1)
        # Contiguous run around the centreline where the lumen is opacified (a neighbouring vessel may follow).
        inside = profile > 0.3 * profile[len(offsets) // 2]
        middle = len(offsets) // 2
        left = middle - np.argmin(inside[middle::-1])
        right = middle + np.argmin(inside[middle:])
        width = 0.25 * (right - left)
        assert 0.025 * 128 <= width <= 0.045 * 128, (segment, width)


def test_each_territory_draws_the_vocabulary_segments():
    """A left video shows exactly the segments the vocabulary assigns to the left territory for that dominance."""
    for dominance in ("right", "left", "co"):
        for has_ramus in (False, True):
            anatomy = Anatomy(dominance, has_ramus, seed=1)
            for territory, view in (("LCA", "RAO Caudal"), ("RCA", "LAO Straight")):
                spec = replace(spec_for([], territory=territory, view=view), anatomy=anatomy)
                expected = set(segments_for_territory(territory, dominance)) & set(anatomy.segments)
                assert set(segment_centerlines(spec, 0)) == expected, (dominance, has_ramus, territory)


def test_projection_follows_the_dicom_angle_convention():
    """AP shows the patient's left on the image right: the apex (end of the distal LAD) lies right of the left main.
    The heart's long axis points left and anterior, so RAO shows the LAD in its length while LAO looks down it."""
    reach = {}
    for view in ("AP", "LAO Straight", "RAO Straight"):
        lines = segment_centerlines(spec_for([], view=view), 0)
        reach[view] = lines["dist_lad"][-1, 1] - lines["left_main"][0, 1]
    assert reach["AP"] > 0 and reach["RAO Straight"] > 0
    assert reach["RAO Straight"] > 1.5 * reach["LAO Straight"]


def test_upsampling_matches_scipy_zoom():
    from deepcoro_hf.phantoms import _upsample

    rng = np.random.default_rng(0)
    for n, size in ((32, 128), (32, 100), (48, 192)):
        image = rng.random((n, n)).astype(np.float32)
        expected = ndimage.zoom(image, size / n, order=1, grid_mode=True, mode="nearest")
        np.testing.assert_allclose(_upsample(image, size), expected, atol=1e-5)
        assert _upsample(image, size).flags["C_CONTIGUOUS"]


def test_rle_bytes_do_not_depend_on_the_encoder_installed():
    """pylibjpeg-rle and pydicom's own encoder write identical RLE, so a seed gives the same files either way."""
    from pydicom.pixels.encoders import RLELosslessEncoder

    if "pylibjpeg" not in RLELosslessEncoder.available_plugins:
        pytest.skip("pylibjpeg-rle is not installed")
    rng = np.random.default_rng(0)
    for bits, dtype in ((8, np.uint8), (12, np.uint16)):
        frame = rng.integers(0, 1 << bits, size=(40, 48)).astype(dtype)
        frame[10:30] = 7  # some runs as well as literals
        kwargs = {
            "rows": 40, "columns": 48, "samples_per_pixel": 1, "bits_allocated": frame.itemsize * 8,
            "bits_stored": bits, "pixel_representation": 0, "photometric_interpretation": "MONOCHROME2",
            "number_of_frames": 1,
        }  # fmt: skip
        fast = RLELosslessEncoder.encode(frame, encoding_plugin="pylibjpeg", **kwargs)
        assert fast == RLELosslessEncoder.encode(frame, encoding_plugin="pydicom", **kwargs)


def test_study_repr_hides_the_synthetic_phi():
    study = make_studies(1, 0, image_size=64, frames=(2, 2))[0]
    assert study.patient_name.startswith("Phantom^") and study.birth_date is not None
    text = repr(study)
    assert "Phantom" not in text and study.birth_date.isoformat() not in text and "birth" not in text
