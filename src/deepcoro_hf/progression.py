"""Disease change in the embedding space: distance between consecutive studies of a patient (Extended Figure 5).

The paper embeds every study, takes each patient's consecutive pairs of studies (ordered by date), measures their
distance as 1 - cosine similarity, and groups the pairs by how stenosis changed between the two studies (stable /
progressed / improved, by `vocabulary.classify_progression`). If the embedding reflects disease, progressed and
improved pairs lie further apart than stable ones; two-sample t-tests compare each with the stable pairs.

Only numpy, pandas, scipy and (for the plot) matplotlib are imported.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .vocabulary import PROGRESSION_GROUPS, SEGMENTS, classify_progression, label_column

logger = logging.getLogger(__name__)

COMPARISONS: tuple[tuple[str, str], ...] = (("progressed", "stable"), ("improved", "stable"))
"""(group, reference) pairs tested, as in the paper's figure."""


class ProgressionInputError(ValueError):
    """Studies or embeddings that cannot be paired (the message names the column and the problem)."""


@dataclass(frozen=True)
class ProgressionAnalysis:
    """Everything behind Extended Figure 5."""

    pairs: pd.DataFrame
    """One row per consecutive pair: previous_study, current_study, days_apart, distance, group."""
    summary: pd.DataFrame
    """Per group (stable, progressed, improved): n, mean, sd, ci_low, ci_high of the distance."""
    tests: pd.DataFrame
    """Per comparison: group, reference, n_group, n_reference, mean_difference, t_statistic, p_value, reason."""


