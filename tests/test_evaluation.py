"""Evaluation metrics: equal to scikit-learn / scipy, patient-level bootstrap, DeLong, retrieval, paper tables."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
    roc_curve,
)

from deepcoro_hf.evaluation import (
    EvaluationInputError,
    alignment_score,
    best_match_ranks,
    binary_metrics_weighted,
    cross_modal_retrieval,
    delong_covariance,
    delong_test,
    evaluate_binary,
    evaluate_regression,
    evaluate_segments,
    mean_embeddings_by_group,
    metric_path,
    patient_bootstrap_counts,
    regression_metrics_weighted,
    relevance_from_groups,
    retrieval_metrics,
    write_tables,
    youden_operating_point,
)
from deepcoro_hf.vocabulary import LABEL_COLUMNS, SEGMENT_TASKS, SEGMENTS, label_column

TOL = 1e-9


def _binary_data(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and rounded (hence tied) probabilities that carry some signal."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    s = np.round(np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1), 2)
    return y, s


def _reference_youden(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """Youden point from scikit-learn's ROC curve and confusion matrix (the +inf threshold is not a candidate)."""
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    best = 1 + int(np.argmax((tpr - fpr)[1:]))
    tn, fp, fn, tp = confusion_matrix(y, (s >= thresholds[best]).astype(int), labels=[0, 1]).ravel()
    npv = tn / (tn + fn) if tn + fn else math.nan
    return {
        "threshold": thresholds[best],
        "sensitivity": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "ppv": tp / (tp + fp),
        "npv": npv,
    }


# --------------------------------------------------------------------------------------------------------------
# Point estimates against scikit-learn / scipy
# --------------------------------------------------------------------------------------------------------------
def test_binary_point_estimates_equal_sklearn():
    y, s = _binary_data()
    result = evaluate_binary(y, s, n_bootstrap=0)
    assert result.auroc.value == pytest.approx(roc_auc_score(y, s), abs=TOL)
    assert result.auprc.value == pytest.approx(average_precision_score(y, s), abs=TOL)
    for metric, value in _reference_youden(y, s).items():
        assert getattr(result, metric).value == pytest.approx(value, abs=TOL), metric
    assert (result.n, result.n_positive, result.prevalence) == (80, int(y.sum()), y.mean())
    point = youden_operating_point(y, s)
    tn, fp, fn, tp = confusion_matrix(y, s >= point.threshold).ravel()
    assert (point.tp, point.fp, point.tn, point.fn) == (tp, fp, tn, fn)


def test_youden_threshold_not_geometric_mean():
    """ROC points (0.25, 0.7) and (0.5, 1.0): the geometric mean prefers the first, Youden's J the second."""
    y = np.array([1] * 7 + [0] + [1] * 3 + [0] * 3)
    s = np.array([0.9] * 8 + [0.5] * 4 + [0.1] * 2)
    point = youden_operating_point(y, s)
    assert point.threshold == 0.5
    assert (point.sensitivity, point.specificity) == (1.0, 0.5)


def test_regression_point_estimates_equal_sklearn_and_scipy():
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 100, 60)
    p = y + rng.normal(0, 15, 60)
    result = evaluate_regression(y, p, n_bootstrap=0)
    assert result.mae.value == pytest.approx(mean_absolute_error(y, p), abs=TOL)
    assert result.rmse.value == pytest.approx(math.sqrt(mean_squared_error(y, p)), abs=TOL)
    r = stats.pearsonr(y, p).statistic
    assert result.pearson_r.value == pytest.approx(r, abs=TOL)
    half_width = stats.norm.ppf(0.975) / math.sqrt(len(y) - 3)  # Fisher z interval by hand
    expected = (math.tanh(math.atanh(r) - half_width), math.tanh(math.atanh(r) + half_width))
    assert result.pearson_r_fisher == pytest.approx(expected, abs=1e-12)


def test_missing_labels_are_excluded_and_counted():
    y, s = _binary_data()
    y[[3, 10, 11]] = np.nan
    kept = ~np.isnan(y)
    result = evaluate_binary(y, s, n_bootstrap=0)
    assert (result.n, result.n_missing) == (77, 3)
    assert result.auroc.value == pytest.approx(roc_auc_score(y[kept], s[kept]), abs=TOL)
    values = np.where(np.isnan(y), np.nan, s * 100)
    regression = evaluate_regression(values, s * 90, n_bootstrap=0)
    assert (regression.n, regression.n_missing) == (77, 3)


