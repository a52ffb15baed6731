"""Publishing DeepCORO-CLIP models to the Hugging Face Hub with a model card.

`push_to_hub(model_dir, repo_id)` uploads a folder written by `save_pretrained` (weights as safetensors,
`config.json` with its `auto_map`, the code files, the processor files and anything else in it, such as a custom
pipeline or a LoRA `adapter/`) together with a `README.md` rendered by `render_model_card` from the template in
`modeling_cards/model_card.md`. The card's metadata (license, tags, base model, datasets, pipeline tag and a
`model-index`) and its results tables both come from the folder's config and, with `eval_dir`, from the CSV tables
`deepcoro evaluate` writes, so the numbers on the Hub are the numbers of the evaluation.

`model.push_to_hub(repo_id)` (transformers) writes a generic card on a repository that has none, and keeps the card
of one that has (adding only tags). To publish with it, push the rendered card after the model; later
`model.push_to_hub` calls keep that card:

    model.push_to_hub(repo_id); processor.push_to_hub(repo_id)
    render_model_card(model, repo_id=repo_id, eval_dir=..., datasets=[...]).push_to_hub(repo_id)

Weights are uploaded only as safetensors: a folder holding pickled weights (`pytorch_model.bin`, `*.pt`, ...) or
weights in another framework's format is refused, since loading pickles runs arbitrary code.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from huggingface_hub import CommitInfo, CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import StrictDataclassError
from safetensors import safe_open
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.dynamic_module_utils import get_relative_imports

from .configuration_deepcoro import DeepCoroClipConfig, DeepCoroVideoConfig
from .evaluation import MICRO_SCOPES, frame_markdown
from .vocabulary import SEGMENT_BY_KEY, SEGMENTS, TASK_DISPLAY_NAMES


logger = logging.getLogger(__name__)

CARD_TEMPLATE = Path(__file__).resolve().parent / "modeling_cards" / "model_card.md"
"""Jinja2 template of the model card (shipped as package data)."""

BASE_TAGS: tuple[str, ...] = ("medical-imaging", "coronary-angiography", "dicom", "deepcoro", "custom_code")

# What each saved architecture is on the Hub: its kind (which examples the card shows), pipeline tag and extra tags.
# The CLIP model and the bare video tower output embeddings: the Hub has no video-text retrieval or zero-shot video
# task, and "video-classification" would promise labels they do not produce, so they are "feature-extraction".
ARCHITECTURES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "DeepCoroForSegmentClassification": ("classifier", "video-classification", ("video-classification",)),
    "DeepCoroClipModel": ("clip", "feature-extraction", ("video-text", "contrastive-learning")),
    "DeepCoroVideoModel": ("video", "feature-extraction", ("video", "mvit")),
}

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
NON_SAFETENSORS_WEIGHTS: tuple[str, ...] = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack")
"""Pickles and non-safetensors weight files, refused in an upload: weights go to the Hub only as safetensors."""
PROCESSOR_FILES: tuple[str, ...] = ("video_preprocessor_config.json", "processor_config.json")

# Tables written by `deepcoro evaluate` (`evaluation.write_tables`), all in the long layout of `results_frame`.
TERRITORY_TABLE = "table_2_territories.csv"
STUDY_TABLE = "study_level_tasks.csv"
SEGMENT_TABLES: tuple[str, ...] = (
    "extended_table_9_stenosis.csv",
    "extended_table_10_calcification.csv",
    "extended_table_11_thrombus.csv",
    "extended_table_12_cto.csv",
)
TABLE_COLUMNS: tuple[str, ...] = ("scope", "task", "metric", "value", "ci_low", "ci_high", "n_resamples")

# Metrics published in the model-index: name in the tables -> (model-index type, display name).
INDEX_METRICS: dict[str, tuple[str, str]] = {
    "auroc": ("roc_auc", "AUROC"),
    "auprc": ("auprc", "AUPRC"),
    "mae": ("mae", "MAE"),
    "pearson_r": ("pearsonr", "Pearson r"),
}
# Metrics of the card's tables, with their decimals.
TABLE_METRICS: dict[str, tuple[str, int]] = {
    "auroc": ("AUROC", 3),
    "auprc": ("AUPRC", 3),
    "sensitivity": ("Sens", 3),
    "specificity": ("Spec", 3),
    "mae": ("MAE", 2),
    "pearson_r": ("r", 3),
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")  # the Hub's form for `license_name`, e.g. "my-license-1.0"


class ModelFolderError(ValueError):
    """A model folder that cannot be published (the message names the path and what was expected)."""


class EvaluationTablesError(ValueError):
    """An evaluation folder without the tables `deepcoro evaluate` writes, or with tables in another layout."""


# --------------------------------------------------------------------------------------------------------------
# The model folder
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFolder:
    """A checked `save_pretrained` folder: its config and the files to upload (path in repo -> path on disk)."""

    path: Path
    config: dict
    files: dict[str, Path]

    @property
    def custom_pipelines(self) -> dict:
        return self.config.get("custom_pipelines") or {}


def read_model_folder(model_dir: str | Path) -> ModelFolder:
    """Check that `model_dir` is a publishable DeepCORO-CLIP folder and list its files.

    Required: `config.json` of a DeepCORO architecture with an `auto_map`, safetensors weights (one file or an index
    and all its shards), and every code file the `auto_map`, the processor configs and `custom_pipelines` point to
    (with the files those import), so the repository loads with `trust_remote_code=True`. Pickled weights are
    refused. Hidden files (`.git`, `.cache`, ...) and a `README.md` (replaced by the rendered card) are not uploaded;
    both are logged.
    """
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelFolderError(f"model folder {root} does not exist (expected a folder written by save_pretrained)")
    config_path = root / "config.json"
    if not config_path.is_file():
        raise ModelFolderError(f"{root} has no config.json: expected a folder written by save_pretrained")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{config_path} is not valid JSON: {err}") from err
    _architecture(config, config_path)

    files: dict[str, Path] = {}
    hidden = 0
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            hidden += path.is_file()
            continue
        if not path.is_file():
            continue
        if path.suffix.lower() in NON_SAFETENSORS_WEIGHTS:
            raise ModelFolderError(
                f"{path}: weights go to the Hub only as safetensors (loading pickled or other weight formats runs "
                "arbitrary code or needs other frameworks); remove the file, re-saving with save_pretrained if needed"
            )
        files[relative.as_posix()] = path
    if hidden:
        logger.warning("%d hidden file(s) under %s are not uploaded", hidden, root)
    if files.pop("README.md", None) is not None:
        logger.warning("%s is replaced by the rendered model card", root / "README.md")

    _check_weights(root, files)
    if not any(name in files for name in PROCESSOR_FILES):
        logger.warning(
            "%s has no processor config (%s): the card's examples load one", root, " / ".join(PROCESSOR_FILES)
        )
    _check_code_files(root, config, files)
    return ModelFolder(root, config, files)


def _architecture(config: dict, where: Path | str) -> str:
    names = [name for name in config.get("architectures") or [] if name in ARCHITECTURES]
    if config.get("model_type") not in (DeepCoroClipConfig.model_type, DeepCoroVideoConfig.model_type) or not names:
        raise ModelFolderError(
            f"{where}: not a DeepCORO-CLIP model (model_type {config.get('model_type')!r}, architectures "
            f"{config.get('architectures')}); expected one of {sorted(ARCHITECTURES)}"
        )
    return names[0]


def _check_weights(root: Path, files: dict[str, Path]) -> None:
    if WEIGHTS_NAME in files:
        return
    if WEIGHTS_INDEX_NAME not in files:
        raise ModelFolderError(f"{root} has no weights: expected {WEIGHTS_NAME} (or {WEIGHTS_INDEX_NAME} and shards)")
    try:
        shards = set(json.loads(files[WEIGHTS_INDEX_NAME].read_text(encoding="utf-8"))["weight_map"].values())
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError) as err:
        raise ModelFolderError(f"{root / WEIGHTS_INDEX_NAME} is not a safetensors index with a weight_map") from err
    missing = sorted(shard for shard in shards if shard not in files or not shard.endswith(".safetensors"))
    if missing:
        raise ModelFolderError(
            f"{root / WEIGHTS_INDEX_NAME} lists shards that are missing or not safetensors: {missing}"
        )


def _check_code_files(root: Path, config: dict, files: dict[str, Path]) -> None:
    """Every module named by an `auto_map` or a custom pipeline, and every module those import, must be uploaded."""
    if not config.get("auto_map"):
        raise ModelFolderError(
            f"{root / 'config.json'} has no auto_map: save the model with deepcoro_hf imported so the code files and "
            "auto_map are written (the Hub copy must load with trust_remote_code=True)"
        )
    references: list[tuple[str, str]] = [("config.json", ref) for ref in _class_references(config["auto_map"])]
    for name in PROCESSOR_FILES:
        if name in files:
            try:
                processor = json.loads(files[name].read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ModelFolderError(f"{files[name]} is not valid JSON: {err}") from err
            references += [(name, ref) for ref in _class_references(processor.get("auto_map") or {})]
    references += [
        ("config.json custom_pipelines", spec["impl"])
        for spec in (config.get("custom_pipelines") or {}).values()
        if isinstance(spec, dict) and "impl" in spec
    ]
    # "other/repo--module.Class" points to code in another repository: nothing to upload for it.
    pending = {(source, ref.rsplit(".", 1)[0] + ".py") for source, ref in references if "--" not in ref}
    seen: set[str] = set()
    while pending:
        source, module_file = pending.pop()
        if module_file in seen:
            continue
        seen.add(module_file)
        if module_file not in files:
            raise ModelFolderError(f"{root / module_file} is missing: {source} refers to it (remote code)")
        pending |= {(module_file, f"{name}.py") for name in get_relative_imports(str(files[module_file]))}


def _class_references(auto_map: dict) -> list[str]:
    """`module.Class` strings of an auto_map (tokenizer entries are `[slow, fast]` pairs, either may be null)."""
    refs = []
    for value in auto_map.values():
        refs += [v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, str)]
    return refs


def _count_parameters(files: dict[str, Path]) -> int:
    """Number of values stored in the safetensors weights (read from the headers; no tensor is loaded)."""
    total = 0
    for name, path in files.items():
        if name.endswith(".safetensors") and "/" not in name:
            with safe_open(str(path), framework="pt") as weights:
                total += sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())
    return total


# --------------------------------------------------------------------------------------------------------------
# Evaluation tables
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluationTables:
    """The CSV tables of one `deepcoro evaluate` run (long layout: one row per scope, task and metric)."""

    directory: Path
    territories: pd.DataFrame | None = None
    study: pd.DataFrame | None = None
    segments: pd.DataFrame | None = None
    """The per-segment Extended Tables 9-12, concatenated."""

    @property
    def n_resamples(self) -> int:
        frames = [f for f in (self.territories, self.study, self.segments) if f is not None]
        return int(max(frame["n_resamples"].max() for frame in frames))


def read_evaluation_tables(eval_dir: str | Path) -> EvaluationTables:
    """Read the tables `deepcoro evaluate` wrote to `eval_dir`.

    The model-index comes from `table_2_territories.csv` (micro-averages of the segment tasks) and/or
    `study_level_tasks.csv` (MACE, LVEF, ...): at least one must be there. The per-segment Extended Tables 9-12
    are optional and feed the card's per-segment table.
    """
    directory = Path(eval_dir)
    if not directory.is_dir():
        raise EvaluationTablesError(f"evaluation folder {directory} does not exist")

    def read(name: str) -> pd.DataFrame | None:
        path = directory / name
        if not path.is_file():
            return None
        try:
            frame = pd.read_csv(path, dtype={"scope": str, "task": str, "metric": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise EvaluationTablesError(f"{path} is not a readable CSV table: {err}") from err
        missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
        if missing:
            raise EvaluationTablesError(
                f"{path} lacks the columns {missing}: expected the long layout written by deepcoro evaluate "
                f"({', '.join(TABLE_COLUMNS)}, ...)"
            )
        if frame.empty:
            raise EvaluationTablesError(f"{path} has no rows")
        try:
            frame["value"] = pd.to_numeric(frame["value"], errors="raise")
        except (ValueError, TypeError) as err:
            raise EvaluationTablesError(f"{path}: column 'value' is not numeric ({err})") from err
        return frame

    territories, study = read(TERRITORY_TABLE), read(STUDY_TABLE)
    if territories is None and study is None:
        raise EvaluationTablesError(
            f"{directory} holds neither {TERRITORY_TABLE} nor {STUDY_TABLE}: expected the output folder of "
            "deepcoro evaluate for a segment classifier"
        )
    segment_frames = [frame for frame in map(read, SEGMENT_TABLES) if frame is not None]
    segments = pd.concat(segment_frames, ignore_index=True) if segment_frames else None
    return EvaluationTables(directory, territories, study, segments)


def _metric(frame: pd.DataFrame, scope: str, task: str, metric: str) -> pd.Series | None:
    rows = frame[(frame["scope"] == scope) & (frame["task"] == task) & (frame["metric"] == metric)]
    return rows.iloc[0] if len(rows) else None


def _task_name(task: str) -> str:
    return TASK_DISPLAY_NAMES.get(task, task)


def _tasks(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["task"]))


def evaluation_results(
    tables: EvaluationTables, *, task_type: str, dataset_id: str, dataset_name: str, split: str
) -> list[EvalResult]:
    """`model-index` entries: AUROC and AUPRC of binary tasks, MAE and Pearson r of regression tasks, for the Global /
    LCA / RCA micro-averages and the study-level tasks. Undefined (NaN) values are left out and logged."""
    rows: list[tuple[str, pd.Series]] = []
    if tables.territories is not None:
        for task in _tasks(tables.territories):
            for scope in MICRO_SCOPES:
                for metric in INDEX_METRICS:
                    row = _metric(tables.territories, scope, task, metric)
                    if row is not None:
                        where = "Global micro-average" if scope == "Global" else f"{scope} micro-average"
                        rows.append((f"{_task_name(task)} {INDEX_METRICS[metric][1]} ({where})", row))
    if tables.study is not None:
        for task in _tasks(tables.study):
            for metric in INDEX_METRICS:
                row = _metric(tables.study, "study", task, metric)
                if row is not None:
                    rows.append((f"{_task_name(task)} {INDEX_METRICS[metric][1]}", row))
    results, undefined = [], 0
    for name, row in rows:
        if math.isnan(row["value"]):
            undefined += 1
            continue
        results.append(
            EvalResult(
                task_type=task_type,
                task_name="Coronary angiography study assessment",
                dataset_type=dataset_id,
                dataset_name=dataset_name,
                dataset_split=split,
                metric_type=INDEX_METRICS[row["metric"]][0],
                metric_name=name,
                metric_value=round(float(row["value"]), 4),
            )
        )
    if undefined:
        logger.warning("%d undefined (NaN) metrics of %s are left out of the model-index", undefined, tables.directory)
    if not results:
        raise EvaluationTablesError(f"{tables.directory}: the tables hold no AUROC, AUPRC, MAE or Pearson r value")
    return results


def _cell(row: pd.Series | None, decimals: int, interval: bool = True) -> str:
    if row is None or math.isnan(row["value"]):
        return "N/A"
    text = f"{row['value']:.{decimals}f}"
    if interval and not (math.isnan(row["ci_low"]) or math.isnan(row["ci_high"])):
        text += f" ({row['ci_low']:.{decimals}f}–{row['ci_high']:.{decimals}f})"
    return text


def _count_cell(frame: pd.DataFrame, scope: str, task: str) -> str:
    total, positive = _metric(frame, scope, task, "n"), _metric(frame, scope, task, "n_positive")
    if total is None:
        return ""
    return f"{positive['value']:,.0f}/{total['value']:,.0f}" if positive is not None else f"{total['value']:,.0f}"


def territory_table(frame: pd.DataFrame) -> str:
    """Table 2 layout: a row per task and metric, a column per micro-average (Global, LCA, RCA), "value (CI)" cells."""
    records = []
    for task in _tasks(frame):
        binary = any(_metric(frame, scope, task, "n_positive") is not None for scope in MICRO_SCOPES)
        lines = [("n (positive/total)" if binary else "n", [_count_cell(frame, scope, task) for scope in MICRO_SCOPES])]
        for metric, (label, decimals) in TABLE_METRICS.items():
            cells = [_metric(frame, scope, task, metric) for scope in MICRO_SCOPES]
            if any(cell is not None for cell in cells):
                lines.append((label, [_cell(cell, decimals) for cell in cells]))
        records += [[_task_name(task) if i == 0 else "", label, *cells] for i, (label, cells) in enumerate(lines)]
    return frame_markdown(pd.DataFrame(records, columns=["Task", "Metric", "Global (All)", *MICRO_SCOPES[1:]]))


def segment_table(frame: pd.DataFrame) -> str:
    """Extended Tables 9-12 in one: a row per segment, point estimates of MAE / r (regression) and AUROC (binary)."""
    columns: list[tuple[str, str]] = []
    order = list(TASK_DISPLAY_NAMES)  # the vocabulary's task order, not the order of the table files
    for task in sorted(_tasks(frame), key=lambda t: order.index(t) if t in order else len(order)):
        metrics = [m for m in ("mae", "pearson_r", "auroc") if (frame[frame["task"] == task]["metric"] == m).any()]
        columns += [(task, metric) for metric in metrics]
    records = []
    for segment in SEGMENTS:
        if not (frame["scope"] == segment.key).any():
            continue
        cells = [_cell(_metric(frame, segment.key, task, metric), TABLE_METRICS[metric][1], interval=False)
                 for task, metric in columns]
        records.append([f"{segment.name} ({segment.syntax})", *cells])
    header = ["Segment (SYNTAX)", *[f"{_task_name(task)} {TABLE_METRICS[metric][0]}" for task, metric in columns]]
    return frame_markdown(pd.DataFrame(records, columns=header))


def study_table(frame: pd.DataFrame) -> str:
    """Study-level tasks: a row per task; binary and regression metrics side by side, "value (CI)" cells."""
    records = []
    for task in _tasks(frame):
        cells = []
        for metric, (_, decimals) in TABLE_METRICS.items():
            row = _metric(frame, "study", task, metric)
            cells.append("" if row is None else _cell(row, decimals))
        records.append([_task_name(task), _count_cell(frame, "study", task), *cells])
    header = ["Task", "n (positive/total)", *[label for label, _ in TABLE_METRICS.values()]]
    return frame_markdown(pd.DataFrame(records, columns=header))


# --------------------------------------------------------------------------------------------------------------
# The model card
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ModelFacts:
    """What the card says about a model, whether it comes from a folder or from memory."""

    config: PreTrainedConfig
    architecture: str
    num_parameters: int
    name_or_path: str = ""
    custom_pipelines: dict = field(default_factory=dict)


def _facts(model: str | Path | ModelFolder | PreTrainedModel) -> _ModelFacts:
    if isinstance(model, PreTrainedModel):
        architecture = _architecture(
            {"model_type": model.config.model_type, "architectures": [type(model).__name__]}, type(model).__name__
        )
        return _ModelFacts(
            model.config,
            architecture,
            sum(tensor.numel() for tensor in model.state_dict().values()),
            str(model.config.name_or_path or ""),  # what from_pretrained loaded it from
            dict(getattr(model.config, "custom_pipelines", None) or {}),
        )
    folder = model if isinstance(model, ModelFolder) else read_model_folder(model)
    architecture = _architecture(folder.config, folder.path / "config.json")
    is_video = folder.config["model_type"] == DeepCoroVideoConfig.model_type
    config_class = DeepCoroVideoConfig if is_video else DeepCoroClipConfig
    try:
        config = config_class.from_dict(folder.config)
    except (ValueError, TypeError, StrictDataclassError) as err:
        raise ModelFolderError(f"{folder.path / 'config.json'} is not a valid {config_class.__name__}: {err}") from err
    return _ModelFacts(
        config,
        architecture,
        _count_parameters(folder.files),
        str(folder.config.get("_name_or_path") or ""),
        dict(folder.custom_pipelines),
    )


def _format_count(n: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)


def _license_text(license: str, license_name: str | None, license_link: str | None) -> str:
    if license != "other":
        return f"The weights are released under `{license}`."
    if license_name:
        link = f" ({license_link})" if license_link else ""
        return f"The weights are released under a custom license, `{license_name}`{link}."
    return (
        "The uploader has not named a license for these weights (`license: other`): ask them before any reuse. The "
        "published DeepCORO-CLIP weights are distributed by their authors under their own terms."
    )


def _video_facts(config: DeepCoroVideoConfig) -> dict:
    return {
        "num_blocks": config.num_blocks,
        "num_stages": len(config.depths),
        "hidden_sizes": ", ".join(str(size) for size in config.hidden_sizes),
        "num_frames": config.num_frames,
        "image_size": config.image_size,
        "num_tokens": config.num_tokens,
        "hidden_size": config.hidden_size,
    }


def render_model_card(
    model: str | Path | ModelFolder | PreTrainedModel,
    *,
    repo_id: str,
    eval_dir: str | Path | None = None,
    license: str = "other",
    license_name: str | None = None,
    license_link: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | tuple[str, ...] = (),
    tags: list[str] | tuple[str, ...] = (),
    training_data: str | None = None,
    eval_dataset: str | None = None,
    eval_dataset_name: str | None = None,
    eval_split: str = "test",
) -> ModelCard:
    """The model card (`README.md`) of a DeepCORO-CLIP model, rendered from `modeling_cards/model_card.md`.

    Args:
        model: a folder written by `save_pretrained` (or its checked `ModelFolder`), or the model itself (e.g. to
            publish with `model.push_to_hub`).
        repo_id: the repository the card describes (used in the examples and as the model-index name).
        eval_dir: output folder of `deepcoro evaluate`; fills the model-index and the results tables.
        license: Hub license id of the weights. The default, "other", with no `license_name`, states on the card
            that no license was named; use e.g. "cc-by-nc-4.0", or "other" with `license_name` / `license_link`.
        base_model: Hub id of the checkpoint this model was fine-tuned from. Defaults to the model's `name_or_path`
            when that is a Hub id (e.g. the CLIP checkpoint a classifier was loaded from) other than `repo_id`.
        datasets: Hub ids of the training datasets.
        tags: tags added to the DeepCORO ones.
        training_data: a description of this checkpoint's training data (e.g. "synthetic phantoms from
            `deepcoro phantoms`"); without it the card says the uploader did not describe it.
        eval_dataset, eval_dataset_name, eval_split: the evaluation data in the model-index: Hub-style id (defaults
            to the first of `datasets`), display name (defaults to the id) and split.
    """
    facts = _facts(model)
    kind, pipeline_tag, kind_tags = ARCHITECTURES[facts.architecture]
    if license != "other" and (license_name or license_link):
        raise ValueError(
            f"license_name / license_link describe a custom license: use them with license='other', not {license!r}"
        )
    if license_name is not None and not _LICENSE_ID.match(license_name):
        raise ValueError(
            f"license_name must be an id such as 'my-license-1.0' (lowercase, digits, '-', '.'), got {license_name!r}"
        )
    if base_model is None and _REPO_ID.match(facts.name_or_path) and facts.name_or_path != repo_id:
        if not Path(facts.name_or_path).exists():
            base_model = facts.name_or_path

    evaluation, eval_results = None, None
    if eval_dir is not None:
        eval_dataset = eval_dataset or (datasets[0] if datasets else None)
        if not eval_dataset:
            raise ValueError("the model-index needs the evaluation dataset: pass eval_dataset (or datasets)")
        tables = read_evaluation_tables(eval_dir)
        eval_results = evaluation_results(
            tables, task_type=pipeline_tag, dataset_id=eval_dataset, dataset_name=eval_dataset_name or eval_dataset,
            split=eval_split,
        )
        evaluation = {
            "dataset_name": eval_dataset_name or eval_dataset,
            "split": eval_split,
            "interval_note": (
                f"Intervals in parentheses: percentile bootstrap over patients, {tables.n_resamples:,} resamples."
                if tables.n_resamples else "No bootstrap intervals were computed."
            ),
            "territory_table": territory_table(tables.territories) if tables.territories is not None else "",
            "segment_table": segment_table(tables.segments) if tables.segments is not None else "",
            "study_table": study_table(tables.study) if tables.study is not None else "",
        }

    card_data = ModelCardData(
        license=license,
        license_name=license_name,
        license_link=license_link,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=[*BASE_TAGS, *kind_tags, *tags],
        base_model=base_model,
        datasets=list(datasets) or None,
        metrics=sorted({result.metric_type for result in eval_results}) if eval_results else None,
        model_name=repo_id.split("/")[-1] if eval_results else None,  # the model-index's name
        eval_results=eval_results,
    )
    config = facts.config
    variables: dict = {
        "repo_id": repo_id,
        "model_name": repo_id.split("/")[-1],
        "kind": kind,
        "architecture": facts.architecture,
        "num_parameters": _format_count(facts.num_parameters),
        "num_syntax_segments": len(SEGMENTS),
        "base_model": base_model,
        "pipelines": [{"task": task, "impl": spec.get("impl", "")} for task, spec in facts.custom_pipelines.items()],
        "license_text": _license_text(license, license_name, license_link),
        "training_data": training_data or "The uploader did not describe the data this checkpoint was trained on.",
        "evaluation": evaluation,
    }
    if kind == "video":
        variables |= {"video": _video_facts(config), "max_videos": DeepCoroClipConfig().max_videos}
    else:
        variables |= {
            "video": _video_facts(config.video_config),
            "text": {
                "num_hidden_layers": config.text_config.num_hidden_layers,
                "hidden_size": config.text_config.hidden_size,
            },
            "projection_dim": config.projection_dim,
            "loss_type": config.loss_type,
            "max_videos": config.max_videos,
            "mil_pooling": config.mil_pooling,
            "heads": [{"name": t, "display": _task_name(t), "type": config.task_types[t]} for t in config.tasks],
            "segments": [
                {"key": key, "name": SEGMENT_BY_KEY[key].name, "syntax": SEGMENT_BY_KEY[key].syntax,
                 "territory": SEGMENT_BY_KEY[key].territory}
                for key in config.segments
            ],
        }
    variables["summary"] = _summary(kind, variables)
    return ModelCard.from_template(card_data, template_path=str(CARD_TEMPLATE), **variables)


def _summary(kind: str, variables: dict) -> str:
    if kind == "classifier":
        tasks = ", ".join(head["display"] for head in variables["heads"])
        where = f"each of {len(variables['segments'])} coronary segments" if variables["segments"] else "the study"
        return (
            "A DeepCORO-CLIP study classifier for X-ray coronary angiography: it reads up to "
            f"{variables['max_videos']} videos of one study and predicts, for {where}: {tasks}."
        )
    if kind == "clip":
        return (
            "The DeepCORO-CLIP video-text model for X-ray coronary angiography: it embeds angiography videos (or whole "
            "studies) and report text in one space, for retrieval, zero-shot assessment and fine-tuning."
        )
    return "The MViT-v2 video tower of DeepCORO-CLIP: angiography videos in, spatio-temporal tokens out."


# --------------------------------------------------------------------------------------------------------------
# Upload
# --------------------------------------------------------------------------------------------------------------
def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    **card_options,
) -> CommitInfo:
    """Upload a `save_pretrained` folder and its rendered model card to `repo_id` in one commit.

    The repository is created if needed (`private` applies only then). `token` and `endpoint` default to
    huggingface_hub's (`HF_TOKEN` or `hf auth login`; `HF_ENDPOINT` or huggingface.co). `card_options` are the
    keyword arguments of `render_model_card` (`eval_dir`, `license`, `base_model`, `datasets`, ...). Returns the
    commit (its `commit_url`, `oid`).
    """
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"repo_id must be 'namespace/name' (the card's examples use it), got {repo_id!r}")
    folder = read_model_folder(model_dir)
    card = render_model_card(folder, repo_id=repo_id, **card_options)  # before creating anything on the Hub
    api = HfApi(endpoint=endpoint, token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in folder.files.items()
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")))
    architecture = _architecture(folder.config, folder.path / "config.json")
    commit = api.create_commit(
        repo.repo_id,
        operations,
        commit_message=commit_message or f"Upload {architecture} with its model card",
        repo_type="model",
    )
    logger.info("uploaded %d files and README.md to %s", len(folder.files), commit.commit_url)
    return commit


# --------------------------------------------------------------------------------------------------------------
# `deepcoro push`
# --------------------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="folder written by save_pretrained (model + processor)")
    parser.add_argument("repo_id", help="Hub repository, e.g. my-org/deepcoro-clip-stenosis")
    parser.add_argument(
        "--eval-dir", type=Path, help="output folder of `deepcoro evaluate`: model-index and results tables"
    )
    parser.add_argument("--eval-dataset", help="Hub-style id of the evaluation data (default: the first --dataset)")
    parser.add_argument("--eval-dataset-name", help="display name of the evaluation data (default: its id)")
    parser.add_argument("--eval-split", default="test", help="split the evaluation tables come from (default: test)")
    parser.add_argument(
        "--dataset", action="append", default=[], dest="datasets", help="training dataset id (repeatable)"
    )
    parser.add_argument("--base-model", help="Hub id of the checkpoint this model was fine-tuned from")
    parser.add_argument(
        "--license", default="other", help="Hub license id of the weights (default: other, i.e. not named on the card)"
    )
    parser.add_argument("--license-name", help="name of a custom license (with --license other)")
    parser.add_argument("--license-link", help="link to a custom license (with --license other)")
    parser.add_argument("--tag", action="append", default=[], dest="tags", help="extra card tag (repeatable)")
    parser.add_argument("--training-data", help="one-paragraph description of the training data for the card")
    parser.add_argument("--private", action="store_true", default=None, help="create the repository as private")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the one saved by `hf auth login`)")
    parser.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument(
        "--commit-message", help="commit message (default: 'Upload <architecture> with its model card')"
    )


def run(args: argparse.Namespace) -> int:
    commit = push_to_hub(
        args.model_dir,
        args.repo_id,
        private=args.private,
        token=args.token,
        endpoint=args.endpoint,
        commit_message=args.commit_message,
        eval_dir=args.eval_dir,
        license=args.license,
        license_name=args.license_name,
        license_link=args.license_link,
        base_model=args.base_model,
        datasets=args.datasets,
        tags=args.tags,
        training_data=args.training_data,
        eval_dataset=args.eval_dataset,
        eval_dataset_name=args.eval_dataset_name,
        eval_split=args.eval_split,
    )
    print(commit.commit_url)
    return 0


__all__ = [
    "EvaluationTables",
    "EvaluationTablesError",
    "ModelFolder",
    "ModelFolderError",
    "evaluation_results",
    "push_to_hub",
    "read_evaluation_tables",
    "read_model_folder",
    "render_model_card",
]
