"""The main job (`deepcoro demo`) and the bundled phantom-trained model it uses."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from deepcoro_hf.cli import main as deepcoro
from deepcoro_hf.demo import DEMO_MODEL
from deepcoro_hf.vocabulary import SEGMENT_KEYS, SEGMENT_TASKS


def test_demo_turns_a_dicom_study_into_a_segment_report(tmp_path, capsys):
    assert deepcoro(["demo", "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "phantom ground truth:" in printed and "Phantom^" not in printed
    results = json.loads((tmp_path / "report.json").read_text())
    study = results[0] if isinstance(results, list) else results["studies"][0]
    assert [s["segment"] if "segment" in s else s["key"] for s in study["segments"]] == list(SEGMENT_KEYS)
    for segment in study["segments"]:
        assert set(SEGMENT_TASKS) <= set(segment)
        assert 0.0 <= segment["stenosis_binary"] <= 1.0 and 0.0 <= segment["cto"] <= 1.0


def test_bundled_model_on_fresh_phantoms(tmp_path):
    """The shipped model against phantoms it never saw (another seed): its held-out figures stay where they were
    measured. That level is segment prevalence (README, "Proof that it learns"), so this guards the wiring — segment
    order, heads, processor settings, weights loading from the package — not image understanding."""
    data = tmp_path / "fresh"
    assert deepcoro(["phantoms", str(data), "--studies", "60", "--seed", "977", "--size", "192", "--frames", "16"]) == 0
    manifest = pd.read_csv(data / "studies.csv", dtype=str, keep_default_na=False)
    manifest.assign(split="test").to_csv(data / "studies.csv", index=False)  # all of them are held out here
    out = tmp_path / "eval"
    assert deepcoro(["evaluate", "--model", str(DEMO_MODEL), "--data_dir", str(data), "--split", "test",
                     "--output_dir", str(out), "--n_bootstrap", "0", "--cache_dir", str(tmp_path / "cache")]) == 0
    predictions = pd.read_csv(out / "predictions.csv", index_col="study_id")
    studies = pd.read_csv(data / "studies.csv", dtype={"study_id": str}).set_index("study_id")
    aurocs = {}
    for task in ("stenosis_binary", "cto"):
        columns = [f"{segment}_{task}" for segment in SEGMENT_KEYS]
        y = studies.loc[predictions.index, columns].to_numpy().ravel()
        p = predictions[[f"{c}_pred" for c in columns]].to_numpy().ravel()
        aurocs[task] = roc_auc_score(y[~np.isnan(y)], p[~np.isnan(y)])
    assert aurocs["stenosis_binary"] > DEMO_MIN_AUROC["stenosis_binary"], aurocs
    assert aurocs["cto"] > DEMO_MIN_AUROC["cto"], aurocs


# Measured on these 60 phantoms (seed 977): stenosis >= 70 % 0.668, CTO 0.839 (training-split segment prevalence
# alone: 0.695, 0.841); seeds 978-980 gave 0.59-0.82 and 0.74-0.82. The bounds leave room for floating-point
# differences between machines, not for broken wiring.
DEMO_MIN_AUROC = {"stenosis_binary": 0.62, "cto": 0.78}