def test_undefined_metrics_are_nan_with_a_reason():
    s = np.linspace(0, 1, 10)
    result = evaluate_binary(np.zeros(10), s, n_bootstrap=20)
    assert all(math.isnan(e.value) and e.reason == "no positive cases" for e in result.estimates().values())
    assert evaluate_binary(np.ones(10), s).auroc.reason == "no negative cases"
    assert evaluate_binary([np.nan, np.nan], [0.1, 0.2]).auroc.reason == "no labelled cases"
    constant = evaluate_regression(np.full(10, 20.0), s)
    assert math.isnan(constant.pearson_r.value) and constant.pearson_r.reason == "constant labels or predictions"
    assert not math.isnan(constant.mae.value)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "binary labels must be 0 or 1"),
        ([0, 1, 1], [0.1, 2.0, 0.3], "probabilities in \\[0, 1\\]"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN or infinite"),
        ([0, 1], [0.1, 0.2, 0.3], "2 labels but 3 predictions"),
    ],
)
def test_bad_binary_input_raises_a_typed_error(labels, scores, message):
    with pytest.raises(EvaluationInputError, match=message) as error:
        evaluate_binary(labels, scores, name="mid_lad_cto")
    assert isinstance(error.value, ValueError) and "mid_lad_cto" in str(error.value)


# --------------------------------------------------------------------------------------------------------------
# Weighted (resample) metrics and the patient-level bootstrap
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prevalence", "signal"),
    [(0.3, 0.35), (0.08, 0.35), (0.7, 0.35), (0.3, -0.5)],  # common, rare, mostly positive, anti-predictive
)
def test_weighted_metrics_equal_sklearn_on_replicated_cases(prevalence, signal):
    rng = np.random.default_rng(2)
    y = (rng.random(40) < prevalence).astype(float)
    s = np.round(np.clip(signal * y + 0.5 + rng.random(40) * 0.5 - 0.25, 0, 1), 1)  # few distinct scores: ties
    weights = np.random.default_rng(3).integers(0, 3, size=(60, 40))
    fast = binary_metrics_weighted(y, s, weights)
    compared = 0
    for row, w in enumerate(weights):
        yy, ss = np.repeat(y, w), np.repeat(s, w)
        if len(np.unique(yy)) < 2:
            assert all(math.isnan(values[row]) for values in fast.values())
            continue
        reference = {
            "auroc": roc_auc_score(yy, ss),
            "auprc": average_precision_score(yy, ss),
            **_reference_youden(yy, ss),
        }
        for metric, value in reference.items():
            assert fast[metric][row] == pytest.approx(value, abs=TOL, nan_ok=True), (row, metric)
        compared += 1
    assert compared > 30


def test_weighted_regression_equals_sklearn_and_scipy_on_replicated_cases():
    x = np.random.default_rng(4).uniform(0, 100, 40)
    p = x + np.random.default_rng(5).normal(0, 20, 40)
    weights = np.random.default_rng(3).integers(0, 3, size=(60, 40))
    fast = regression_metrics_weighted(x, p, weights)
    for row, w in enumerate(weights):
        xx, pp = np.repeat(x, w), np.repeat(p, w)
        assert fast["mae"][row] == pytest.approx(mean_absolute_error(xx, pp), abs=TOL)
        assert fast["rmse"][row] == pytest.approx(math.sqrt(mean_squared_error(xx, pp)), abs=TOL)
        assert fast["pearson_r"][row] == pytest.approx(stats.pearsonr(xx, pp).statistic, abs=TOL)
    constant = regression_metrics_weighted(np.array([5.0, 5.0, 7.0]), np.array([1.0, 2.0, 3.0]), [[1, 2, 0], [0, 1, 1]])
    assert math.isnan(constant["pearson_r"][0]) and constant["pearson_r"][1] == pytest.approx(1.0)


