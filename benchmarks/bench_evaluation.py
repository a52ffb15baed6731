"""Wall time of the evaluation tables: 500 studies x 90 segment columns, 1,000 patient-level resamples.

Baseline measured in the same process: the straightforward bootstrap (scikit-learn roc_auc_score /
average_precision_score / roc_curve on each resample's replicated cases) for one binary column, scaled to the table
(90 columns + the pooled micro-average cases). The machine's load changes the absolute figures; CPU time is printed
beside the wall time.

Run: `python benchmarks/bench_evaluation.py` (about 20 s on 2 cores).
"""
import time

import numpy as np
import pandas as pd
from deepcoro_hf.evaluation import evaluate_segments, patient_bootstrap_counts, write_tables, youden_operating_point
from deepcoro_hf.vocabulary import LABEL_COLUMNS, SEGMENT_TASKS
from sklearn.metrics import average_precision_score, roc_auc_score

n_studies, n_bootstrap = 500, 1000
rng = np.random.default_rng(0)
index = pd.Index([f"s{i}" for i in range(n_studies)], name="study_id")
patients = pd.Series([f"p{i // 2}" for i in range(n_studies)], index=index)
labels, predictions = {}, {}
for column in LABEL_COLUMNS:
    task = next(t for t in SEGMENT_TASKS if column.endswith("_" + t))
    if SEGMENT_TASKS[task] == "regression":
        y = np.clip(rng.normal(20, 25, n_studies), 0, 100)
        labels[column], predictions[column] = y, np.clip(y + rng.normal(0, 10, n_studies), 0, 100)
    else:
        y = (rng.random(n_studies) < 0.1).astype(float)
        labels[column], predictions[column] = y, 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1, n_studies))))
labels, predictions = pd.DataFrame(labels, index=index), pd.DataFrame(predictions, index=index)
print(f"{n_studies} studies, {labels.shape[1]} columns, {n_bootstrap} resamples")

start, cpu = time.perf_counter(), time.process_time()
results = evaluate_segments(labels, predictions, patients, n_bootstrap=n_bootstrap)
fast = time.perf_counter() - start
print(f"evaluate_segments (90 columns + 15 micro-averages): {fast:.2f} s wall, {time.process_time() - cpu:.2f} s CPU")

start = time.perf_counter()
write_tables(labels, predictions, patients, "/tmp/evalbench/out", n_bootstrap=n_bootstrap)
print(f"write_tables (tables + curves): {time.perf_counter() - start:.2f} s")

# Baseline: one binary column with scikit-learn on every resample's replicated cases.
column = "prox_rca_stenosis_binary"
y, s = labels[column].to_numpy(), predictions[column].to_numpy()
codes = pd.factorize(patients)[0]
counts = patient_bootstrap_counts(codes.max() + 1, n_bootstrap, 0)
start = time.perf_counter()
for b in range(n_bootstrap):
    weights = counts[b][codes]
    yy, ss = np.repeat(y, weights), np.repeat(s, weights)
    roc_auc_score(yy, ss), average_precision_score(yy, ss), youden_operating_point(yy, ss)
per_column = time.perf_counter() - start
pooled_cases = sum(r.n for (scope, task), r in results.items() if scope in ("Global", "LCA", "RCA"))
estimate = per_column * (90 + pooled_cases / n_studies)
print(f"scikit-learn loop, one column: {per_column:.2f} s -> table estimate ~{estimate:.0f} s; ratio {estimate / fast:.0f}x")
