"""`deepcoro predict` and `deepcoro embed`: saved models on study folders, from the command line.

    deepcoro predict STUDY... --model M [--output out.json|out.csv] [--threshold 0.5] [--batch-size N] [--device D]
    deepcoro embed STUDY... --model M --output embeddings.npz|embeddings.parquet [--normalize] [--batch-size N]

Both run the pipelines of `pipeline_deepcoro` (`coronary-study-analysis`, `coronary-feature-extraction`) through their
own `preprocess` -> `forward` -> `postprocess`, so a study gives the same numbers here as through
`transformers.pipeline(...)`. A study that cannot be analysed (missing folder, no readable video) is reported on one
line and the others go on; the exit status is then 1.

Studies (`discover_studies`). Each STUDY argument is a single DICOM / AVI / MP4 file (a one-video study) or a folder.
The DICOM headers of a folder's files (every file beneath it) are read: when they carry one StudyInstanceUID (or
none), the folder is one study named by the folder; when they carry several, as in a patient folder or an export
root, each StudyInstanceUID is a study named by its UID, and the files that belong to none (non-DICOM, unreadable)
are counted and logged.

Outputs never hold patient attributes: studies are named by folder name or StudyInstanceUID, videos by file name.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .dicom import DicomError, is_dicom, read_dicom_header
from .pipeline_deepcoro import DEFAULT_THRESHOLD, FEATURE_EXTRACTION, STUDY_ANALYSIS
from .video_processing_deepcoro import DICOM_SUFFIXES
from .vocabulary import TASK_COLUMN_NAMES


logger = logging.getLogger(__name__)

PREDICT_OUTPUTS = (".json", ".csv")
EMBED_OUTPUTS = (".npz", ".parquet")


# ----------------------------------------------------------------------------------------------------------------------
# Studies
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Study:
    """One study to analyse: its id and the pipeline input (a folder, a file, or `{"videos": [...], "study_id"}`)."""

    study_id: str
    inputs: Any


def _study_uid(path: Path) -> str | None:
    """StudyInstanceUID of a file, or None when it is not a readable DICOM (the pipeline then lists it as skipped)."""
    if path.suffix.lower() not in DICOM_SUFFIXES and not is_dicom(path):
        return None
    try:
        return read_dicom_header(path).study_uid
    except (DicomError, OSError):
        return None


def discover_studies(paths: list[str | Path]) -> list[Study]:
    """The studies of the command-line arguments (see the module docstring). Paths that do not exist are kept, so
    that running them reports the error next to the other studies."""
    studies = []
    for argument in paths:
        path = Path(argument)
        name = path.name or path.resolve().name
        if not path.is_dir():
            studies.append(Study(name, str(path)))
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file())
        by_uid: dict[str, list[str]] = {}
        orphans = []
        for file in files:
            uid = _study_uid(file)
            if uid is None:
                orphans.append(file.name)
            else:
                by_uid.setdefault(uid, []).append(str(file))
        if len(by_uid) <= 1:
            studies.append(Study(name, str(path)))
            continue
        logger.info("%s holds %d studies (StudyInstanceUIDs): one result each", name, len(by_uid))
        if orphans:
            message = (
                f"{name}: {len(orphans)} file(s) belong to none of its {len(by_uid)} studies (not readable DICOM) and "
                f"are not analysed: {', '.join(orphans)}"
            )
            logger.warning(message)
        for uid, videos in by_uid.items():
            studies.append(Study(uid, {"videos": videos, "study_id": uid}))
    return studies


# ----------------------------------------------------------------------------------------------------------------------
# Running a pipeline on studies
# ----------------------------------------------------------------------------------------------------------------------
def load_pipeline(task: str, model: str, device: str | None = None):
    """The task's pipeline on a saved model folder (or Hub id), with the model class its config names.

    The folder's own Auto class is used (`AutoModelForVideoClassification` for a segment classifier, `AutoModel` for
    CLIP), so a classifier folder is never loaded as a CLIP model for embeddings."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoVideoProcessor, pipeline

    if device is not None:
        try:
            kind = torch.device(device).type
        except RuntimeError:
            raise ValueError(f"--device {device}: not a torch device; expected e.g. cpu, cuda or cuda:1") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is available here; use --device cpu")
    if model.startswith(("/", "./", "../")) and not Path(model).is_dir():
        raise OSError(f"--model {model}: no such model folder")  # a path, not a Hub id: do not ask the Hub
    config = AutoConfig.from_pretrained(model)
    architectures = list(getattr(config, "architectures", None) or [])
    classifier = "DeepCoroForSegmentClassification" in architectures
    if task == STUDY_ANALYSIS and not classifier:
        raise ValueError(
            f"{model}: predict needs a segment classifier (DeepCoroForSegmentClassification), the folder holds "
            f"{', '.join(architectures) or 'no named architecture'}; use `deepcoro embed` for a CLIP model"
        )
    model_class = AutoModelForVideoClassification if classifier else AutoModel
    loaded = model_class.from_pretrained(model)
    return pipeline(task, model=loaded, video_processor=AutoVideoProcessor.from_pretrained(model), device=device)


