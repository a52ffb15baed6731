"""Evaluation of DeepCORO-CLIP: the paper's metrics, patient-level confidence intervals, tables and curves.

What the paper reports (Methods, "Statistical analysis") and where it is computed here:
- binary tasks: AUROC, AUPRC (average precision) and sensitivity / specificity / PPV / NPV at the Youden threshold
  (`evaluate_binary`). The original code picked the threshold by the geometric mean of sensitivity and specificity;
  the paper states Youden's J, which is what we use;
- regression tasks (stenosis %, LVEF): MAE, RMSE and Pearson r (`evaluate_regression`);
- 95 % confidence intervals from 1,000 bootstrap resamples of *patients* (percentile method);
- per segment and micro-averaged over all 18 segments (Global) and each territory (LCA, RCA) (`evaluate_segments`);
- AUROCs of two models compared with DeLong's test (`delong_test`);
- cross-modal retrieval: Recall@K, mean / median rank and the alignment score (`retrieval_metrics`);
- the paper's Table 2 and Extended Tables 9-12 as CSV + Markdown, with ROC / precision-recall curves (`write_tables`).

Point estimates come from scikit-learn and scipy. Bootstrap resamples are computed differently, for speed: a resample
is a vector of case weights (how many times each case's patient was drawn), and the metrics are weighted versions
vectorised over many resamples at once. On integer weights they equal scikit-learn on the replicated data (tested).

Only numpy, pandas, scipy, scikit-learn and (for the curves) matplotlib are imported, so evaluation stays light.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse, stats
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from .vocabulary import (
    LABEL_COLUMNS,
    LVEF_TASKS,
    MACE_TASKS,
    SEGMENT_BY_KEY,
    SEGMENT_TASKS,
    SEGMENTS,
    TASK_DISPLAY_NAMES,
    TERRITORIES,
    TaskType,
    label_column,
)

logger = logging.getLogger(__name__)

N_BOOTSTRAP = 1000
"""Bootstrap resamples behind every confidence interval (paper: "1,000 bootstrap iterations")."""
CONFIDENCE = 0.95
RECALL_AT: tuple[int, ...] = (1, 5, 10, 25, 50)
"""Retrieval cut-offs of the paper's Extended Table 8."""
MICRO_SCOPES: tuple[str, ...] = ("Global", *TERRITORIES)
"""Micro-average rows: all 18 segments pooled, then each territory."""
STUDY_TASKS: dict[str, TaskType] = {**MACE_TASKS, **LVEF_TASKS}

BINARY_METRICS: tuple[str, ...] = ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "threshold")
REGRESSION_METRICS: tuple[str, ...] = ("mae", "rmse", "pearson_r")

# Cells of at most this many resamples x cases are computed at once: bounds memory for pooled (micro) columns.
_CHUNK_CELLS = 500_000


class EvaluationInputError(ValueError):
    """Labels, predictions or patient ids that cannot be evaluated (the message names the column and the problem)."""


# --------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap percentile interval."""

    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    n_resamples: int = 0
    """Resamples in which the metric was defined; the interval is taken over these."""
    n_skipped: int = 0
    """Resamples skipped because the metric was undefined there (e.g. no positive case drawn)."""
    reason: str = ""
    """Why `value` (or the interval) is NaN; empty when both are defined."""

    def cell(self, decimals: int = 3) -> str:
        """Paper-style cell, e.g. "0.903 (0.893-0.913)"; "N/A" when undefined."""
        if math.isnan(self.value):
            return "N/A"
        if math.isnan(self.ci_low):
            return f"{self.value:.{decimals}f}"
        return f"{self.value:.{decimals}f} ({self.ci_low:.{decimals}f}-{self.ci_high:.{decimals}f})"


@dataclass(frozen=True)
class OperatingPoint:
    """Confusion counts and rates at one threshold (a case is called positive when score >= threshold)."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        return _ratio(self.tn, self.tn + self.fn)


@dataclass(frozen=True)
class BinaryResult:
    """Discrimination and Youden operating point of one binary task (one segment column or a micro-average)."""

    n: int
    """Labelled cases (studies, or (study, segment) pairs for a micro-average)."""
    n_positive: int
    n_missing: int
    """Cases whose label was missing (NaN) and were excluded."""
    n_patients: int
    n_bootstrap: int
    auroc: Estimate
    auprc: Estimate
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    threshold: Estimate
    """Youden threshold; its interval shows how much the chosen threshold moves between resamples."""
    confidence: float = CONFIDENCE
    task_type: Literal["binary"] = field(default="binary", init=False)

    @property
    def prevalence(self) -> float:
        return _ratio(self.n_positive, self.n)

    def estimates(self) -> dict[str, Estimate]:
        return {name: getattr(self, name) for name in BINARY_METRICS}

    def as_dict(self) -> dict[str, float | int | str]:
        """Flat numbers (value, ci_low, ci_high, n_skipped, reason per metric), as the `evaluate` metric returns."""
        counts = {
            "n": self.n,
            "n_positive": self.n_positive,
            "n_missing": self.n_missing,
            "prevalence": self.prevalence,
        }
        return {**counts, "n_patients": self.n_patients, "n_bootstrap": self.n_bootstrap, **_flatten(self.estimates())}


@dataclass(frozen=True)
class RegressionResult:
    """Agreement of a continuous prediction (stenosis %, LVEF %) with its reference."""

    n: int
    n_missing: int
    n_patients: int
    n_bootstrap: int
    mae: Estimate
    rmse: Estimate
    pearson_r: Estimate
    pearson_r_fisher: tuple[float, float]
    """Analytic Fisher-z interval of r (scipy). It treats cases as independent, so it is narrower than the patient
    bootstrap when a patient contributes several studies."""
    confidence: float = CONFIDENCE
    task_type: Literal["regression"] = field(default="regression", init=False)

    def estimates(self) -> dict[str, Estimate]:
        return {name: getattr(self, name) for name in REGRESSION_METRICS}

    def as_dict(self) -> dict[str, float | int | str]:
        """Flat numbers, as the `evaluate` metric returns."""
        counts = {
            "n": self.n,
            "n_missing": self.n_missing,
            "n_patients": self.n_patients,
            "n_bootstrap": self.n_bootstrap,
        }
        fisher = {
            "pearson_r_fisher_ci_low": self.pearson_r_fisher[0],
            "pearson_r_fisher_ci_high": self.pearson_r_fisher[1],
        }
        return {**counts, **_flatten(self.estimates()), **fisher}


TaskResult = BinaryResult | RegressionResult


def _flatten(estimates: Mapping[str, Estimate]) -> dict[str, float | int | str]:
    flat: dict[str, float | int | str] = {}
    for name, est in estimates.items():
        flat.update({name: est.value, f"{name}_ci_low": est.ci_low, f"{name}_ci_high": est.ci_high})
        flat.update({f"{name}_n_skipped": est.n_skipped, f"{name}_reason": est.reason})
    return flat


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


# --------------------------------------------------------------------------------------------------------------
# Input checks: missing labels are excluded and counted, anything else wrong is an error
# --------------------------------------------------------------------------------------------------------------
def _as_float_array(values: Sequence[float] | np.ndarray | pd.Series, what: str) -> np.ndarray:
    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype="float64", na_value=np.nan)
    try:
        array = np.asarray(values, dtype="float64")
    except (TypeError, ValueError) as err:
        raise EvaluationInputError(f"{what} must be numeric: {err}") from None
    if array.ndim != 1:
        raise EvaluationInputError(f"{what} must be one-dimensional, got shape {array.shape}")
    return array


def _labelled_cases(
    labels: Sequence[float] | np.ndarray | pd.Series,
    predictions: Sequence[float] | np.ndarray | pd.Series,
    patient_ids: Sequence | np.ndarray | pd.Series | None,
    task_type: TaskType,
    name: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(labels, predictions, patient codes, number of patients, number of missing labels) of the labelled cases.

    Patients are numbered 0.. in order of first appearance among the labelled cases; without patient ids every case is
    its own patient (a case-level bootstrap).
    """
    y = _as_float_array(labels, f"{name}: labels")
    p = _as_float_array(predictions, f"{name}: predictions")
    if len(p) != len(y):
        raise EvaluationInputError(f"{name}: {len(y)} labels but {len(p)} predictions")
    if patient_ids is not None and len(patient_ids) != len(y):
        raise EvaluationInputError(f"{name}: {len(y)} labels but {len(patient_ids)} patient ids")
    labelled = ~np.isnan(y)
    y, p = y[labelled], p[labelled]
    if not np.isfinite(p).all():
        raise EvaluationInputError(
            f"{name}: {int((~np.isfinite(p)).sum())} predictions are NaN or infinite for labelled cases"
        )
    if task_type == "binary":
        if not np.isin(y, (0.0, 1.0)).all():
            raise EvaluationInputError(
                f"{name}: binary labels must be 0 or 1 (or NaN for missing), got {np.unique(y)[:5]}"
            )
        if len(p) and (p.min() < 0.0 or p.max() > 1.0):
            raise EvaluationInputError(f"{name}: predictions must be probabilities in [0, 1] (apply the sigmoid first)")
    elif not np.isfinite(y).all():
        raise EvaluationInputError(f"{name}: regression labels must be finite (NaN marks a missing label)")
    if patient_ids is None:
        codes = np.arange(len(y))
    else:
        ids = pd.Series(np.asarray(patient_ids, dtype=object)[labelled])
        if ids.isna().any():
            raise EvaluationInputError(f"{name}: {int(ids.isna().sum())} labelled cases have no patient id")
        codes = pd.factorize(ids)[0]
    n_missing = int((~labelled).sum())
    return y, p, codes, int(codes.max()) + 1 if len(codes) else 0, n_missing


