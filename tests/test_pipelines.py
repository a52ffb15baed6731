"""The transformers pipelines: study analysis, zero-shot classification and feature extraction on tiny models.

Every number a pipeline returns is checked against the model called directly on the video processor's output; views
and file names against the phantom manifest; the report against the vocabulary's sentences."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_clip_config
from transformers import BertTokenizer, pipeline

from deepcoro_hf.modeling_deepcoro import DeepCoroClipModel, DeepCoroForSegmentClassification
from deepcoro_hf.phantoms import generate_phantoms
from deepcoro_hf.pipeline_deepcoro import (
    FEATURE_EXTRACTION,
    STUDY_ANALYSIS,
    ZERO_SHOT,
    StudyInputError,
    save_pipeline_folder,
)
from deepcoro_hf.processing_deepcoro import DeepCoroProcessor
from deepcoro_hf.video_processing_deepcoro import DeepCoroVideoProcessor
from deepcoro_hf.vocabulary import (
    FINDING_PHRASES,
    MACE_TASKS,
    SEGMENT_KEYS,
    SEGMENT_TASKS,
    describe_predicted_segment,
    zero_shot_prompts,
)


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "mid", "lad", "has", "a", "no", "severe", "mild",
         "moderate", "significant", "stenosis", "chronic", "total", "occlusion", "thrombus", "or", "calcification", ".",
         ":"]
TASKS = list(SEGMENT_TASKS)
BINARY = [task for task in TASKS if SEGMENT_TASKS[task] == "binary"]


def video_processor() -> DeepCoroVideoProcessor:
    return DeepCoroVideoProcessor(num_frames=4, size={"height": 32, "width": 32})


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline_phantoms")
    generate_phantoms(root, num_studies=2, seed=5, image_size=64, frames=(16, 16))
    folders = sorted(p for p in (root / "dicom").glob("*/*") if p.is_dir())
    with open(root / "videos.csv", newline="") as handle:
        videos = list(csv.DictReader(handle))
    return folders, videos


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return DeepCoroForSegmentClassification(tiny_clip_config()).eval()


@pytest.fixture(scope="module")
def analysis(classifier):
    return pipeline(STUDY_ANALYSIS, model=classifier, video_processor=video_processor(), device="cpu")


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(1)
    model = DeepCoroClipModel(tiny_clip_config()).eval()
    processor = DeepCoroProcessor(video_processor(), BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}))
    return model, processor


def study_inputs(folder: Path, max_videos: int = 4) -> dict:
    """The tensors the model takes for one study folder, straight from the video processor."""
    return video_processor()(
        studies=[sorted(str(p) for p in folder.iterdir())], return_tensors="pt", skip_invalid=True,
        max_videos=max_videos,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Study analysis
# ----------------------------------------------------------------------------------------------------------------------
def test_study_analysis_returns_the_models_outputs_per_segment(analysis, classifier, phantoms):
    folders, manifest = phantoms
    result = analysis(str(folders[0]))

    inputs = study_inputs(folders[0])
    with torch.no_grad():
        expected = classifier(pixel_values_videos=inputs["pixel_values_videos"], video_mask=inputs["video_mask"])
    logits = expected.logits[0]
    assert [entry["segment"] for entry in result["segments"]] == list(SEGMENT_KEYS)
    for s, entry in enumerate(result["segments"]):
        assert entry["stenosis"] == pytest.approx(logits[s, 0].item(), abs=1e-6)  # regression: label units
        for k, task in enumerate(BINARY, start=1):
            assert entry[task] == pytest.approx(torch.sigmoid(logits[s, k]).item(), abs=1e-6)
        assert entry["findings"] == [t for t in BINARY if entry[t] >= 0.5]
        assert entry["flagged"] == bool(entry["findings"])

    # Videos: file names only, in the processor's (acquisition) order, with the manifest's views and frame rates.
    by_file = {Path(row["video_path"]).name: row for row in manifest}
    assert len(result["videos"]) == int(inputs["video_mask"].sum()) == 4
    weights = zip(expected.cls_attention_weights[0], expected.gated_attention_weights[0])
    for video, (weight, gated) in zip(result["videos"], weights):
        row = by_file[video["source"]]
        assert video["view"] == row["view"] and video["fps"] == pytest.approx(float(row["fps"]), rel=1e-4)
        assert video["cls_attention"] == pytest.approx(weight.item(), abs=1e-6)
        assert video["gated_attention"] == pytest.approx(gated.item(), abs=1e-6)
    assert sum(v["cls_attention"] for v in result["videos"]) == pytest.approx(1.0, abs=1e-5)
    assert result["study_id"] == folders[0].name == result["study_uid"]
    # Nothing is dropped silently: the videos past max_videos=4 are listed.
    files = sorted(p.name for p in folders[0].iterdir())
    assert sorted([v["source"] for v in result["videos"]] + [s["source"] for s in result["skipped"]]) == files
    assert all("beyond max_videos=4" in s["reason"] for s in result["skipped"])


def test_threshold_decides_the_flags_and_the_report(analysis, phantoms):
    folder = phantoms[0][1]
    everything = analysis(str(folder), threshold=0.0)
    nothing = analysis(str(folder), threshold=1.0)
    assert all(entry["flagged"] for entry in everything["segments"])
    assert not any(entry["flagged"] for entry in nothing["segments"])
    lines = everything["report"].splitlines()
    expected = [
        describe_predicted_segment(entry["segment"], {t: entry[t] for t in ("stenosis", "stenosis_binary",
                                   "calcif_binary", "cto", "thrombus")}, 0.0)
        for entry in everything["segments"]
    ]
    assert lines[:18] == expected
    assert nothing["report"].splitlines()[0] == "No significant stenosis (no finding reaches P >= 1.00)."
    views = ", ".join(video["view"] for video in nothing["videos"])
    assert f"Views analysed (4 videos): {views}." in nothing["report"]
    middle = analysis(str(folder), threshold=0.5)
    assert sum(entry["flagged"] for entry in middle["segments"]) == sum(
        describe_predicted_segment(entry["segment"], entry, 0.5) is not None for entry in middle["segments"]
    )
    for bad in (-0.1, 1.5, "high"):
        with pytest.raises(ValueError, match="threshold must be a probability"):
            analysis(str(folder), threshold=bad)


def test_corrupt_and_non_video_files_are_skipped_and_listed(analysis, phantoms, tmp_path):
    source = phantoms[0][1]
    study = tmp_path / "study"
    study.mkdir()
    for path in sorted(source.iterdir())[:3]:  # under max_videos, so that every file is read
        shutil.copy(path, study)
    first = sorted(study.iterdir())[0]
    (study / "broken.dcm").write_bytes(first.read_bytes()[:3000])  # a truncated copy
    (study / "README.txt").write_text("exported from the cath lab\n")
    (study / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    result = analysis(str(study))
    reasons = {item["source"]: item["reason"] for item in result["skipped"]}
    assert reasons["broken.dcm"].startswith("TruncatedDicomError: broken.dcm")
    assert reasons["README.txt"].startswith("UnsupportedVideoError") and reasons[".DS_Store"].startswith("Unsupported")
    assert str(tmp_path) not in repr(result)  # names, never full paths
    assert len(result["videos"]) == 3 and len(result["segments"]) == 18 and len(result["skipped"]) == 3
    assert "broken.dcm (TruncatedDicomError)" in result["report"]
    assert "README.txt (UnsupportedVideoError)" in result["report"]
    assert len(result["videos"]) + len(result["skipped"]) == len(list(study.iterdir()))


def test_study_inputs_and_their_errors(analysis, classifier, phantoms, tmp_path):
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (6, 40, 40), dtype=np.uint8), rng.integers(0, 256, (9, 48, 36), dtype=np.uint8)]
    result = analysis({"videos": clips, "study_id": "arrays"})
    assert result["study_id"] == "arrays" and result["study_uid"] is None
    assert [v["source"] for v in result["videos"]] == ["videos[0]", "videos[1]"]
    inputs = video_processor()(studies=[clips], return_tensors="pt", max_videos=4)
    with torch.no_grad():
        logits = classifier(**inputs).logits[0]
    assert [e["stenosis"] for e in result["segments"]] == pytest.approx(logits[:, 0].tolist(), abs=1e-6)

    one = analysis(clips[0])  # a bare array is a one-video study
    assert len(one["videos"]) == 1 and one["study_id"] is None
    dicom = sorted(phantoms[0][0].iterdir())[0]
    single = analysis(str(dicom))  # a single DICOM file is a one-video study
    assert single["study_id"] == dicom.name and [v["source"] for v in single["videos"]] == [dicom.name]

    with pytest.raises(StudyInputError, match="no such study folder or video file"):
        analysis(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyInputError, match="holds no files"):
        analysis(str(tmp_path / "empty"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("no videos here")
    with pytest.raises(StudyInputError, match="none of its 1 files is a DICOM or video file"):
        analysis(str(tmp_path / "notes"))
    with pytest.raises(StudyInputError, match="needs a 'videos' entry"):
        analysis({"files": clips})
    with pytest.raises(ValueError, match="coronary-study-analysis needs a DeepCoroForSegmentClassification"):
        pipeline(STUDY_ANALYSIS, model=DeepCoroClipModel(tiny_clip_config()), video_processor=video_processor(),
                 device="cpu")


def test_a_batch_of_studies_gives_the_single_study_results(analysis, phantoms):
    folders = [str(folder) for folder in phantoms[0]]
    batched = analysis(folders, batch_size=2)
    single = [analysis(folder) for folder in folders]
    assert [r["study_id"] for r in batched] == [r["study_id"] for r in single]
    for a, b in zip(batched, single):
        for x, y in zip(a["segments"], b["segments"]):
            assert [x[t] for t in TASKS] == pytest.approx([y[t] for t in TASKS], abs=1e-5)
        assert [v["source"] for v in a["videos"]] == [v["source"] for v in b["videos"]]


def test_study_level_tasks_have_no_segment_axis(phantoms):
    torch.manual_seed(2)
    model = DeepCoroForSegmentClassification(tiny_clip_config(segments=[], tasks=list(MACE_TASKS), mil_dropout=0.5))
    assert model.training  # as built; the pipeline must switch dropout off itself
    pipe = pipeline(STUDY_ANALYSIS, model=model, video_processor=video_processor(), device="cpu")
    assert not model.training
    folder = phantoms[0][1]
    result = pipe(str(folder), threshold=0.3)
    assert "segments" not in result
    inputs = study_inputs(folder)
    with torch.no_grad():
        probabilities = torch.sigmoid(model(**inputs).logits[0, 0])
    assert [result["study_tasks"][t] for t in MACE_TASKS] == pytest.approx(probabilities.tolist(), abs=1e-6)
    assert result["study_tasks"]["findings"] == [t for t in MACE_TASKS if result["study_tasks"][t] >= 0.3]
    assert f"MACE (composite): probability {result['study_tasks']['mace_composite']:.2f}" in result["report"]


# ----------------------------------------------------------------------------------------------------------------------
# Zero-shot classification and embeddings
# ----------------------------------------------------------------------------------------------------------------------
def test_zero_shot_scores_are_the_softmax_of_the_models_similarities(clip, phantoms):
    model, processor = clip
    pipe = pipeline(ZERO_SHOT, model=model, tokenizer=processor.tokenizer, video_processor=processor.video_processor,
                    device="cpu")
    folder = phantoms[0][0]
    labels = ["severe stenosis", "no significant stenosis", "chronic total occlusion"]
    result = pipe(str(folder), candidate_labels=labels, hypothesis_template="The mid LAD has {}.")

    prompts = [f"The mid LAD has {label}." for label in labels]
    videos = sorted(str(p) for p in folder.iterdir())
    inputs = processor(studies=[videos], text=prompts, return_tensors="pt", max_videos=4)
    with torch.no_grad():
        logits = model(**inputs).logits_per_video[0]
    expected = dict(zip(labels, logits.softmax(-1).tolist()))
    assert sorted(result["labels"]) == sorted(labels) and sum(result["scores"]) == pytest.approx(1.0, abs=1e-6)
    assert result["scores"] == sorted(result["scores"], reverse=True)
    for label, score in zip(result["labels"], result["scores"]):
        assert score == pytest.approx(expected[label], abs=1e-6)

    batched = pipe([str(folder), str(folder)], candidate_labels=labels, hypothesis_template="The mid LAD has {}.",
                   batch_size=2)
    for other in batched:
        assert other["labels"] == result["labels"] and other["scores"] == pytest.approx(result["scores"], abs=1e-6)
    default = pipe(str(folder), segment="mid_lad")  # the vocabulary's findings, each a prompt ensemble
    assert sorted(default["labels"]) == sorted(FINDING_PHRASES)
    assert len(zero_shot_prompts("mid_lad")["severe"]) == 2
    with pytest.raises(ValueError, match="pass candidate_labels"):
        pipe(str(folder))
    with pytest.raises(ValueError, match="must contain"):
        pipe(str(folder), candidate_labels=labels, hypothesis_template="no slot")


def test_zero_shot_scores_of_a_siglip_model_are_independent_sigmoids(phantoms):
    torch.manual_seed(3)
    model = DeepCoroClipModel(tiny_clip_config(loss_type="siglip", siglip_bias_init=0.5)).eval()
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    pipe = pipeline(ZERO_SHOT, model=model, tokenizer=tokenizer, video_processor=video_processor(), device="cpu")
    labels = ["severe stenosis", "thrombus"]
    result = pipe(str(phantoms[0][1]), candidate_labels=labels)
    processor = DeepCoroProcessor(video_processor(), tokenizer)
    inputs = processor(studies=[sorted(str(p) for p in phantoms[0][1].iterdir())], text=labels, return_tensors="pt",
                       max_videos=4)
    with torch.no_grad():
        logits = model(**inputs).logits_per_video[0]
    expected = dict(zip(labels, torch.sigmoid(logits).tolist()))
    assert dict(zip(result["labels"], result["scores"])) == pytest.approx(expected, abs=1e-6)


def test_feature_extraction_gives_the_models_embeddings(clip, classifier, phantoms):
    model, processor = clip
    pipe = pipeline(FEATURE_EXTRACTION, model=model, tokenizer=processor.tokenizer,
                    video_processor=processor.video_processor, device="cpu")
    folder = phantoms[0][1]
    result = pipe(str(folder), return_tensors=True)
    inputs = study_inputs(folder)
    with torch.no_grad():
        study = model.get_video_features(inputs["pixel_values_videos"], inputs["video_mask"])[0]
        videos = model.get_video_features(inputs["pixel_values_videos"][inputs["video_mask"]])
    torch.testing.assert_close(result["study_embedding"], study, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result["video_embeddings"], videos, atol=1e-6, rtol=1e-5)
    normalised = pipe(str(folder), normalize=True)
    assert np.linalg.norm(normalised["study_embedding"]) == pytest.approx(1.0, abs=1e-6)
    assert isinstance(normalised["study_embedding"], list)

    texts = ["The mid LAD has a severe stenosis.", "The mid LAD has no significant stenosis."]
    embedded = pipe({"text": texts}, return_tensors=True)
    encoded = processor.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model.get_text_features(**encoded)
    torch.testing.assert_close(embedded["text_embeddings"], expected, atol=1e-6, rtol=1e-5)

    features = pipeline(FEATURE_EXTRACTION, model=classifier, video_processor=video_processor(), device="cpu")
    pooled = features(str(folder), return_tensors=True)
    with torch.no_grad():
        expected = classifier(**inputs).study_embeds[0]
    torch.testing.assert_close(pooled["study_embedding"], expected, atol=1e-6, rtol=1e-5)
    assert pooled["video_embeddings"] is None
    with pytest.raises(ValueError, match="text embeddings need a DeepCoroClipModel"):
        features({"text": "severe stenosis"})


# ----------------------------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------------------------
def test_save_pipeline_folder_registers_the_tasks_and_writes_the_code(classifier, clip, tmp_path):
    import json

    assert save_pipeline_folder(classifier, video_processor(), tmp_path / "classifier") == [STUDY_ANALYSIS]
    config = json.loads((tmp_path / "classifier" / "config.json").read_text())
    assert config["custom_pipelines"] == {
        STUDY_ANALYSIS: {"impl": "pipeline_deepcoro.CoronaryStudyAnalysisPipeline",
                         "pt": ["AutoModelForVideoClassification"], "type": "video"}
    }
    files = {p.name for p in (tmp_path / "classifier").iterdir()}
    assert {"pipeline_deepcoro.py", "vocabulary.py", "video_preprocessor_config.json", "model.safetensors"} <= files
    assert not hasattr(classifier.config, "custom_pipelines")  # the model's own config is left as it was

    model, processor = clip
    assert save_pipeline_folder(model, processor, tmp_path / "clip") == [ZERO_SHOT, FEATURE_EXTRACTION]
    config = json.loads((tmp_path / "clip" / "config.json").read_text())
    assert {spec["pt"][0] for spec in config["custom_pipelines"].values()} == {"AutoModel"}
    assert (tmp_path / "clip" / "tokenizer_config.json").exists()
    with pytest.raises(ValueError, match="needs the tokenizer"):
        save_pipeline_folder(model, processor.video_processor, tmp_path / "no_tokenizer", tasks=[ZERO_SHOT])
    with pytest.raises(ValueError, match="needs a DeepCoroClipModel"):
        save_pipeline_folder(classifier, video_processor(), tmp_path / "bad", tasks=[ZERO_SHOT])