def embedding_distances(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """1 - cosine similarity of each row of `previous` with the same row of `current`."""
    previous, current = np.asarray(previous, dtype="float64"), np.asarray(current, dtype="float64")
    norms = np.linalg.norm(previous, axis=1) * np.linalg.norm(current, axis=1)
    if (norms == 0).any():
        raise ProgressionInputError("embeddings contain all-zero vectors, whose cosine similarity is undefined")
    return 1.0 - np.einsum("ij,ij->i", previous, current) / norms


def _stenosis_columns(studies: pd.DataFrame) -> dict[str, str]:
    columns = {s.key: label_column(s.key, "stenosis") for s in SEGMENTS if label_column(s.key, "stenosis") in studies}
    if not columns:
        raise ProgressionInputError("studies need `{segment}_stenosis` columns (e.g. 'prox_rca_stenosis'), found none")
    return columns


def consecutive_study_pairs(embeddings: np.ndarray, studies: pd.DataFrame) -> pd.DataFrame:
    """Consecutive study pairs of each patient with their embedding distance and change group.

    `studies` has one row per row of `embeddings`, is indexed by study_id, and holds `patient_id`, `study_date`
    (datetimes, or ISO 8601 strings such as DICOM's YYYYMMDD) and the `{segment}_stenosis` labels (%; NaN = not
    graded, that segment is not compared). Studies of a patient are ordered by date; studies on the same date keep
    their input order. Patient ids are not copied to the output.
    """
    embeddings = np.asarray(embeddings, dtype="float64")
    if embeddings.ndim != 2 or len(embeddings) != len(studies):
        raise ProgressionInputError(
            f"embeddings {embeddings.shape} must be 2-D with one row per study ({len(studies)})"
        )
    for column in ("patient_id", "study_date"):
        if column not in studies.columns:
            raise ProgressionInputError(f"studies lack the column {column!r}")
        if studies[column].isna().any():
            raise ProgressionInputError(f"studies: {int(studies[column].isna().sum())} rows have no {column}")
    try:  # ISO 8601 only: DICOM's YYYYMMDD is one, and ambiguous forms like 01/02/2020 are refused
        dates = pd.to_datetime(studies["study_date"], format="ISO8601")
    except (TypeError, ValueError) as err:
        detail = str(err).splitlines()[0]
        raise ProgressionInputError(
            f"studies: study_date must be dates or ISO 8601 / YYYYMMDD strings ({detail})"
        ) from None
    stenosis = _stenosis_columns(studies)
    patients = pd.factorize(studies["patient_id"])[0]
    order = np.lexsort((np.arange(len(studies)), dates.to_numpy(), patients))
    same_patient = patients[order][1:] == patients[order][:-1]
    previous, current = order[:-1][same_patient], order[1:][same_patient]
    same_day = int((dates.to_numpy()[previous] == dates.to_numpy()[current]).sum())
    if same_day:
        logger.warning("%d consecutive pairs are on the same date; ordered as given", same_day)
    single = int((np.bincount(patients) == 1).sum())
    if single:
        logger.info("%d patients have a single study and give no pair", single)
    grades = studies[list(stenosis.values())].to_numpy(dtype="float64", na_value=np.nan)
    keys = list(stenosis)
    groups = [
        classify_progression(dict(zip(keys, grades[before])), dict(zip(keys, grades[after])))
        for before, after in zip(previous, current)
    ]
    return pd.DataFrame(
        {
            "previous_study": studies.index.to_numpy()[previous],
            "current_study": studies.index.to_numpy()[current],
            "days_apart": (dates.to_numpy()[current] - dates.to_numpy()[previous]) / np.timedelta64(1, "D"),
            "distance": embedding_distances(embeddings[previous], embeddings[current]),
            "group": pd.Categorical(groups, categories=PROGRESSION_GROUPS),
        }
    )


def summarize_distances(pairs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """n, mean, SD and the t-interval of the mean distance per group (NaN where a group has too few pairs)."""
    rows = {}
    for group in PROGRESSION_GROUPS:
        distances = pairs.loc[pairs["group"] == group, "distance"].to_numpy(dtype="float64")
        n = len(distances)
        mean = float(distances.mean()) if n else math.nan
        sd = float(distances.std(ddof=1)) if n > 1 else math.nan
        low, high = (math.nan, math.nan)
        if n > 1:
            low, high = (
                stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n)) if sd > 0 else (mean, mean)
            )
        rows[group] = {"n": n, "mean": mean, "sd": sd, "ci_low": float(low), "ci_high": float(high)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("group")


def compare_with_stable(pairs: pd.DataFrame) -> pd.DataFrame:
    """Two-sample (Student's) t-tests of the distances, progressed vs stable and improved vs stable, as the paper."""
    rows = []
    for group, reference in COMPARISONS:
        a = pairs.loc[pairs["group"] == group, "distance"].to_numpy(dtype="float64")
        b = pairs.loc[pairs["group"] == reference, "distance"].to_numpy(dtype="float64")
        row = {"group": group, "reference": reference, "n_group": len(a), "n_reference": len(b)}
        if len(a) < 2 or len(b) < 2:
            row |= {
                "mean_difference": math.nan,
                "t_statistic": math.nan,
                "p_value": math.nan,
                "reason": "fewer than 2 pairs in a group",
            }
        else:
            result = stats.ttest_ind(a, b)
            row |= {
                "mean_difference": float(a.mean() - b.mean()),
                "t_statistic": float(result.statistic),
                "p_value": float(result.pvalue),
                "reason": "",
            }
        rows.append(row)
    return pd.DataFrame(rows)


def analyze_progression(embeddings: np.ndarray, studies: pd.DataFrame, confidence: float = 0.95) -> ProgressionAnalysis:
    """Pairs, per-group summary and t-tests of Extended Figure 5 (see `consecutive_study_pairs` for the inputs)."""
    pairs = consecutive_study_pairs(embeddings, studies)
    if pairs.empty:
        raise ProgressionInputError("no patient has two studies: nothing to compare")
    return ProgressionAnalysis(pairs, summarize_distances(pairs, confidence), compare_with_stable(pairs))


def plot_progression(analysis: ProgressionAnalysis, path: str | Path) -> Path:
    """Bar plot of the mean distance per group with SD error bars and the t-test p-values (PNG).

    Uses matplotlib's Agg canvas directly (no pyplot), so nothing global changes and no display is needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = analysis.summary
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    positions = np.arange(len(summary))
    axis.bar(
        positions,
        summary["mean"].fillna(0),
        yerr=summary["sd"].fillna(0),
        capsize=6,
        color=["#7a9cc6", "#d1605e", "#6cae75"][: len(summary)],
    )
    axis.set_xticks(positions, [f"{group}\n(n = {n})" for group, n in zip(summary.index, summary["n"])])
    axis.set_ylabel("Embedding distance (1 - cosine similarity)")
    top = float(np.nanmax((summary["mean"] + summary["sd"].fillna(0)).to_numpy())) if summary["n"].any() else 1.0
    for step, test in enumerate(analysis.tests.itertuples()):
        left, right = sorted((list(summary.index).index(test.reference), list(summary.index).index(test.group)))
        height = top * (1.08 + 0.1 * step)
        axis.plot(
            [left, left, right, right], [height * 0.98, height, height, height * 0.98], color="black", linewidth=1
        )
        label = "n/a" if math.isnan(test.p_value) else f"p = {test.p_value:.2g}"
        axis.text((left + right) / 2, height, label, ha="center", va="bottom", fontsize="small")
    axis.set_ylim(0, top * (1.15 + 0.1 * len(analysis.tests)))
    axis.set_title("Distance between consecutive studies")
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path