# --------------------------------------------------------------------------------------------------------------
# Point estimates (scikit-learn / scipy)
# --------------------------------------------------------------------------------------------------------------
def youden_operating_point(labels: np.ndarray, scores: np.ndarray) -> OperatingPoint:
    """Operating point maximising Youden's J = TPR - FPR over the ROC thresholds (the paper's rule).

    Candidates are the distinct scores (scikit-learn's `roc_curve` without dropping points); its extra "+inf"
    threshold, which calls no case positive, is not an operating point and is left out. Ties in J go to the highest
    threshold. Both classes must be present.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype="float64")
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    best = 1 + int(np.argmax(tpr[1:] - fpr[1:]))
    threshold = float(thresholds[best])
    tn, fp, fn, tp = confusion_matrix(labels, scores >= threshold, labels=[0, 1]).ravel()
    return OperatingPoint(threshold=threshold, tp=int(tp), fp=int(fp), tn=int(tn), fn=int(fn))


def _binary_point(y: np.ndarray, s: np.ndarray) -> tuple[dict[str, float], dict[str, str]]:
    """Point estimates of the binary metrics, and the reason of each one that is undefined (NaN)."""
    n_positive = int(y.sum())
    reason = "no labelled cases" if len(y) == 0 else "no positive cases" if n_positive == 0 else ""
    if not reason and n_positive == len(y):
        reason = "no negative cases"
    if reason:
        return dict.fromkeys(BINARY_METRICS, math.nan), dict.fromkeys(BINARY_METRICS, reason)
    point = youden_operating_point(y, s)
    values = {
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
        "sensitivity": point.sensitivity,
        "specificity": point.specificity,
        "ppv": point.ppv,
        "npv": point.npv,
        "threshold": point.threshold,
    }
    return values, {"npv": "no case called negative at the Youden threshold"} if math.isnan(point.npv) else {}


def _regression_point(
    y: np.ndarray, p: np.ndarray, confidence: float
) -> tuple[dict[str, float], dict[str, str], tuple[float, float]]:
    """Point estimates of MAE, RMSE and Pearson r (with its Fisher-z interval), NaN with a reason when undefined."""
    if len(y) == 0:
        reason = "no labelled cases"
        return (
            dict.fromkeys(REGRESSION_METRICS, math.nan),
            dict.fromkeys(REGRESSION_METRICS, reason),
            (math.nan, math.nan),
        )
    values = {
        "mae": float(mean_absolute_error(y, p)),
        "rmse": math.sqrt(mean_squared_error(y, p)),
        "pearson_r": math.nan,
    }
    reasons = {}
    fisher = (math.nan, math.nan)
    if len(y) < 3:
        reasons["pearson_r"] = "fewer than 3 cases"
    elif np.ptp(y) == 0 or np.ptp(p) == 0:
        reasons["pearson_r"] = "constant labels or predictions"
    else:
        result = stats.pearsonr(y, p)
        values["pearson_r"] = float(result.statistic)
        interval = result.confidence_interval(confidence_level=confidence)
        fisher = (float(interval.low), float(interval.high))
    return values, reasons, fisher


# --------------------------------------------------------------------------------------------------------------
# The same metrics on weighted cases, vectorised over resamples
# --------------------------------------------------------------------------------------------------------------
class _BinaryResampler:
    """Binary metrics of the same cases under many weightings at once (written by hand: scikit-learn has none).

    A weighting gives each *unit* (a patient in the bootstrap, a case otherwise) a weight that all its cases share.
    With integer weights a weighting equals scikit-learn on the cases repeated that many times. Per distinct score
    (descending) we need the positive and negative weight: a sparse (scores x units) count matrix turns unit weights
    into those in one product, and cumulative sums give every resample's ROC / precision-recall points.
    - AUROC is the Mann-Whitney statistic: each positive beats the negatives scored lower, ties count one half (the
      rank-sum form, from cumulative sums instead of ranks so that weights need no replication).
    - AUPRC is average precision: the sum over thresholds of (recall gain) x precision, as scikit-learn.
    - The Youden point is the first (highest) threshold maximising TPR - FPR among the scores present.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray, units: np.ndarray, n_units: int) -> None:
        positive = np.asarray(labels) == 1
        negated, group = np.unique(-np.asarray(scores, dtype="float64"), return_inverse=True)  # descending scores
        # Consecutive scores held only by negatives are pooled: no metric tells them apart and the Youden point never
        # falls among them (J only drops there), which shrinks the work to about twice the number of positive scores.
        holds_positive = np.zeros(len(negated), dtype=bool)
        holds_positive[group[positive]] = True
        starts = holds_positive | np.r_[True, holds_positive[:-1]]
        group = (np.cumsum(starts) - 1)[group]
        self.thresholds = -negated[starts]
        shape = (int(starts.sum()), n_units)  # scores x units: products come out contiguous along resamples
        self.positives = sparse.csr_matrix((np.ones(positive.sum()), (group[positive], units[positive])), shape=shape)
        self.negatives = sparse.csr_matrix(
            (np.ones((~positive).sum()), (group[~positive], units[~positive])), shape=shape
        )

    def __call__(self, unit_weights: np.ndarray) -> dict[str, np.ndarray]:
        weights = np.ascontiguousarray(np.asarray(unit_weights, dtype="float64").T)
        pos, neg = self.positives @ weights, self.negatives @ weights  # distinct scores (descending) x resamples
        tp, fp = np.cumsum(pos, axis=0), np.cumsum(neg, axis=0)
        n_pos, n_neg = tp[-1], fp[-1]
        defined = (n_pos > 0) & (n_neg > 0)
        columns = np.arange(pos.shape[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            # sum_g pos_g * (negatives below g + half the tied ones) = P*N - sum pos*fp + sum pos*neg / 2
            ties_and_above = np.einsum("ij,ij->j", pos, fp) - 0.5 * np.einsum("ij,ij->j", pos, neg)
            auroc = 1.0 - ties_and_above / (n_pos * n_neg)
            called = tp + fp  # zero only before the first score drawn, where pos is zero too
            auprc = np.einsum("ij,ij->j", pos, tp / np.where(called > 0, called, 1.0)) / n_pos
            youden = tp / n_pos - fp / n_neg
            best = np.argmax(youden, axis=0)
            # A score not drawn repeats the previous J, so the first maximum is drawn unless J peaks at 0 before any
            # score is drawn; those resamples search again among the drawn scores only.
            undrawn = called[best, columns] == 0
            if undrawn.any():
                drawn = pos[:, undrawn] + neg[:, undrawn] > 0
                best[undrawn] = np.argmax(np.where(drawn, youden[:, undrawn], -np.inf), axis=0)
            tp_best, fp_best = tp[best, columns], fp[best, columns]
            tn_best, fn_best = n_neg - fp_best, n_pos - tp_best
            metrics = {
                "auroc": auroc,
                "auprc": auprc,
                "sensitivity": tp_best / n_pos,
                "specificity": tn_best / n_neg,
                "ppv": tp_best / (tp_best + fp_best),
                "npv": np.where(tn_best + fn_best > 0, tn_best / (tn_best + fn_best), np.nan),
                "threshold": self.thresholds[best],
            }
        return {name: np.where(defined, values, np.nan) for name, values in metrics.items()}


class _RegressionResampler:
    """MAE, RMSE and Pearson r of the same cases under many unit weightings at once.

    Every metric is a ratio of weighted sums, so per-unit sums of a few case statistics (on values centred on their
    overall mean, which keeps r precise) and one matrix product give all resamples. r is NaN where the labels or the
    predictions drawn are constant.
    """

    def __init__(self, labels: np.ndarray, predictions: np.ndarray, units: np.ndarray, n_units: int) -> None:
        y, p = np.asarray(labels, dtype="float64"), np.asarray(predictions, dtype="float64")
        yc, pc, error = y - y.mean(), p - p.mean(), p - y
        per_case = np.column_stack([np.ones_like(y), np.abs(error), error**2, yc, pc, yc**2, pc**2, yc * pc])
        self.sums = np.zeros((n_units, per_case.shape[1]))
        np.add.at(self.sums, units, per_case)
        self.ranges = []  # per unit (min, max) of labels and of predictions: is a resample constant?
        for values in (y, p):
            low, high = np.full(n_units, np.inf), np.full(n_units, -np.inf)
            np.minimum.at(low, units, values)
            np.maximum.at(high, units, values)
            self.ranges.append((low, high))

    def __call__(self, unit_weights: np.ndarray) -> dict[str, np.ndarray]:
        w = np.asarray(unit_weights, dtype="float64")
        sums = w @ self.sums
        abs_error, squared_error, y, p, yy, pp, yp = (sums[:, 1:] / sums[:, :1]).T  # weighted means; column 0 = weight
        drawn = w > 0
        constant = np.zeros(len(w), dtype=bool)
        for low, high in self.ranges:
            constant |= np.where(drawn, low, np.inf).min(axis=1) == np.where(drawn, high, -np.inf).max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (yp - y * p) / np.sqrt((yy - y**2) * (pp - p**2))
        return {
            "mae": abs_error,
            "rmse": np.sqrt(squared_error),
            "pearson_r": np.where(constant, np.nan, np.clip(r, -1.0, 1.0)),
        }


def binary_metrics_weighted(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """AUROC, AUPRC and the Youden point for each row of `weights` (resamples x cases); NaN where undefined.

    With integer weights a row equals scikit-learn on the cases repeated that many times (see `_BinaryResampler`).
    """
    n = len(labels)
    return _BinaryResampler(labels, scores, np.arange(n), n)(np.atleast_2d(weights))


def regression_metrics_weighted(
    labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """MAE, RMSE and Pearson r for each row of `weights` (resamples x cases); r is NaN where a side is constant."""
    n = len(labels)
    return _RegressionResampler(labels, predictions, np.arange(n), n)(np.atleast_2d(weights))


# --------------------------------------------------------------------------------------------------------------
# Patient-level bootstrap
# --------------------------------------------------------------------------------------------------------------
def patient_bootstrap_counts(n_patients: int, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """How many times each patient is drawn in each resample (n_bootstrap x n_patients).

    Resampling patients with replacement keeps all the studies (and segments) of a patient together, which is what
    makes the intervals honest when a patient has several studies. Draws are `default_rng(seed).integers(0,
    n_patients, size=(n_bootstrap, n_patients))`, so the same seed and patients give the same resamples.
    """
    if n_bootstrap < 1 or n_patients < 1:
        raise EvaluationInputError(f"need n_bootstrap >= 1 and n_patients >= 1, got {n_bootstrap} and {n_patients}")
    draws = np.random.default_rng(seed).integers(0, n_patients, size=(n_bootstrap, n_patients))
    offsets = np.arange(n_bootstrap)[:, None] * n_patients
    return np.bincount((draws + offsets).ravel(), minlength=n_bootstrap * n_patients).reshape(n_bootstrap, n_patients)


def _bootstrap(
    resampler: Callable[[np.ndarray], dict[str, np.ndarray]], n_cases: int, n_patients: int, n_bootstrap: int, seed: int
) -> dict[str, np.ndarray]:
    """Values of every metric in every patient-level resample (NaN where undefined), a chunk of resamples at a time."""
    counts = patient_bootstrap_counts(n_patients, n_bootstrap, seed).astype("float64")
    chunk = max(1, _CHUNK_CELLS // max(n_cases, n_patients))
    chunks = [resampler(counts[start : start + chunk]) for start in range(0, n_bootstrap, chunk)]
    return {name: np.concatenate([part[name] for part in chunks]) for name in chunks[0]}


def _estimate(value: float, resampled: np.ndarray, confidence: float, reason: str = "") -> Estimate:
    """Point value with the percentile interval of the resamples where the metric was defined (others counted)."""
    defined = resampled[~np.isnan(resampled)]
    n_skipped = len(resampled) - len(defined)
    if math.isnan(value):
        return Estimate(math.nan, reason=reason or "undefined")
    if len(defined) == 0:
        return Estimate(
            value, n_skipped=n_skipped, reason=f"undefined in all {n_skipped} resamples" if n_skipped else ""
        )
    low, high = np.percentile(defined, [50 * (1 - confidence), 50 * (1 + confidence)])
    return Estimate(value, float(low), float(high), n_resamples=len(defined), n_skipped=n_skipped)


def _log_exclusions(name: str, n_missing: int, estimate: Estimate) -> None:
    """Say what was left out; the counts are in the result too."""
    if n_missing:
        logger.info("%s: %d cases with a missing label excluded", name, n_missing)
    if estimate.n_skipped:
        logger.info("%s: %d resamples skipped where the metric was undefined", name, estimate.n_skipped)
    if estimate.reason:
        logger.info("%s: %s", name, estimate.reason)


def _check_bootstrap_args(n_bootstrap: int, confidence: float) -> None:
    if n_bootstrap < 0:
        raise EvaluationInputError(f"n_bootstrap must be >= 0 (0 skips the intervals), got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise EvaluationInputError(f"confidence must be in (0, 1), got {confidence}")


# --------------------------------------------------------------------------------------------------------------
# One task: point estimates + intervals
# --------------------------------------------------------------------------------------------------------------
def evaluate_binary(
    labels: Sequence[float] | np.ndarray | pd.Series,
    scores: Sequence[float] | np.ndarray | pd.Series,
    patient_ids: Sequence | np.ndarray | pd.Series | None = None,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    name: str = "binary task",
) -> BinaryResult:
    """AUROC, AUPRC and the Youden operating point of one binary task, with patient-level bootstrap intervals.

    `labels` are 0/1 with NaN for missing (excluded and counted); `scores` are probabilities. The Youden threshold
    is chosen again in every resample, so the intervals of sensitivity etc. include the threshold's own variability.
    `n_bootstrap=0` gives point estimates only.
    """
    _check_bootstrap_args(n_bootstrap, confidence)
    y, s, codes, n_patients, n_missing = _labelled_cases(labels, scores, patient_ids, "binary", name)
    point, reasons = _binary_point(y, s)
    if math.isnan(point["auroc"]) or n_bootstrap == 0:
        resampled = {metric: np.empty(0) for metric in BINARY_METRICS}
    else:
        resampler = _BinaryResampler(y, s, codes, n_patients)
        resampled = _bootstrap(resampler, len(y), n_patients, n_bootstrap, seed)
    estimates = {m: _estimate(point[m], resampled[m], confidence, reasons.get(m, "")) for m in BINARY_METRICS}
    _log_exclusions(name, n_missing, estimates["auroc"])
    return BinaryResult(
        n=len(y),
        n_positive=int(y.sum()),
        n_missing=n_missing,
        n_patients=n_patients,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        **estimates,
    )


def evaluate_regression(
    labels: Sequence[float] | np.ndarray | pd.Series,
    predictions: Sequence[float] | np.ndarray | pd.Series,
    patient_ids: Sequence | np.ndarray | pd.Series | None = None,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    name: str = "regression task",
) -> RegressionResult:
    """MAE, RMSE and Pearson r of one continuous task, with patient-level bootstrap intervals.

    `labels` with NaN for missing (excluded and counted). The Fisher-z interval of r is offered alongside.
    """
    _check_bootstrap_args(n_bootstrap, confidence)
    y, p, codes, n_patients, n_missing = _labelled_cases(labels, predictions, patient_ids, "regression", name)
    point, reasons, fisher = _regression_point(y, p, confidence)
    if len(y) == 0 or n_bootstrap == 0:
        resampled = {metric: np.empty(0) for metric in REGRESSION_METRICS}
    else:
        resampler = _RegressionResampler(y, p, codes, n_patients)
        resampled = _bootstrap(resampler, len(y), n_patients, n_bootstrap, seed)
    estimates = {m: _estimate(point[m], resampled[m], confidence, reasons.get(m, "")) for m in REGRESSION_METRICS}
    _log_exclusions(name, n_missing, estimates["pearson_r"])
    return RegressionResult(
        n=len(y),
        n_missing=n_missing,
        n_patients=n_patients,
        n_bootstrap=n_bootstrap,
        pearson_r_fisher=fisher,
        confidence=confidence,
        **estimates,
    )


# --------------------------------------------------------------------------------------------------------------
# DeLong's test
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeLongResult:
    """Two correlated AUROCs on the same cases and the two-sided test of their difference."""

    auroc_a: float
    auroc_b: float
    difference: float
    standard_error: float
    z: float
    p_value: float
    n: int
    n_positive: int
    n_missing: int


def delong_covariance(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of k models (`scores`: k x cases) and DeLong's covariance matrix of them (k x k).

    Written by hand: neither scikit-learn nor scipy implements DeLong. This is the fast form (Sun & Xu, 2014): the
    placement values of the structural components come from midranks (`scipy.stats.rankdata`, method "average")
    instead of comparing every positive with every negative.
    """
    labels = np.asarray(labels)
    scores = np.atleast_2d(np.asarray(scores, dtype="float64"))
    positives, negatives = scores[:, labels == 1], scores[:, labels == 0]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        raise EvaluationInputError(f"DeLong's test needs at least 2 positive and 2 negative cases, got {m} and {n}")
    rank_all = stats.rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    rank_pos = stats.rankdata(positives, axis=1)
    rank_neg = stats.rankdata(negatives, axis=1)
    aucs = (rank_all[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (rank_all[:, :m] - rank_pos) / n  # per positive: share of negatives it outranks (ties half)
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m  # per negative: share of positives that outrank it
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def delong_test(
    labels: Sequence[float] | np.ndarray | pd.Series,
    scores_a: Sequence[float] | np.ndarray | pd.Series,
    scores_b: Sequence[float] | np.ndarray | pd.Series,
) -> DeLongResult:
    """DeLong's test (paper ref. 32) of AUROC(a) = AUROC(b) for two models scored on the same cases.

    Missing labels (NaN) are excluded and counted. When the difference has zero variance the z statistic is 0 for
    equal AUROCs (p = 1) and infinite otherwise (p = 0).
    """
    y, a, _, _, n_missing = _labelled_cases(labels, scores_a, None, "binary", "DeLong model a")
    _, b, _, _, _ = _labelled_cases(labels, scores_b, None, "binary", "DeLong model b")
    aucs, cov = delong_covariance(y, np.vstack([a, b]))
    difference = float(aucs[0] - aucs[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(variance, 0.0))
    if se > 0:
        z = difference / se
    else:
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return DeLongResult(
        auroc_a=float(aucs[0]),
        auroc_b=float(aucs[1]),
        difference=difference,
        standard_error=se,
        z=z,
        p_value=float(2 * stats.norm.sf(abs(z))),
        n=len(y),
        n_positive=int(y.sum()),
        n_missing=n_missing,
    )


# --------------------------------------------------------------------------------------------------------------
# Cross-modal retrieval
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrievalResult:
    """Recall@K and ranks of one retrieval direction (queries -> candidates)."""

    recall_at: dict[int, float]
    mean_rank: float
    median_rank: float
    n_queries: int
    """Queries scored (those with at least one correct candidate)."""
    n_candidates: int
    n_queries_without_match: int
    """Queries with no correct candidate: skipped, counted here."""

    def as_dict(self) -> dict[str, float | int]:
        recalls = {f"recall@{k}": value for k, value in self.recall_at.items()}
        counts = {"n_queries": self.n_queries, "n_candidates": self.n_candidates}
        return {
            **recalls,
            "mean_rank": self.mean_rank,
            "median_rank": self.median_rank,
            **counts,
            "n_queries_without_match": self.n_queries_without_match,
        }


def relevance_from_groups(query_groups: Sequence | np.ndarray, candidate_groups: Sequence | np.ndarray) -> np.ndarray:
    """Boolean relevance matrix (queries x candidates): a candidate is correct when its group id equals the query's.

    Use it when several candidates are correct, e.g. identical report texts shared by several videos.
    """
    return np.asarray(query_groups)[:, None] == np.asarray(candidate_groups)[None, :]


def cosine_similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of `a` with every row of `b`."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    norms_a, norms_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (norms_a == 0).any() or (norms_b == 0).any():
        raise EvaluationInputError("embeddings contain all-zero vectors, whose cosine similarity is undefined")
    return (a / norms_a[:, None]) @ (b / norms_b[:, None]).T


def best_match_ranks(similarity: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """1-based rank of the best-ranked correct candidate of each query; NaN for queries with no correct candidate.

    Ties are broken pessimistically: every wrong candidate scoring at least as high as the best correct one is
    ranked before it. So rank = 1 + number of wrong candidates with similarity >= the best correct similarity.
    """
    similarity = np.asarray(similarity, dtype="float64")
    relevance = np.asarray(relevance, dtype=bool)
    if similarity.ndim != 2 or similarity.shape != relevance.shape:
        raise EvaluationInputError(
            f"similarity {similarity.shape} and relevance {relevance.shape} must be equal 2-D shapes"
        )
    if np.isnan(similarity).any():
        raise EvaluationInputError("similarity contains NaN")
    ranks = np.full(len(similarity), np.nan)
    rows = max(1, _CHUNK_CELLS // max(1, similarity.shape[1]))
    for start in range(0, len(similarity), rows):
        sim, rel = similarity[start : start + rows], relevance[start : start + rows]
        best = np.where(rel, sim, -np.inf).max(axis=1)
        beaten_by = ((sim >= best[:, None]) & ~rel).sum(axis=1)
        ranks[start : start + rows] = np.where(rel.any(axis=1), 1.0 + beaten_by, np.nan)
    return ranks


def retrieval_metrics(
    similarity: np.ndarray, relevance: np.ndarray, recall_at: Iterable[int] = RECALL_AT
) -> RetrievalResult:
    """Recall@K, mean and median rank of queries (rows) retrieving candidates (columns).

    Recall@K is the share of queries whose best-ranked correct candidate is within the top K (pessimistic ties, see
    `best_match_ranks`). The median is numpy's (mean of the two middle ranks for an even count). Queries without a
    correct candidate are skipped, counted and logged. Transpose both matrices for the other direction.
    """
    ranks = best_match_ranks(similarity, relevance)
    scored = ranks[~np.isnan(ranks)]
    skipped = len(ranks) - len(scored)
    if skipped:
        logger.warning("retrieval: %d of %d queries have no correct candidate and were skipped", skipped, len(ranks))
    if len(scored) == 0:
        raise EvaluationInputError("retrieval: no query has a correct candidate")
    return RetrievalResult(
        recall_at={int(k): float((scored <= k).mean()) for k in recall_at},
        mean_rank=float(scored.mean()),
        median_rank=float(np.median(scored)),
        n_queries=len(scored),
        n_candidates=int(np.shape(similarity)[1]),
        n_queries_without_match=skipped,
    )


def alignment_score(similarity: np.ndarray, relevance: np.ndarray) -> float:
    """Mean cosine similarity of the positive (video, report) pairs; `similarity` must hold cosines."""
    relevance = np.asarray(relevance, dtype=bool)
    if not relevance.any():
        raise EvaluationInputError("alignment score: no positive pair in the relevance matrix")
    return float(np.asarray(similarity, dtype="float64")[relevance].mean())


def cross_modal_retrieval(
    video_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    relevance: np.ndarray,
    recall_at: Iterable[int] = RECALL_AT,
) -> dict[str, RetrievalResult | float]:
    """Video->text and text->video retrieval plus the alignment score, from embeddings (the paper's Extended Table 8).

    For the study level, pass study embeddings (`mean_embeddings_by_group`) and a study-level relevance matrix.
    """
    similarity = cosine_similarity_matrix(video_embeddings, text_embeddings)
    relevance = np.asarray(relevance, dtype=bool)
    recall_at = tuple(recall_at)
    return {
        "video_to_text": retrieval_metrics(similarity, relevance, recall_at),
        "text_to_video": retrieval_metrics(similarity.T, relevance.T, recall_at),
        "alignment_score": alignment_score(similarity, relevance),
    }


def mean_embeddings_by_group(embeddings: np.ndarray, groups: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, mean of the unit-normalised embeddings of each group): video embeddings -> study embeddings."""
    embeddings = np.asarray(embeddings, dtype="float64")
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups, dtype=object)))
    if (codes < 0).any():
        raise EvaluationInputError("groups contain missing ids")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if (norms == 0).any():
        raise EvaluationInputError("embeddings contain all-zero vectors")
    sums = np.zeros((len(uniques), embeddings.shape[1]))
    np.add.at(sums, codes, embeddings / norms)
    return np.asarray(uniques), sums / np.bincount(codes)[:, None]


# --------------------------------------------------------------------------------------------------------------
# Segment and study-level tasks of a prediction table
# --------------------------------------------------------------------------------------------------------------
def _check_tables(labels: pd.DataFrame, predictions: pd.DataFrame, patient_ids: pd.Series, columns: list[str]) -> None:
    """Every labelled study must have a prediction and a patient id; predictions without labels are only logged."""
    if not isinstance(labels, pd.DataFrame) or not isinstance(predictions, pd.DataFrame):
        raise EvaluationInputError("labels and predictions must be pandas DataFrames indexed by study_id")
    if not isinstance(patient_ids, pd.Series):
        raise EvaluationInputError("patient_ids must be a pandas Series indexed by study_id")
    for what, index in (
        ("labels", labels.index),
        ("predictions", predictions.index),
        ("patient_ids", patient_ids.index),
    ):
        if index.has_duplicates:
            raise EvaluationInputError(f"{what}: study_id index has {int(index.duplicated().sum())} duplicates")
    absent = [c for c in columns if c not in predictions.columns]
    if absent:
        raise EvaluationInputError(f"predictions lack the labelled columns {absent}")
    labelled = labels.index[labels[columns].notna().any(axis=1)]
    for what, index in (("predictions", predictions.index), ("patient_ids", patient_ids.index)):
        missing = labelled.difference(index)
        if len(missing):
            raise EvaluationInputError(
                f"{what}: {len(missing)} labelled studies have no row (index must hold every study_id)"
            )
    unlabelled = predictions.index.difference(labelled)
    if len(unlabelled):
        logger.info("%d predicted studies have no label in %d evaluated columns", len(unlabelled), len(columns))
    unknown = [c for c in labels.columns if c not in LABEL_COLUMNS and c not in STUDY_TASKS]
    if unknown:
        logger.info("%d label columns are not segment or study-level tasks and are not evaluated", len(unknown))


def _pooled(labels: pd.DataFrame, predictions: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions of the (study, column) pairs of `columns`, column after column; NaN labels kept."""
    y = np.concatenate([labels[c].to_numpy(dtype="float64", na_value=np.nan) for c in columns])
    p = [predictions[c].reindex(labels.index).to_numpy(dtype="float64", na_value=np.nan) for c in columns]
    return y, np.concatenate(p)


def _evaluate_cases(
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
    patient_ids: pd.Series,
    columns: list[str],
    task_type: TaskType,
    name: str,
    bootstrap: dict,
) -> TaskResult:
    """One result over the (study, column) pairs of `columns` pooled: a single column, or a micro-average."""
    y, p = _pooled(labels, predictions, columns)
    patients = np.tile(patient_ids.reindex(labels.index).to_numpy(dtype=object), len(columns))
    evaluate = evaluate_binary if task_type == "binary" else evaluate_regression
    return evaluate(y, p, patients, name=name, **bootstrap)


def _segment_columns(labels: pd.DataFrame) -> dict[str, dict[str, str]]:
    """{task: {segment key: label column}} of the segment columns present, in the vocabulary's segment order."""
    present: dict[str, dict[str, str]] = {}
    for task in SEGMENT_TASKS:
        columns = {s.key: label_column(s.key, task) for s in SEGMENTS if label_column(s.key, task) in labels.columns}
        if columns:
            present[task] = columns
    return present


def _scope_columns(columns: Mapping[str, str], scope: str) -> list[str]:
    """Columns pooled by a micro-average: every segment ("Global") or the segments of one territory."""
    return [c for key, c in columns.items() if scope == "Global" or SEGMENT_BY_KEY[key].territory == scope]


def evaluate_segments(
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
    patient_ids: pd.Series,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[tuple[str, str], TaskResult]:
    """Results of every `{segment}_{task}` column present in `labels`, and their micro-averages.

    Keys are (scope, task): scope is a segment key, or "Global" / "LCA" / "RCA" for the micro-average that pools
    every (study, segment) pair of all segments / of the territory (`Segment.territory`). The same seed is used for
    every result, so columns labelled for the same patients share their resamples.
    """
    by_task = _segment_columns(labels)
    if not by_task:
        return {}
    _check_tables(labels, predictions, patient_ids, [c for columns in by_task.values() for c in columns.values()])
    bootstrap = {"n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence}
    results: dict[tuple[str, str], TaskResult] = {}
    for task, columns in by_task.items():
        task_type = SEGMENT_TASKS[task]
        for segment, column in columns.items():
            results[segment, task] = _evaluate_cases(
                labels, predictions, patient_ids, [column], task_type, column, bootstrap
            )
        for scope in MICRO_SCOPES:
            pooled = _scope_columns(columns, scope)
            if pooled:
                name = f"{scope} {task}"
                results[scope, task] = _evaluate_cases(
                    labels, predictions, patient_ids, pooled, task_type, name, bootstrap
                )
    return results


def evaluate_study_tasks(
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
    patient_ids: pd.Series,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, TaskResult]:
    """Results of the study-level tasks (MACE, LVEF) whose columns are present in `labels` (no segment axis)."""
    columns = [task for task in STUDY_TASKS if task in labels.columns]
    if not columns:
        return {}
    _check_tables(labels, predictions, patient_ids, columns)
    bootstrap = {"n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence}
    return {
        task: _evaluate_cases(labels, predictions, patient_ids, [task], STUDY_TASKS[task], task, bootstrap)
        for task in columns
    }


def results_frame(results: Mapping[tuple[str, str], TaskResult] | Mapping[str, TaskResult]) -> pd.DataFrame:
    """Long, machine-readable table: one row per (scope, task, metric) with value, ci_low, ci_high and counts.

    Counts (n, n_positive, n_missing, prevalence, n_patients) are rows too, with empty intervals.
    """
    rows = []
    for key, result in results.items():
        scope, task = key if isinstance(key, tuple) else ("study", key)
        segment = SEGMENT_BY_KEY.get(scope)
        where = {
            "scope": scope,
            "scope_name": _display_segment(scope) if segment else scope,
            "territory": segment.territory if segment else ("" if scope in ("Global", "study") else scope),
            "task": task,
        }
        counts = {"n": result.n, "n_missing": result.n_missing, "n_patients": result.n_patients}
        if isinstance(result, BinaryResult):
            counts |= {"n_positive": result.n_positive, "prevalence": result.prevalence}
        for metric, value in counts.items():
            rows.append({**where, "metric": metric, "value": value})
        for metric, est in result.estimates().items():
            rows.append(
                {
                    **where,
                    "metric": metric,
                    "value": est.value,
                    "ci_low": est.ci_low,
                    "ci_high": est.ci_high,
                    "n_resamples": est.n_resamples,
                    "n_skipped": est.n_skipped,
                    "reason": est.reason,
                }
            )
        if isinstance(result, RegressionResult):
            low, high = result.pearson_r_fisher
            rows.append(
                {
                    **where,
                    "metric": "pearson_r_fisher",
                    "value": result.pearson_r.value,
                    "ci_low": low,
                    "ci_high": high,
                    "reason": result.pearson_r.reason,
                }
            )
    columns = [
        "scope",
        "scope_name",
        "territory",
        "task",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n_resamples",
        "n_skipped",
        "reason",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame[["n_resamples", "n_skipped"]] = frame[["n_resamples", "n_skipped"]].fillna(0).astype(int)
    frame["reason"] = frame["reason"].fillna("")
    return frame


# --------------------------------------------------------------------------------------------------------------
# Paper-layout Markdown
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperTable:
    """One of the paper's per-segment tables: which tasks feed it and how it is titled."""

    filename: str
    title: str
    binary_task: str
    count_header: str
    regression_task: str | None = None


PAPER_TABLES: tuple[PaperTable, ...] = (
    PaperTable(
        "extended_table_9_stenosis",
        "Extended Table 9. Stenosis Quantification by Coronary Segment",
        "stenosis_binary",
        "n ≥70% (%)",
        regression_task="stenosis",
    ),
    PaperTable(
        "extended_table_10_calcification",
        "Extended Table 10. Calcification Quantification by Coronary Segment",
        "calcif_binary",
        "n (%)",
    ),
    PaperTable(
        "extended_table_11_thrombus",
        "Extended Table 11. Thrombus Classification by Coronary Segment",
        "thrombus",
        "n (%)",
    ),
    PaperTable(
        "extended_table_12_cto",
        "Extended Table 12. Chronic Total Occlusion Classification by Coronary Segment",
        "cto",
        "n (%)",
    ),
)
# Decimals of each metric in the per-segment tables (as the paper prints them).
_DECIMALS = {
    "auroc": 3,
    "auprc": 3,
    "sensitivity": 2,
    "specificity": 2,
    "ppv": 2,
    "npv": 2,
    "threshold": 4,
    "mae": 2,
    "rmse": 2,
    "pearson_r": 2,
}
_HEADERS = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "sensitivity": "Sens",
    "specificity": "Spec",
    "ppv": "PPV",
    "npv": "NPV",
    "mae": "MAE",
    "rmse": "RMSE",
    "pearson_r": "r",
}


def _display_segment(key: str) -> str:
    name = SEGMENT_BY_KEY[key].name
    return name[:1].upper() + name[1:]


def _count_cell(result: BinaryResult | None) -> str:
    """ "371/4,828 (7.7%)"; prevalences under 0.1 % keep two decimals, as the paper prints them."""
    if result is None:
        return "N/A"
    percent = 100 * result.prevalence if result.n else math.nan
    decimals = 2 if 0 < percent < 0.1 else 1
    return f"{result.n_positive:,}/{result.n:,} ({percent:.{decimals}f}%)"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def frame_markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a Markdown table (numbers to `digits` significant decimals), without pandas' tabulate dependency."""

    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    frame = frame.reset_index() if frame.index.name or isinstance(frame.index, pd.MultiIndex) else frame
    return _markdown([str(c) for c in frame.columns], [[cell(v) for v in row] for row in frame.itertuples(index=False)])


def _footer(results: Iterable[TaskResult]) -> str:
    """Legend: where the intervals come from, what was excluded and how many resamples were skipped."""
    results = list(results)
    n_bootstrap = results[0].n_bootstrap if results else 0
    confidence = results[0].confidence if results else CONFIDENCE
    missing = sum(r.n_missing for r in results)
    skipped = max((e.n_skipped for r in results for e in r.estimates().values()), default=0)
    interval = (
        f"{100 * confidence:g}% CIs from {n_bootstrap:,} patient-level bootstrap resamples (percentile method)"
        if n_bootstrap
        else "no bootstrap intervals"
    )
    return (
        f"Values in parentheses are {interval}. Missing labels excluded: {missing:,}. "
        f"Resamples skipped where a metric was undefined (e.g. one class drawn): at most {skipped:,} per metric. "
        "N/A: undefined; the CSV gives the reason and every count."
    )


def segment_table_markdown(results: Mapping[tuple[str, str], TaskResult], table: PaperTable) -> str:
    """One of Extended Tables 9-12 as Markdown: a row per segment, "value (low-high)" cells."""
    metrics = ["auroc", "auprc", "sensitivity", "specificity"]
    regression = ["mae", "pearson_r"] if table.regression_task else []
    header = ["Segment", table.count_header]
    header += [f"{_HEADERS[m]} (95% CI)" for m in regression + metrics] + ["Youden threshold"]
    rows, shown = [], []
    for segment in SEGMENTS:
        binary = results.get((segment.key, table.binary_task))
        reg = results.get((segment.key, table.regression_task)) if table.regression_task else None
        if binary is None and reg is None:
            continue
        shown += [r for r in (binary, reg) if r is not None]
        cells = [_display_segment(segment.key), _count_cell(binary)]
        cells += [reg.estimates()[m].cell(_DECIMALS[m]) if reg else "N/A" for m in regression]
        cells += [binary.estimates()[m].cell(_DECIMALS[m]) if binary else "N/A" for m in metrics]
        rows.append([*cells, _threshold_cell(binary)])
    return f"{table.title}\n\n{_markdown(header, rows)}\n\n{_footer(shown)}\n"


def territory_table_markdown(results: Mapping[tuple[str, str], TaskResult]) -> str:
    """Table 2 layout: per task, rows of metrics and columns Global (All) / LCA / RCA (micro-averages)."""
    header = ["Task", "Metric", "Global (All)", "LCA", "RCA"]
    rows, shown = [], []
    for task, task_type in SEGMENT_TASKS.items():
        scoped = [results.get((scope, task)) for scope in MICRO_SCOPES]
        if all(r is None for r in scoped):
            continue
        shown += [r for r in scoped if r is not None]
        if task_type == "binary":
            lines = [("n (abnormal/total)", [_count_cell(r) for r in scoped])]
            metrics = [m for m in BINARY_METRICS if m != "threshold"]
        else:
            lines = [("n (segments)", [f"{r.n:,}" if r else "N/A" for r in scoped])]
            metrics = list(REGRESSION_METRICS)
        lines += [
            (f"{_HEADERS[m]} (95% CI)", [r.estimates()[m].cell(3) if r else "N/A" for r in scoped]) for m in metrics
        ]
        if task_type == "binary":
            lines.append(("Youden threshold", [_threshold_cell(r) for r in scoped]))
        rows += [
            [TASK_DISPLAY_NAMES[task] if i == 0 else "", metric, *cells] for i, (metric, cells) in enumerate(lines)
        ]
    title = "Table 2. Performance by coronary territory (micro-averaged over the segments of each territory)"
    return f"{title}\n\n{_markdown(header, rows)}\n\n{_footer(shown)}\n"


def study_table_markdown(results: Mapping[str, TaskResult]) -> str:
    """Study-level tasks (MACE, LVEF): a row per task, binary and regression metrics side by side."""
    metrics = ["auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "mae", "rmse", "pearson_r"]
    header = ["Task", "n (%)", *[f"{_HEADERS[m]} (95% CI)" for m in metrics], "Youden threshold"]
    rows = []
    for task, result in results.items():
        estimates = result.estimates()
        count = _count_cell(result) if isinstance(result, BinaryResult) else f"{result.n:,}"
        cells = [estimates[m].cell(3) if m in estimates else "" for m in metrics]
        rows.append([TASK_DISPLAY_NAMES[task], count, *cells, _threshold_cell(result)])
    return f"Study-level tasks\n\n{_markdown(header, rows)}\n\n{_footer(results.values())}\n"


def _threshold_cell(result: TaskResult | None) -> str:
    if not isinstance(result, BinaryResult) or math.isnan(result.threshold.value):
        return "-"
    return f"{result.threshold.value:.4f}"


# --------------------------------------------------------------------------------------------------------------
# ROC and precision-recall curves
# --------------------------------------------------------------------------------------------------------------
def plot_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, path: str | Path) -> Path:
    """One PNG with a ROC panel and a precision-recall panel, a curve per entry of `curves` ({name: (labels, scores)}).

    Missing labels (NaN) are left out; entries with a single class have no curve and are listed as "N/A". Uses
    matplotlib's Agg canvas directly (no pyplot), so nothing global changes and no display is needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    roc_axis, pr_axis = figure.subplots(1, 2)
    for name, (labels, scores) in curves.items():
        labelled = ~np.isnan(np.asarray(labels, dtype="float64"))
        y, s = np.asarray(labels)[labelled], np.asarray(scores)[labelled]
        if len(np.unique(y)) < 2:
            roc_axis.plot([], [], label=f"{name}: N/A (one class)")
            pr_axis.plot([], [], label=f"{name}: N/A (one class)")
            continue
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        roc_axis.plot(fpr, tpr, label=f"{name}: AUROC {roc_auc_score(y, s):.3f}")
        pr_axis.step(recall, precision, where="post", label=f"{name}: AUPRC {average_precision_score(y, s):.3f}")
    roc_axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc_axis.set(xlabel="1 - specificity", ylabel="Sensitivity", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    pr_axis.set(
        xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01)
    )
    for axis in (roc_axis, pr_axis):
        axis.legend(loc="lower right" if axis is roc_axis else "upper right", fontsize="small")
    figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------------------------------------------
# Writing everything
# --------------------------------------------------------------------------------------------------------------
def write_tables(
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
    patient_ids: pd.Series,
    out_dir: str | Path,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Path]:
    """Write the paper's tables (CSV + Markdown) and ROC / precision-recall curves; return {name: path}.

    `labels` and `predictions` are indexed by study_id with `{segment}_{task}` columns (and/or the study-level task
    columns); label NaN = missing. Binary predictions are probabilities, regression predictions are in %.
    `patient_ids` (indexed by study_id) drives the patient-level bootstrap; it is never written out.
    Files: extended_table_9_stenosis ... extended_table_12_cto and table_2_territories (segment tasks),
    study_level_tasks (MACE / LVEF columns), curves_{task}.png per binary task. Tables whose tasks have no column
    in `labels` are not written (logged).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bootstrap = {"n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence}
    segment_results = evaluate_segments(labels, predictions, patient_ids, **bootstrap)
    study_results = evaluate_study_tasks(labels, predictions, patient_ids, **bootstrap)
    if not segment_results and not study_results:
        raise EvaluationInputError("labels have no segment (`{segment}_{task}`) or study-level task column to evaluate")
    written: dict[str, Path] = {}

    def write(name: str, frame: pd.DataFrame, markdown: str) -> None:
        frame.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.md").write_text(markdown, encoding="utf-8")
        written[f"{name}.csv"], written[f"{name}.md"] = out / f"{name}.csv", out / f"{name}.md"

    for table in PAPER_TABLES:
        tasks = [t for t in (table.binary_task, table.regression_task) if t]
        rows = {key: r for key, r in segment_results.items() if key[1] in tasks and key[0] in SEGMENT_BY_KEY}
        if rows:
            write(table.filename, results_frame(rows), segment_table_markdown(segment_results, table))
        else:
            logger.info("%s not written: no %s column in labels", table.filename, " / ".join(tasks))
    micro = {key: r for key, r in segment_results.items() if key[0] in MICRO_SCOPES}
    if micro:
        write("table_2_territories", results_frame(micro), territory_table_markdown(segment_results))
    if study_results:
        write("study_level_tasks", results_frame(study_results), study_table_markdown(study_results))

    by_task = _segment_columns(labels)
    for task, columns in by_task.items():
        if SEGMENT_TASKS[task] != "binary":
            continue
        curves = {}
        for scope in MICRO_SCOPES:
            pooled = _scope_columns(columns, scope)
            if pooled:
                curves[scope] = _pooled(labels, predictions, pooled)
        written[f"curves_{task}.png"] = plot_curves(curves, TASK_DISPLAY_NAMES[task], out / f"curves_{task}.png")
    for task in study_results:
        if STUDY_TASKS[task] == "binary":
            curves = {"study": _pooled(labels, predictions, [task])}
            written[f"curves_{task}.png"] = plot_curves(curves, TASK_DISPLAY_NAMES[task], out / f"curves_{task}.png")
    logger.info("wrote %d evaluation files to %s", len(written), out)
    return written


# --------------------------------------------------------------------------------------------------------------
# `evaluate` metric scripts shipped with the package
# --------------------------------------------------------------------------------------------------------------
_METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def metric_path(name: str) -> str:
    """Path of a metric script shipped in this package, for `evaluate.load(metric_path("segments"))`.

    `evaluate.load("name")` fetches scripts from the Hub; a local path loads offline (HF_HUB_OFFLINE=1).
    """
    script = _METRICS_DIR / f"deepcoro_{name}" / f"deepcoro_{name}.py"
    if not script.is_file():
        available = sorted(p.name.removeprefix("deepcoro_") for p in _METRICS_DIR.glob("deepcoro_*") if p.is_dir())
        raise ValueError(f"no evaluate metric named {name!r}; available: {available}")
    return str(script)
