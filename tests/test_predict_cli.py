"""`deepcoro predict` / `deepcoro embed`, and the acceptance test: a saved folder loaded by `transformers.pipeline` in a
process that never imports deepcoro_hf gives the numbers `deepcoro predict` writes."""

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pydicom
import pytest
import torch
from conftest import tiny_clip_config
from transformers import BertTokenizer

from deepcoro_hf.cli import main
from deepcoro_hf.modeling_deepcoro import DeepCoroClipModel, DeepCoroForSegmentClassification
from deepcoro_hf.phantoms import generate_phantoms
from deepcoro_hf.pipeline_deepcoro import PIPELINES, save_pipeline_folder
from deepcoro_hf.processing_deepcoro import DeepCoroProcessor
from deepcoro_hf.video_processing_deepcoro import DeepCoroVideoProcessor
from deepcoro_hf.vocabulary import SEGMENT_KEYS, SEGMENT_TASKS


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "has", "a", "no", "severe", "significant", "stenosis",
         "."]
TASKS = list(SEGMENT_TASKS)


def video_processor() -> DeepCoroVideoProcessor:
    return DeepCoroVideoProcessor(num_frames=4, size={"height": 32, "width": 32})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two phantom studies, a study with a truncated DICOM and a text file, and saved classifier and CLIP folders."""
    root = tmp_path_factory.mktemp("predict")
    generate_phantoms(root / "phantoms", num_studies=2, seed=7, image_size=64, frames=(16, 16))
    studies = sorted(p for p in (root / "phantoms" / "dicom").glob("*/*") if p.is_dir())
    bad = root / "bad_study"
    bad.mkdir()
    for path in sorted(studies[1].iterdir())[:2]:
        shutil.copy(path, bad)
    (bad / "broken.dcm").write_bytes(sorted(bad.iterdir())[0].read_bytes()[:3000])
    (bad / "README.txt").write_text("export notes\n")

    torch.manual_seed(0)
    save_pipeline_folder(DeepCoroForSegmentClassification(tiny_clip_config()), video_processor(), root / "classifier")
    torch.manual_seed(1)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    clip_processor = DeepCoroProcessor(video_processor(), tokenizer)
    save_pipeline_folder(DeepCoroClipModel(tiny_clip_config()), clip_processor, root / "clip")

    phi, patient_ids = ["Phantom^"], []
    for study in studies:  # read back with pydicom: what the files hold, whatever the phantom writer meant to write
        header = pydicom.dcmread(next(study.iterdir()), stop_before_pixels=True)
        birth = str(header.PatientBirthDate)
        phi += [str(header.PatientName), birth, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"]
        patient_ids.append(str(header.PatientID))
    assert all(len(value) >= 8 for value in phi) and all(patient_ids)
    return {"root": root, "studies": studies, "bad": bad, "phi": phi, "patient_ids": patient_ids}


def predict(*args: str) -> int:
    return main(["predict", *map(str, args), "--device", "cpu"])


def assert_no_phi(data, *texts: str, patient_id: bool = True) -> None:
    for text in texts:
        for value in data["phi"] + (data["patient_ids"] if patient_id else []):
            assert value not in text, f"PHI {value!r} found"


# ----------------------------------------------------------------------------------------------------------------------
# predict
# ----------------------------------------------------------------------------------------------------------------------
def test_predict_prints_a_table_and_report_per_study_and_writes_json(data, tmp_path, capsys, caplog):
    out = tmp_path / "results.json"
    assert predict(data["studies"][0], data["bad"], "--model", data["root"] / "classifier", "--output", out) == 0
    captured = capsys.readouterr()

    results = json.loads(out.read_text())
    assert [r["study_id"] for r in results] == [data["studies"][0].name, "bad_study"]
    for result in results:
        assert [entry["segment"] for entry in result["segments"]] == list(SEGMENT_KEYS)
        assert all(isinstance(entry[task], float) for entry in result["segments"] for task in TASKS)
    skipped = {item["source"]: item["reason"] for item in results[1]["skipped"]}
    assert skipped["broken.dcm"].startswith("TruncatedDicomError") and skipped["README.txt"].startswith("Unsupported")
    assert results[1]["study_uid"] == data["studies"][1].name  # the study the copied videos came from

    stdout = captured.out
    assert stdout.count("Study ") == 2 and stdout.count("Report:") == 2
    assert "Segment" in stdout and "Stenosis %" in stdout and "P(>=70%)" in stdout and "Thrombus" in stdout
    first = results[0]["segments"][0]
    row = next(line for line in stdout.splitlines() if line.startswith("proximal RCA (1)"))
    assert row.split()[3:8] == [f"{first['stenosis']:.1f}", f"{first['stenosis_binary']:.2f}",
                                f"{first['calcif_binary']:.2f}", f"{first['cto']:.2f}", f"{first['thrombus']:.2f}"]
    for line in results[1]["report"].splitlines():
        assert f"  {line}" in stdout
    assert "Files not analysed (2): README.txt (UnsupportedVideoError), broken.dcm (TruncatedDicomError)." in stdout
    assert "2 of 2 studies analysed" in captured.err
    assert_no_phi(data, stdout, out.read_text())
    assert_no_phi(data, captured.err, caplog.text, patient_id=False)  # logs may name the paths given


def test_a_missing_study_is_reported_and_the_others_are_written_to_csv(data, tmp_path, capsys):
    out = tmp_path / "results.csv"
    code = predict(data["studies"][1], tmp_path / "no_such_study", "--model", data["root"] / "classifier", "--output",
                   out, "--threshold", "0.5")
    captured = capsys.readouterr()
    assert code == 1
    failures = [line for line in captured.err.splitlines() if "no_such_study" in line]
    assert failures and failures[0].startswith("study no_such_study: failed:") and "no such study folder" in failures[0]
    assert "1 of 2 studies analysed, 1 failed" in captured.err

    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 18 and {row["study_id"] for row in rows} == {data["studies"][1].name}
    assert [row["segment"] for row in rows] == list(SEGMENT_KEYS)
    for row in rows:
        values = {task: float(row[task]) for task in TASKS}
        assert all(0.0 <= values[task] <= 1.0 for task in TASKS[1:])
        assert row["flagged"] == str(any(values[task] >= 0.5 for task in TASKS[1:]))
    assert_no_phi(data, captured.out, out.read_text())


def test_batches_give_the_same_numbers_and_a_patient_folder_splits_into_its_studies(data, tmp_path, caplog):
    single, batched = tmp_path / "single.json", tmp_path / "batched.json"
    folders = data["studies"]
    assert predict(*folders, "--model", data["root"] / "classifier", "--output", single) == 0
    assert predict(*folders, "--model", data["root"] / "classifier", "--output", batched, "--batch-size", "2") == 0
    for a, b in zip(json.loads(single.read_text()), json.loads(batched.read_text())):
        for x, y in zip(a["segments"], b["segments"]):
            assert [x[t] for t in TASKS] == pytest.approx([y[t] for t in TASKS], abs=1e-5)

    mixed = tmp_path / "export"  # two studies under one folder, plus a stray file
    for folder in folders:
        shutil.copytree(folder, mixed / "series" / folder.name[-6:])
    (mixed / "notes.txt").write_text("not a video")
    split = tmp_path / "split.json"
    assert predict(mixed, "--model", data["root"] / "classifier", "--output", split) == 0
    results = json.loads(split.read_text())
    assert sorted(r["study_id"] for r in results) == sorted(folder.name for folder in folders)
    assert "1 file(s) belong to none of its 2 studies" in caplog.text and "notes.txt" in caplog.text  # logged


def test_predict_errors_are_one_clear_line(data, tmp_path, capsys):
    assert predict(data["studies"][0], "--model", data["root"] / "clip") == 1
    assert "predict needs a segment classifier" in capsys.readouterr().err
    assert predict(data["studies"][0], "--model", data["root"] / "classifier", "--output", tmp_path / "x.txt") == 1
    err = capsys.readouterr().err
    assert "expected a .json or .csv file" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        predict(data["studies"][0], "--model", data["root"] / "classifier", "--threshold", "2")
    assert exit_info.value.code == 2 and "probability between 0 and 1" in capsys.readouterr().err
    for command in ("predict", "embed"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and "--model" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------------------
# embed
# ----------------------------------------------------------------------------------------------------------------------
def test_embed_writes_study_and_video_embeddings(data, tmp_path, capsys):
    import pyarrow.parquet as pq
    from transformers import AutoModel

    out = tmp_path / "embeddings.npz"
    assert main(["embed", *map(str, data["studies"]), "--model", str(data["root"] / "clip"), "--output", str(out),
                 "--device", "cpu"]) == 0
    arrays = np.load(out)
    assert list(arrays["study_ids"]) == [folder.name for folder in data["studies"]]
    model = AutoModel.from_pretrained(data["root"] / "clip").eval()
    inputs = video_processor()(studies=[sorted(str(p) for p in data["studies"][0].iterdir())], return_tensors="pt",
                               max_videos=4)
    with torch.no_grad():
        study = model.get_video_features(inputs["pixel_values_videos"], inputs["video_mask"])[0]
        videos = model.get_video_features(inputs["pixel_values_videos"][inputs["video_mask"]])
    np.testing.assert_allclose(arrays["study_embeddings"][0], study.numpy(), atol=1e-5)
    first = arrays["video_study_index"] == 0
    np.testing.assert_allclose(arrays["video_embeddings"][first], videos.numpy(), atol=1e-5)
    assert all(name.endswith(".dcm") and os.sep not in name for name in arrays["video_sources"])

    parquet = tmp_path / "embeddings.parquet"
    assert main(["embed", str(data["bad"]), "--model", str(data["root"] / "classifier"), "--output", str(parquet),
                 "--normalize", "--device", "cpu"]) == 0
    table = pq.read_table(parquet).to_pylist()
    assert [row["level"] for row in table] == ["study"] and table[0]["study_id"] == "bad_study"
    assert np.linalg.norm(table[0]["embedding"]) == pytest.approx(1.0, abs=1e-5)
    assert "1 of 1 studies embedded" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# Acceptance: the saved folders in a process without deepcoro_hf
# ----------------------------------------------------------------------------------------------------------------------
REMOTE = """
import json, sys
from transformers import pipeline