def run_studies(
    pipe, studies: list[Study], batch_size: int = 1, **params
) -> Iterator[tuple[Study, dict | None, str | None]]:
    """(study, result, None) or (study, None, error message) for each study, in order.

    Studies are read one by one (a bad one fails alone), run through the model `batch_size` at a time, and each
    result is the pipeline's own `postprocess` output. `params` are the pipeline's call arguments (e.g. threshold);
    a progress bar goes to stderr."""
    from tqdm import tqdm

    preprocess_params, forward_params, postprocess_params = pipe._sanitize_parameters(**params)
    bar = tqdm(total=len(studies), unit="study", file=sys.stderr)
    try:
        for start in range(0, len(studies), batch_size):
            ready = []
            for study in studies[start : start + batch_size]:
                try:
                    ready.append((study, pipe.preprocess(study.inputs, **preprocess_params)))
                except (ValueError, OSError) as err:
                    bar.update()
                    yield study, None, _one_line(err)
            if not ready:
                continue
            try:
                outputs = pipe.forward(pipe.collate([inputs for _, inputs in ready]), **forward_params)
            except (ValueError, RuntimeError) as err:
                for study, _ in ready:
                    bar.update()
                    yield study, None, _one_line(err)
                continue
            for index, (study, _) in enumerate(ready):
                bar.update()
                yield study, pipe.postprocess(pipe.unbatch(outputs, index), **postprocess_params), None
    finally:
        bar.close()


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _write(text: str) -> None:
    """Print without breaking the progress bar on stderr."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)


# ----------------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------------
def _column(task: str) -> str:
    return TASK_COLUMN_NAMES.get(task, task)


def _cell(value: float, task_type: str) -> str:
    return f"{value:.1f}" if task_type == "regression" else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned numbers (hand-written: a dozen lines, no table library needed)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def render_study(result: dict, task_types: dict[str, str]) -> str:
    """The readable block `deepcoro predict` prints for one study: a header, the table and the report."""
    tasks = list(task_types)
    analysed, skipped = len(result["videos"]), len(result["skipped"])
    title = f"Study {result['study_id']}"
    if result.get("study_uid") and result["study_uid"] != result["study_id"]:
        title += f" (StudyInstanceUID {result['study_uid']})"
    title += f": {analysed} video{'s' * (analysed != 1)} analysed, {skipped} file{'s' * (skipped != 1)} not analysed"
    if "segments" in result:
        header = ["Segment", *(_column(task) for task in tasks), "Flag"]
        rows = [
            [
                f"{entry['name']} ({entry['syntax']})",
                *(_cell(entry[task], task_types[task]) for task in tasks),
                "yes" if entry["flagged"] else "",
            ]
            for entry in result["segments"]
        ]
    else:
        header = ["Task", "Value", "Flag"]
        outputs = result["study_tasks"]
        rows = [
            [_column(task), _cell(outputs[task], task_types[task]), "yes" if task in outputs["findings"] else ""]
            for task in tasks
        ]
    note = f"Flag: a binary finding with probability >= {result['threshold']:.2f}."
    report = "\n".join(f"  {line}" for line in result["report"].splitlines())
    return f"{title}\n{_table(header, rows)}\n{note}\nReport:\n{report}\n"


def write_predictions(path: Path, results: list[dict], failures: list[dict], task_types: dict[str, str]) -> None:
    """JSON: the list of per-study results (failed studies as `{"study_id", "error"}`); CSV: one row per study and
    segment (per study for study-level models), failed studies left out (they are reported on stderr)."""
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps([*results, *failures], indent=2) + "\n", encoding="utf-8")
        return
    tasks = list(task_types)
    segmented = any("segments" in result for result in results)
    columns = ["study_id", "study_uid"] + (["segment", "name", "syntax", "territory"] if segmented else [])
    columns += [*tasks, "flagged", "findings"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for result in results:
            entries = result["segments"] if segmented else [result["study_tasks"]]
            for entry in entries:
                row = {"study_id": result["study_id"], "study_uid": result["study_uid"] or ""}
                row.update({key: entry[key] for key in columns if key in entry and key != "findings"})
                row["findings"] = ";".join(entry["findings"])
                writer.writerow(row)


def write_embeddings(path: Path, results: list[dict]) -> None:
    """`.npz`: `study_ids`, `study_uids`, `study_embeddings` [S, D] and, for a CLIP model, `video_embeddings`
    [V, D] with `video_study_index` (row of `study_ids`), `video_sources` (file names) and `video_views`.
    `.parquet`: one row per embedding with `study_id`, `study_uid`, `level` ("study" or "video"), `source`, `view`
    and `embedding` (list of float32)."""
    study_ids = [result["study_id"] for result in results]
    study_uids = [result["study_uid"] or "" for result in results]
    studies = [np.asarray(result["study_embedding"], dtype=np.float32) for result in results]
    has_videos = bool(results) and results[0]["video_embeddings"] is not None
    video_rows = [
        (i, video, np.asarray(embedding, dtype=np.float32))
        for i, result in enumerate(results) if has_videos
        for video, embedding in zip(result["videos"], result["video_embeddings"])
    ]
    if path.suffix.lower() == ".npz":
        arrays = {
            "study_ids": np.array(study_ids, dtype=str),
            "study_uids": np.array(study_uids, dtype=str),
            "study_embeddings": np.stack(studies) if studies else np.zeros((0, 0), np.float32),
        }
        if has_videos:
            arrays["video_embeddings"] = np.stack([row[2] for row in video_rows])
            arrays["video_study_index"] = np.array([row[0] for row in video_rows], dtype=np.int64)
            arrays["video_sources"] = np.array([row[1]["source"] for row in video_rows], dtype=str)
            arrays["video_views"] = np.array([row[1]["view"] or "" for row in video_rows], dtype=str)
        np.savez(path, **arrays)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [(study_ids[i], study_uids[i], "study", None, None, embedding) for i, embedding in enumerate(studies)]
    rows += [(study_ids[i], study_uids[i], "video", video["source"], video["view"], vector) for i, video, vector in
             video_rows]
    table = pa.table(
        {
            "study_id": [row[0] for row in rows],
            "study_uid": [row[1] for row in rows],
            "level": [row[2] for row in rows],
            "source": pa.array([row[3] for row in rows], type=pa.string()),
            "view": pa.array([row[4] for row in rows], type=pa.string()),
            "embedding": pa.array([row[5].tolist() for row in rows], type=pa.list_(pa.float32())),
        }
    )
    pq.write_table(table, path)


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------
def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "studies", nargs="+", metavar="STUDY",
        help="a study folder (DICOM cines; a folder of several studies is split by StudyInstanceUID) or a single "
        "DICOM / AVI / MP4 file",
    )
    parser.add_argument("--model", required=True, metavar="M", help="saved model folder (or Hub id)")
    parser.add_argument(
        "--batch-size", type=_positive, default=1, metavar="N", help="studies per forward pass (default: 1)"
    )
    parser.add_argument(
        "--device", default=None, metavar="D",
        help="torch device, e.g. cpu, cuda, cuda:1 (default: the first accelerator, else cpu)",
    )


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument(
        "--output", type=Path, default=None, metavar="FILE",
        help="also write the results: .json (one entry per study) or .csv (one row per study and segment)",
    )
    parser.add_argument(
        "--threshold", type=_probability, default=DEFAULT_THRESHOLD, metavar="P",
        help=f"flag a finding when its probability is >= P (default: {DEFAULT_THRESHOLD})",
    )


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument(
        "--output", type=Path, required=True, metavar="FILE",
        help="embeddings file: .npz (arrays) or .parquet (one row per study / video embedding)",
    )
    parser.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `deepcoro predict` or `deepcoro embed`: both commands live in this module, and `cli.py` names
    the parser `deepcoro COMMAND`."""
    command = parser.prog.split()[-1]
    if command not in ("predict", "embed"):
        raise ValueError(f"deepcoro_hf.inference has the commands predict and embed, not {command!r}")
    (add_embed_arguments if command == "embed" else add_predict_arguments)(parser)
    parser.set_defaults(_command=command)


