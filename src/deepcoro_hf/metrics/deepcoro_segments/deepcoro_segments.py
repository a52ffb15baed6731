"""
`evaluate` metric for one DeepCORO-CLIP task: a segment column, a territory micro-average or a study-level task.

Load it offline from the installed package, not from the Hub:

    import evaluate
    from deepcoro_hf.evaluation import metric_path
    metric = evaluate.load(metric_path("segments"))
    metric.compute(predictions=probabilities, references=labels, task_type="binary", patient_ids=patients)

It returns exactly what `deepcoro_hf.evaluation.evaluate_binary` / `evaluate_regression` return (`as_dict()`), so
a Trainer's `compute_metrics` and the paper tables agree.
"""

import datasets
import evaluate

from deepcoro_hf.evaluation import N_BOOTSTRAP, evaluate_binary, evaluate_regression

_CITATION = (
    "DeepCORO-CLIP: a multi-view video-text foundation model for coronary angiography. "
    "DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated receiver operating "
    "characteristic curves: a nonparametric approach. Biometrics 44, 837-845 (1988)."
)

_DESCRIPTION = (
    "Binary tasks: AUROC, AUPRC (average precision), sensitivity / specificity / PPV / NPV at the Youden threshold and "
    "the threshold. Regression tasks: MAE, RMSE, Pearson r (with its Fisher-z interval). Every metric comes with a "
    "percentile bootstrap interval over patients (all studies of a patient resampled together). Missing references "
    "(NaN or None) are excluded and counted; undefined metrics are NaN with a reason."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: probabilities (binary tasks) or values in % (regression tasks), one per case.
    references: 0/1 labels (binary) or reference values (regression); NaN or None marks a missing label.
    task_type: "binary" or "regression".
    patient_ids: optional patient id per case; without it every case is its own patient.
    n_bootstrap: resamples behind the intervals (default 1,000; 0 gives point estimates only).
    seed: seed of the resampling.
    confidence: interval level (default 0.95).
Returns:
    n, n_missing, n_patients, n_bootstrap (and n_positive, prevalence for binary tasks), and per metric its value,
    `{metric}_ci_low`, `{metric}_ci_high`, `{metric}_n_skipped` (resamples where it was undefined) and
    `{metric}_reason` (why it is NaN, else empty).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DeepcoroSegments(evaluate.Metric):
    """Paper metrics of one task, with patient-level bootstrap intervals."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(
        self,
        predictions,
        references,
        task_type="binary",
        patient_ids=None,
        n_bootstrap=N_BOOTSTRAP,
        seed=0,
        confidence=0.95,
    ):
        references = [float("nan") if value is None else value for value in references]
        options = {"n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence, "name": "deepcoro_segments"}
        if task_type == "binary":
            return evaluate_binary(references, predictions, patient_ids, **options).as_dict()
        if task_type == "regression":
            return evaluate_regression(references, predictions, patient_ids, **options).as_dict()
        raise ValueError(f"deepcoro_segments: task_type must be 'binary' or 'regression', got {task_type!r}")