classifier, clip, study, out = sys.argv[1:5]
analysis = pipeline(model=classifier, trust_remote_code=True, device="cpu")  # one registered task: inferred
result = analysis(study)
zero_shot = pipeline("coronary-zero-shot-classification", model=clip, trust_remote_code=True, device="cpu")
scores = zero_shot(study, candidate_labels=["severe stenosis", "no significant stenosis"])
features = pipeline("coronary-feature-extraction", model=clip, trust_remote_code=True, device="cpu")(study)
loaded = sorted(name for name in sys.modules if name.startswith("deepcoro"))
assert "deepcoro_hf" not in sys.modules, loaded
with open(out, "w") as handle:
    json.dump({"analysis": result, "zero_shot": scores, "features": features,
               "module": type(analysis).__module__}, handle)
"""


def test_a_saved_folder_gives_the_cli_numbers_without_the_package(data, tmp_path, capsys):
    from transformers import pipeline

    cli_json = tmp_path / "cli.json"
    assert predict(data["bad"], "--model", data["root"] / "classifier", "--output", cli_json) == 0
    expected = json.loads(cli_json.read_text())[0]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    remote = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REMOTE), str(data["root"] / "classifier"), str(data["root"] / "clip"),
         str(data["bad"]), str(tmp_path / "remote.json")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240,
    )
    assert remote.returncode == 0, remote.stderr[-3000:]
    got = json.loads((tmp_path / "remote.json").read_text())
    assert got["module"].startswith("transformers_modules.")

    result = got["analysis"]
    assert result["study_id"] == expected["study_id"] == "bad_study"
    for x, y in zip(result["segments"], expected["segments"], strict=True):
        assert [x[t] for t in TASKS] == pytest.approx([y[t] for t in TASKS], abs=1e-5)
        assert x["flagged"] == y["flagged"]
    for x, y in zip(result["videos"], expected["videos"], strict=True):
        assert x["source"] == y["source"] and x["view"] == y["view"]
        assert x["cls_attention"] == pytest.approx(y["cls_attention"], abs=1e-5)
    assert result["skipped"] == expected["skipped"] and result["report"] == expected["report"]

    # The CLIP folder's tasks give, without the package, what they give with it.
    tasks = {"zero_shot": "coronary-zero-shot-classification", "features": "coronary-feature-extraction"}
    # In this process the package's own classes load the folder (no remote code is written to the user's cache).
    local = {name: pipeline(task, model=str(data["root"] / "clip"), device="cpu", pipeline_class=PIPELINES[task][0])
             for name, task in tasks.items()}
    scores = local["zero_shot"](str(data["bad"]), candidate_labels=["severe stenosis", "no significant stenosis"])
    assert got["zero_shot"]["labels"] == scores["labels"]
    assert got["zero_shot"]["scores"] == pytest.approx(scores["scores"], abs=1e-5)
    features = local["features"](str(data["bad"]))
    np.testing.assert_allclose(got["features"]["study_embedding"], features["study_embedding"], atol=1e-5)
    np.testing.assert_allclose(got["features"]["video_embeddings"], features["video_embeddings"], atol=1e-5)
    assert_no_phi(data, json.dumps(got), remote.stdout)
    assert_no_phi(data, remote.stderr, patient_id=False)