def test_patient_bootstrap_counts_draw_whole_patients():
    counts = patient_bootstrap_counts(7, n_bootstrap=50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    draws = np.random.default_rng(3).integers(0, 7, size=(50, 7))
    assert (counts == np.stack([np.bincount(d, minlength=7) for d in draws])).all()
    assert not (patient_bootstrap_counts(7, 50, seed=4) == counts).all()


def _patients(n_patients: int, seed: int) -> np.ndarray:
    """Patient id of each study: 1 to 3 studies per patient."""
    sizes = np.random.default_rng(seed).integers(1, 4, n_patients)
    return np.repeat([f"patient-{i}" for i in range(n_patients)], sizes)


def test_bootstrap_intervals_equal_naive_patient_resampling():
    """The vectorised bootstrap equals drawing patients, concatenating their studies and calling scikit-learn."""
    patients = _patients(25, seed=5)
    rng = np.random.default_rng(6)
    y = np.zeros(len(patients))
    y[np.isin(patients, ["patient-2", "patient-7", "patient-11"])] = 1  # rare: some resamples draw no positive
    s = np.round(np.clip(0.3 * y + rng.random(len(y)) * 0.7, 0, 1), 2)
    n_bootstrap, seed = 200, 11
    result = evaluate_binary(y, s, patients, n_bootstrap=n_bootstrap, seed=seed)

    codes, uniques = pd.factorize(pd.Series(patients))
    cases = [np.flatnonzero(codes == k) for k in range(len(uniques))]
    draws = np.random.default_rng(seed).integers(0, len(uniques), size=(n_bootstrap, len(uniques)))
    values: dict[str, list[float]] = {"auroc": [], "auprc": [], "sensitivity": [], "specificity": []}
    skipped = 0
    for draw in draws:
        index = np.concatenate([cases[k] for k in draw])
        yy, ss = y[index], s[index]
        if len(np.unique(yy)) < 2:
            skipped += 1
            continue
        point = _reference_youden(yy, ss)
        values["auroc"].append(roc_auc_score(yy, ss))
        values["auprc"].append(average_precision_score(yy, ss))
        values["sensitivity"].append(point["sensitivity"])
        values["specificity"].append(point["specificity"])
    assert skipped > 0
    for metric, resampled in values.items():
        estimate = getattr(result, metric)
        assert (estimate.n_skipped, estimate.n_resamples) == (skipped, n_bootstrap - skipped)
        assert [estimate.ci_low, estimate.ci_high] == pytest.approx(np.percentile(resampled, [2.5, 97.5]), abs=TOL)


def test_regression_bootstrap_equals_naive_patient_resampling():
    patients = _patients(20, seed=7)
    rng = np.random.default_rng(8)
    y = rng.uniform(0, 100, len(patients))
    p = y + rng.normal(0, 20, len(patients))
    result = evaluate_regression(y, p, patients, n_bootstrap=200, seed=1, confidence=0.9)
    codes, uniques = pd.factorize(pd.Series(patients))
    cases = [np.flatnonzero(codes == k) for k in range(len(uniques))]
    draws = np.random.default_rng(1).integers(0, len(uniques), size=(200, len(uniques)))
    maes, rs = [], []
    for draw in draws:
        index = np.concatenate([cases[k] for k in draw])
        maes.append(mean_absolute_error(y[index], p[index]))
        rs.append(stats.pearsonr(y[index], p[index]).statistic)
    assert [result.mae.ci_low, result.mae.ci_high] == pytest.approx(np.percentile(maes, [5, 95]), abs=TOL)
    assert [result.pearson_r.ci_low, result.pearson_r.ci_high] == pytest.approx(np.percentile(rs, [5, 95]), abs=TOL)
    assert result.pearson_r.ci_low < result.pearson_r.value < result.pearson_r.ci_high


def test_bootstrap_is_seeded():
    y, s = _binary_data(60, seed=9)
    patients = _patients(30, seed=1)[:60]
    a = evaluate_binary(y, s, patients, n_bootstrap=100, seed=5)
    assert a == evaluate_binary(y, s, patients, n_bootstrap=100, seed=5)
    assert a.auroc.ci_low != evaluate_binary(y, s, patients, n_bootstrap=100, seed=6).auroc.ci_low


# --------------------------------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------------------------------
def _placement_covariance(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """DeLong's covariance from its definition: explicit placement values over every (positive, negative) pair."""
    structural = []
    for s in scores:
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        structural.append((psi.mean(axis=1), psi.mean(axis=0)))  # V10 per positive, V01 per negative
    v10 = np.array([v for v, _ in structural])
    v01 = np.array([v for _, v in structural])
    return np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]


def test_delong_equals_the_placement_value_definition():
    y, a = _binary_data(50, seed=12)
    b = np.round(np.clip(a + np.random.default_rng(13).normal(0, 0.2, 50), 0, 1), 1)  # many ties
    aucs, covariance = delong_covariance(y, np.vstack([a, b]))
    assert aucs == pytest.approx([roc_auc_score(y, a), roc_auc_score(y, b)], abs=TOL)
    assert covariance == pytest.approx(_placement_covariance(y, np.vstack([a, b])), abs=1e-12)

    result = delong_test(y, a, b)
    expected_cov = _placement_covariance(y, np.vstack([a, b]))
    se = math.sqrt(expected_cov[0, 0] + expected_cov[1, 1] - 2 * expected_cov[0, 1])
    z = (roc_auc_score(y, a) - roc_auc_score(y, b)) / se
    assert result.z == pytest.approx(z, abs=TOL)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), abs=TOL)
    assert 0 < result.p_value < 1