def run(args: argparse.Namespace) -> int:
    return run_embed(args) if args._command == "embed" else run_predict(args)


def _check_output(path: Path | None, suffixes: tuple[str, ...]) -> None:
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"--output {path}: expected a {' or '.join(suffixes)} file")
    if not path.parent.is_dir():
        raise OSError(f"--output {path}: the folder {path.parent} does not exist")


def _report_failure(study: Study, error: str, failures: list[dict]) -> None:
    from tqdm import tqdm

    tqdm.write(f"study {study.study_id}: failed: {error}", file=sys.stderr)
    failures.append({"study_id": study.study_id, "error": error})


def run_predict(args: argparse.Namespace) -> int:
    _check_output(args.output, PREDICT_OUTPUTS)
    studies = discover_studies(args.studies)
    pipe = load_pipeline(STUDY_ANALYSIS, args.model, args.device)
    task_types = {task: pipe.model.config.task_types[task] for task in pipe.model.config.tasks}
    results, failures = [], []
    for study, result, error in run_studies(pipe, studies, args.batch_size, threshold=args.threshold):
        if error is not None:
            _report_failure(study, error, failures)
            continue
        results.append(result)
        _write(render_study(result, task_types))
    if args.output is not None:
        write_predictions(args.output, results, failures, task_types)
    print(
        f"deepcoro predict: {len(results)} of {len(studies)} studies analysed"
        + (f", {len(failures)} failed" if failures else "")
        + (f"; results in {args.output}" if args.output is not None else ""),
        file=sys.stderr,
    )
    return 1 if failures else 0


def run_embed(args: argparse.Namespace) -> int:
    _check_output(args.output, EMBED_OUTPUTS)
    studies = discover_studies(args.studies)
    pipe = load_pipeline(FEATURE_EXTRACTION, args.model, args.device)
    results, failures = [], []
    for study, result, error in run_studies(
        pipe, studies, args.batch_size, normalize=args.normalize, return_tensors=True
    ):
        if error is not None:
            _report_failure(study, error, failures)
        else:
            results.append(result)
    write_embeddings(args.output, results)
    videos = sum(len(result["videos"]) for result in results if result["video_embeddings"] is not None)
    print(
        f"deepcoro embed: {len(results)} of {len(studies)} studies embedded"
        + (f" ({videos} video embeddings)" if videos else "")
        + (f", {len(failures)} failed" if failures else "")
        + f"; written to {args.output}",
        file=sys.stderr,
    )
    return 1 if failures else 0


__all__ = [
    "Study",
    "add_arguments",
    "add_embed_arguments",
    "add_predict_arguments",
    "discover_studies",
    "load_pipeline",
    "render_study",
    "run",
    "run_embed",
    "run_predict",
    "run_studies",
    "write_embeddings",
    "write_predictions",
]
