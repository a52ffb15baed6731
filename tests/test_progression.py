"""Embedding distance between consecutive studies: pairing, grouping, summary, t-tests and the plot."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepcoro_hf.progression import (
    ProgressionInputError,
    analyze_progression,
    consecutive_study_pairs,
    embedding_distances,
    plot_progression,
)
from deepcoro_hf.vocabulary import PROGRESSION_GROUPS, classify_progression

SEGMENT_COLUMNS = {"prox_rca": "prox_rca_stenosis", "mid_lad": "mid_lad_stenosis", "om1": "om1_stenosis"}


def _serial_studies(n_patients: int = 40, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Shuffled studies of patients with 1-4 studies each, random dates, grades and embeddings."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_patients)
    n = int(sizes.sum())
    studies = pd.DataFrame(
        {
            "patient_id": np.repeat([f"pid-{i}" for i in range(n_patients)], sizes),
            "study_date": pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.permutation(n) * 7, unit="D"),
            **{column: rng.choice([0.0, 30.0, 50.0, 70.0, 90.0, np.nan], n) for column in SEGMENT_COLUMNS.values()},
        },
        index=pd.Index([f"study-{i}" for i in range(n)], name="study_id"),
    )
    order = rng.permutation(n)
    return rng.normal(size=(n, 12))[order], studies.iloc[order]


def _expected_pairs(embeddings: np.ndarray, studies: pd.DataFrame) -> pd.DataFrame:
    """Pairs built independently: sort each patient's studies by date with pandas, cosine by hand."""
    rows = []
    positions = {study: i for i, study in enumerate(studies.index)}
    for _, visits in studies.sort_values("study_date").groupby("patient_id", sort=False):
        for before, after in zip(visits.index[:-1], visits.index[1:]):
            u, v = embeddings[positions[before]], embeddings[positions[after]]
            grades = [{k: visits.loc[s, c] for k, c in SEGMENT_COLUMNS.items()} for s in (before, after)]
            rows.append(
                {
                    "previous_study": before,
                    "current_study": after,
                    "distance": 1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v)),
                    "group": classify_progression(*grades),
                }
            )
    return pd.DataFrame(rows).sort_values("current_study").reset_index(drop=True)


def test_pairs_distances_and_groups_equal_manual_computation():
    embeddings, studies = _serial_studies()
    pairs = consecutive_study_pairs(embeddings, studies)
    expected = _expected_pairs(embeddings, studies)
    got = pairs.sort_values("current_study").reset_index(drop=True)
    assert got["previous_study"].tolist() == expected["previous_study"].tolist()
    assert got["current_study"].tolist() == expected["current_study"].tolist()
    assert got["distance"].to_numpy() == pytest.approx(expected["distance"].to_numpy(), abs=1e-12)
    assert got["group"].astype(str).tolist() == expected["group"].tolist()
    assert (got["days_apart"] > 0).all() and "patient_id" not in pairs.columns
    assert set(pairs["group"].astype(str)) == set(PROGRESSION_GROUPS)


def test_embedding_distances_equal_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    expected = [1 - x @ y / np.sqrt((x @ x) * (y @ y)) for x, y in zip(a, b)]
    assert embedding_distances(a, b) == pytest.approx(expected, abs=1e-12)
    assert embedding_distances(a, 3 * a) == pytest.approx(np.zeros(5), abs=1e-12)
    with pytest.raises(ProgressionInputError, match="all-zero"):
        embedding_distances(np.zeros((1, 4)), a[:1])


def test_summary_and_t_tests_equal_scipy():
    embeddings, studies = _serial_studies(80, seed=2)
    analysis = analyze_progression(embeddings, studies)
    grouped = {g: analysis.pairs.loc[analysis.pairs["group"] == g, "distance"].to_numpy() for g in PROGRESSION_GROUPS}
    for group, distances in grouped.items():
        row = analysis.summary.loc[group]
        assert row["n"] == len(distances) and row["mean"] == pytest.approx(distances.mean(), abs=1e-12)
        assert row["sd"] == pytest.approx(distances.std(ddof=1), abs=1e-12)
        interval = stats.t.interval(0.95, len(distances) - 1, loc=distances.mean(), scale=stats.sem(distances))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(interval, abs=1e-12)
    for test in analysis.tests.itertuples():
        expected = stats.ttest_ind(grouped[test.group], grouped[test.reference])
        assert (test.t_statistic, test.p_value) == pytest.approx((expected.statistic, expected.pvalue), abs=1e-12)
        assert (test.n_group, test.n_reference) == (len(grouped[test.group]), len(grouped[test.reference]))
    assert analysis.tests[["group", "reference"]].values.tolist() == [["progressed", "stable"], ["improved", "stable"]]


def test_small_groups_give_nan_with_a_reason():
    studies = pd.DataFrame(
        {
            "patient_id": ["a", "a", "a"],
            "study_date": ["2020-01-01", "2020-06-01", "2021-01-01"],
            "prox_rca_stenosis": [10.0, 80.0, 85.0],
        },
        index=["s1", "s2", "s3"],
    )
    analysis = analyze_progression(np.array([[1.0, 0], [0, 1], [1, 1]]), studies)
    assert analysis.pairs["group"].astype(str).tolist() == ["progressed", "stable"]
    assert analysis.summary.loc["progressed", "n"] == 1 and math.isnan(analysis.summary.loc["progressed", "sd"])
    assert analysis.tests["reason"].tolist() == ["fewer than 2 pairs in a group"] * 2
    assert analysis.tests["p_value"].isna().all()


def test_same_day_studies_keep_input_order(caplog):
    studies = pd.DataFrame(
        {"patient_id": ["a", "a"], "study_date": ["2020-01-01", "2020-01-01"], "om1_stenosis": [0.0, 0.0]},
        index=["second-listed-first", "then-this"],
    )
    with caplog.at_level(logging.WARNING, logger="deepcoro_hf.progression"):
        pairs = consecutive_study_pairs(np.eye(2), studies)
    assert pairs[["previous_study", "current_study"]].values.tolist() == [["second-listed-first", "then-this"]]
    assert "same date" in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.drop(columns="study_date"), "lack the column 'study_date'"),
        (lambda s: s.assign(patient_id=None), "have no patient_id"),
        (lambda s: s.assign(study_date="2020-13-45"), "study_date must be dates"),
        (lambda s: s[["patient_id", "study_date"]], "stenosis` columns"),
        (lambda s: s.iloc[:-1], "one row per study"),
    ],
)
def test_bad_input_raises_a_typed_error(change, message):
    embeddings, studies = _serial_studies(5)
    with pytest.raises(ProgressionInputError, match=message) as error:
        consecutive_study_pairs(embeddings, change(studies))
    assert isinstance(error.value, ValueError)


def test_plot_is_written(tmp_path):
    embeddings, studies = _serial_studies(30, seed=3)
    path = plot_progression(analyze_progression(embeddings, studies), tmp_path / "progression.png")
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and image.shape[1] > 300