def test_delong_identical_models_and_missing_labels():
    y, a = _binary_data(30, seed=14)
    y[0] = np.nan
    result = delong_test(y, a, a)
    assert (result.difference, result.z, result.p_value, result.n_missing) == (0.0, 0.0, 1.0, 1)
    with pytest.raises(EvaluationInputError, match="at least 2 positive"):
        delong_test([1, 0, 0], [0.9, 0.1, 0.2], [0.8, 0.3, 0.1])


# --------------------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------------------
def _reference_ranks(similarity: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """Sort each row by similarity, wrong candidates first among ties (pessimistic); rank of the first correct one."""
    ranks = []
    for sim, rel in zip(similarity, relevance):
        order = np.lexsort((rel, -sim))  # primary: similarity descending; ties: wrong (False) before correct
        hits = np.flatnonzero(rel[order])
        ranks.append(hits[0] + 1 if len(hits) else np.nan)
    return np.array(ranks, dtype=float)


def test_ranks_are_pessimistic_on_ties():
    similarity = np.array([[0.5, 0.5, 0.1], [0.9, 0.5, 0.5], [0.2, 0.2, 0.2]])
    relevance = np.array([[True, False, False], [False, False, True], [False, True, True]])
    assert best_match_ranks(similarity, relevance).tolist() == [2.0, 3.0, 2.0]


def test_retrieval_metrics_equal_brute_force():
    rng = np.random.default_rng(15)
    videos, texts = rng.normal(size=(120, 16)), rng.normal(size=(40, 16))
    report_of_video = rng.integers(0, 40, 120)  # 120 videos share 40 report texts (duplicate reports)
    relevance = relevance_from_groups(report_of_video, np.arange(40))
    similarity = np.round(videos @ texts.T, 1)  # rounding creates ties
    result = retrieval_metrics(similarity, relevance, recall_at=(1, 5, 10))
    ranks = _reference_ranks(similarity, relevance)
    assert result.recall_at == {k: pytest.approx((ranks <= k).mean()) for k in (1, 5, 10)}
    assert (result.mean_rank, result.median_rank) == (pytest.approx(ranks.mean()), np.median(ranks))
    back = retrieval_metrics(similarity.T, relevance.T, recall_at=(1, 5))
    ranks_back = _reference_ranks(similarity.T, relevance.T)
    unmatched = int(np.isnan(ranks_back).sum())  # texts no video pointed to
    assert back.n_queries_without_match == unmatched > 0 and back.n_queries == 40 - unmatched
    assert back.mean_rank == pytest.approx(np.nanmean(ranks_back))


def test_cross_modal_retrieval_and_alignment():
    rng = np.random.default_rng(16)
    videos = rng.normal(size=(30, 8))
    texts = videos + rng.normal(0, 0.3, size=(30, 8))
    result = cross_modal_retrieval(videos, texts, np.eye(30, dtype=bool), recall_at=(1, 5))
    cosines = [v @ t / np.linalg.norm(v) / np.linalg.norm(t) for v, t in zip(videos, texts)]
    assert result["alignment_score"] == pytest.approx(np.mean(cosines), abs=TOL)
    assert result["video_to_text"].recall_at[1] > 0.8 and result["text_to_video"].n_queries == 30
    assert alignment_score(np.eye(2), np.eye(2, dtype=bool)) == 1.0
    studies, study_embeddings = mean_embeddings_by_group(np.array([[2.0, 0], [0, 3], [1, 0]]), ["b", "a", "b"])
    assert studies.tolist() == ["b", "a"] and study_embeddings.tolist() == [[1.0, 0.0], [0.0, 1.0]]


# --------------------------------------------------------------------------------------------------------------
# Segment tables
# --------------------------------------------------------------------------------------------------------------
def _study_tables(n_studies: int = 48, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Labels and predictions of every segment column (+ two study-level tasks), 2 studies per patient."""
    rng = np.random.default_rng(seed)
    index = pd.Index([f"study-{i}" for i in range(n_studies)], name="study_id")
    patients = pd.Series([f"pid-{i // 2}" for i in range(n_studies)], index=index)
    labels, predictions = {}, {}
    for column in LABEL_COLUMNS:
        if column.endswith("_stenosis"):
            y = np.clip(rng.normal(30, 30, n_studies), 0, 100)
            labels[column], predictions[column] = y, np.clip(y + rng.normal(0, 15, n_studies), 0, 100)
        else:
            y = (rng.random(n_studies) < 0.25).astype(float)
            labels[column], predictions[column] = y, np.clip(0.3 * y + 0.7 * rng.random(n_studies), 0, 1)
    labels["lvef"], predictions["lvef"] = rng.uniform(20, 70, n_studies), rng.uniform(20, 70, n_studies)
    labels["mace_composite"] = (rng.random(n_studies) < 0.3).astype(float)
    predictions["mace_composite"] = rng.random(n_studies)
    labels, predictions = pd.DataFrame(labels, index=index), pd.DataFrame(predictions, index=index)
    labels.loc["study-3", "mid_lad_stenosis_binary"] = np.nan
    labels["lvp_thrombus"] = 0.0  # no positive: undefined, must not break the table
    return labels, predictions, patients


def test_micro_averages_pool_study_segment_pairs():
    labels, predictions, patients = _study_tables()
    results = evaluate_segments(labels, predictions, patients, n_bootstrap=0)
    rca = [label_column(s.key, "cto") for s in SEGMENTS if s.territory == "RCA"]
    y = labels[rca].to_numpy().ravel()
    s = predictions[rca].to_numpy().ravel()
    assert results["RCA", "cto"].auroc.value == pytest.approx(roc_auc_score(y, s), abs=TOL)
    assert results["RCA", "cto"].n == len(rca) * len(labels)
    binary = [label_column(s.key, "stenosis_binary") for s in SEGMENTS]
    assert results["Global", "stenosis_binary"].n_missing == 1
    assert results["Global", "stenosis_binary"].n == len(binary) * len(labels) - 1
    mid_lad = results["mid_lad", "stenosis_binary"]
    kept = labels["mid_lad_stenosis_binary"].notna()
    expected = roc_auc_score(
        labels.loc[kept, "mid_lad_stenosis_binary"], predictions.loc[kept, "mid_lad_stenosis_binary"]
    )
    assert (mid_lad.n_missing, mid_lad.auroc.value) == (1, pytest.approx(expected, abs=TOL))
    assert len([key for key in results if key[1] == "cto"]) == len(SEGMENTS) + 3


def test_write_tables_paper_layout(tmp_path):
    labels, predictions, patients = _study_tables()
    written = write_tables(labels, predictions, patients, tmp_path, n_bootstrap=40, seed=2)
    expected = {
        f"{name}.{ext}"
        for name in (
            "extended_table_9_stenosis",
            "extended_table_10_calcification",
            "extended_table_11_thrombus",
            "extended_table_12_cto",
            "table_2_territories",
            "study_level_tasks",
        )
        for ext in ("csv", "md")
    }
    expected |= {f"curves_{task}.png" for task, kind in SEGMENT_TASKS.items() if kind == "binary"}
    assert set(written) == expected | {"curves_mace_composite.png"}

    table9 = (tmp_path / "extended_table_9_stenosis.md").read_text()
    assert (
        "| Segment | n ≥70% (%) | MAE (95% CI) | r (95% CI) | AUROC (95% CI) | AUPRC (95% CI) | Sens (95% CI) "
        "| Spec (95% CI) | Youden threshold |" in table9
    )
    mid_lad = evaluate_binary(
        labels["mid_lad_stenosis_binary"], predictions["mid_lad_stenosis_binary"], patients, n_bootstrap=40, seed=2
    )
    row = next(line for line in table9.splitlines() if line.startswith("| Mid LAD |"))
    assert f"{mid_lad.n_positive}/47 (" in row and mid_lad.auroc.cell(3) in row
    assert re.search(r"\| 0\.\d{3} \(0\.\d{3}-[01]\.\d{3}\) \|", row)

    csv = pd.read_csv(tmp_path / "extended_table_9_stenosis.csv", keep_default_na=False, na_values=[""])
    auroc = csv[(csv.scope == "mid_lad") & (csv.task == "stenosis_binary") & (csv.metric == "auroc")].iloc[0]
    assert (auroc.value, auroc.ci_low, auroc.ci_high) == pytest.approx(
        (mid_lad.auroc.value, mid_lad.auroc.ci_low, mid_lad.auroc.ci_high), abs=TOL
    )
    assert set(csv.columns) >= {"value", "ci_low", "ci_high", "n_skipped", "reason"}

    thrombus = pd.read_csv(tmp_path / "extended_table_11_thrombus.csv", keep_default_na=False, na_values=[""])
    lvp = thrombus[(thrombus.scope == "lvp") & (thrombus.metric == "auroc")].iloc[0]
    assert math.isnan(lvp.value) and lvp.reason == "no positive cases"
    assert (
        "| Left ventricular posterior branch (LVP) | 0/48 (0.0%) | N/A |"
        in (tmp_path / "extended_table_11_thrombus.md").read_text()
    )

    territories = (tmp_path / "table_2_territories.md").read_text()
    assert "| Task | Metric | Global (All) | LCA | RCA |" in territories
    study = pd.read_csv(tmp_path / "study_level_tasks.csv")
    assert set(study.task) == {"lvef", "mace_composite"}
    assert not any("pid-" in path.read_text() for path in tmp_path.glob("*.*") if path.suffix in (".csv", ".md"))

    from matplotlib.image import imread

    image = imread(tmp_path / "curves_cto.png")
    assert image.ndim == 3 and image.shape[0] > 100


def test_write_tables_rejects_unmatched_rows(tmp_path):
    labels, predictions, patients = _study_tables(12)
    with pytest.raises(EvaluationInputError, match="predictions: 1 labelled studies have no row"):
        write_tables(labels, predictions.drop(index="study-5"), patients, tmp_path, n_bootstrap=0)
    with pytest.raises(EvaluationInputError, match="lack the labelled columns \\['prox_rca_cto'\\]"):
        write_tables(labels, predictions.drop(columns="prox_rca_cto"), patients, tmp_path, n_bootstrap=0)
    with pytest.raises(EvaluationInputError, match="no segment"):
        write_tables(labels[["lvef"]].rename(columns={"lvef": "other"}), predictions, patients, tmp_path)


# --------------------------------------------------------------------------------------------------------------
# The `evaluate` metric script, loaded offline by path
# --------------------------------------------------------------------------------------------------------------
def test_evaluate_metric_loads_offline_and_matches(monkeypatch):
    for variable in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(variable, "1")  # read when evaluate is first imported; a local path needs no Hub anyway
    import evaluate

    patients = _patients(15, seed=2).tolist()
    y, s = _binary_data(len(patients), seed=17)
    y[1] = np.nan
    values = np.random.default_rng(18).uniform(0, 100, len(patients))
    metric = evaluate.load(metric_path("segments"))
    cases = {"binary": (y, s, evaluate_binary), "regression": (values, values * 0.8 + 5, evaluate_regression)}
    for task_type, (labels, predictions, plain) in cases.items():
        out = metric.compute(
            predictions=predictions.tolist(),
            references=labels.tolist(),
            patient_ids=patients,
            task_type=task_type,
            n_bootstrap=50,
            seed=3,
        )
        reference = plain(labels, predictions, patients, n_bootstrap=50, seed=3).as_dict()
        assert set(out) == set(reference)
        for key, value in reference.items():
            assert out[key] == pytest.approx(value, abs=TOL, nan_ok=True), (task_type, key)
        assert out["n_missing"] == (1 if task_type == "binary" else 0)
    with pytest.raises(ValueError, match="task_type must be"):
        metric.compute(predictions=[0.1, 0.9], references=[0, 1], task_type="ordinal")


def test_metric_path_names_what_exists():
    assert metric_path("segments").endswith("deepcoro_segments.py")
    with pytest.raises(ValueError, match="available: \\['segments'\\]"):
        metric_path("retrieval")
