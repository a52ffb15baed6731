"""`transformers.pipeline` tasks of DeepCORO-CLIP: study analysis, zero-shot classification and embeddings.

This file is Hub remote code. `save_pipeline_folder` copies it (with the sibling modules it imports) next to the
weights and lists its tasks under `custom_pipelines` in `config.json`, so that

    pipe = transformers.pipeline(model="path/to/folder", trust_remote_code=True)

works offline in a process that never imports `deepcoro_hf`. It therefore imports only the standard library, numpy,
torch, transformers and its sibling modules: `.vocabulary` for the report, `.dicom` and `.video_processing_deepcoro`
to tell which files are videos (the video processor saved in the folder reads them).

Tasks (registered with `PIPELINE_REGISTRY` when `deepcoro_hf` is imported):

- `coronary-study-analysis` ([`CoronaryStudyAnalysisPipeline`], a `DeepCoroForSegmentClassification`): per segment,
  stenosis % and the probabilities of stenosis >= 70 %, calcification, CTO and thrombus, with a flag at the decision
  threshold; or the study-level tasks (MACE, LVEF...) of a model without a segment axis. Also the videos analysed
  (file name, view, fps, attention weight), the files left out and the template report.
- `coronary-zero-shot-classification` ([`CoronaryZeroShotPipeline`], a `DeepCoroClipModel` and its tokenizer): scores
  of a study or video against text prompts.
- `coronary-feature-extraction` ([`CoronaryFeatureExtractionPipeline`], either model): study and video embeddings,
  or text embeddings.

Inputs, for every task: a study folder (every file under it, recursively: files that are not readable videos, such as
a README, a `.DS_Store` or a corrupt DICOM, are skipped and listed), a single DICOM / AVI / MP4 file (a one-video
study), a video array (`[T, H, W]`, `[T, H, W, C]` or `[T, C, H, W]`, 0-255), or a dict `{"videos": [...]}` whose
list holds the videos of one study (paths or arrays; an optional `"study_id"` names it). A plain list is a batch of
studies, as everywhere in transformers, never the videos of one study.

Privacy: outputs name videos by file name (or `videos[i]` for arrays), never by their full path (which often holds a
patient ID), and carry no patient attribute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Pipeline
from transformers.dynamic_module_utils import custom_object_save

from .dicom import is_dicom
from .video_processing_deepcoro import CONTAINER_SUFFIXES, DICOM_SUFFIXES
from .vocabulary import SEGMENT_BY_KEY, prediction_report, zero_shot_prompts


STUDY_ANALYSIS = "coronary-study-analysis"
ZERO_SHOT = "coronary-zero-shot-classification"
FEATURE_EXTRACTION = "coronary-feature-extraction"

DEFAULT_THRESHOLD = 0.5
"""Decision threshold on the binary heads' probabilities: the released model's default (the paper's tables use
per-segment optimal thresholds instead; pass `threshold=` to use one)."""


class StudyInputError(ValueError):
    """A pipeline input that is not a study: a missing path, an empty folder, a dict without videos, or a study in
    which no video could be read. The message names the study and what was expected."""


# ----------------------------------------------------------------------------------------------------------------------
# Studies: inputs to video lists, processor outputs to plain records
# ----------------------------------------------------------------------------------------------------------------------
def study_videos(study: Any) -> tuple[str | None, list]:
    """(study id, videos) of one pipeline input: a folder (its name, every file under it, sorted), a file (its name,
    itself), an array (no id, itself) or `{"videos": [...], "study_id": ...}`."""
    if isinstance(study, Mapping):
        if "videos" not in study:
            raise StudyInputError(
                "a study given as a dict needs a 'videos' entry, e.g. {'videos': [path, ...]}; got keys "
                f"{sorted(study)}"
            )
        videos = study["videos"]
        videos = list(videos) if isinstance(videos, (list, tuple)) else [videos]
        if not videos:
            raise StudyInputError("the study's 'videos' list is empty; expected at least one video")
        study_id = study.get("study_id")
        return (None if study_id is None else str(study_id)), videos
    if isinstance(study, (str, os.PathLike)):
        path = Path(study)
        if path.is_dir():
            files = sorted(str(p) for p in path.rglob("*") if p.is_file())
            if not files:
                raise StudyInputError(f"study folder {path.name} holds no files; expected the DICOM cines of one study")
            return path.name, files
        if path.is_file():
            return path.name, [str(path)]
        raise StudyInputError(f"{os.fspath(study)}: no such study folder or video file")
    if isinstance(study, (np.ndarray, torch.Tensor)):
        return None, [study]
    raise StudyInputError(
        f"got a {type(study).__name__}; expected a study folder, a video file, a video array or "
        "{'videos': [path or array, ...]} (a list is a batch of studies)"
    )


def _key(item: Any, index: int) -> str:
    """How the video processor names an input (its path, or `studies[0][i]`), normalised like its metadata."""
    if isinstance(item, (str, os.PathLike)):
        return str(Path(item))
    filename = getattr(item, "filename", None)  # a pydicom Dataset read from a file
    return str(Path(filename)) if isinstance(filename, str) else f"studies[0][{index}]"


def _display_name(item: Any, index: int) -> str:
    """What outputs call an input: its file name only (folders often carry a patient ID), or `videos[i]`."""
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name
    filename = getattr(item, "filename", None)
    return Path(filename).name if isinstance(filename, str) else f"videos[{index}]"


def _is_video_file(item: Any) -> bool:
    """Whether the video processor would try to read `item` (anything but a file that is neither DICOM nor a video
    container is left to the processor, which raises its own error for it)."""
    if not isinstance(item, (str, os.PathLike)) or not Path(item).is_file():
        return True
    suffix = Path(item).suffix.lower()
    return suffix in DICOM_SUFFIXES or suffix in CONTAINER_SUFFIXES or is_dicom(item)


def _redact(message: str, videos: list) -> str:
    """An error message with every input path replaced by its file name."""
    for item in videos:
        if isinstance(item, (str, os.PathLike)):
            message = message.replace(os.fspath(item), Path(item).name).replace(str(Path(item)), Path(item).name)
    return message


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


class _DeepCoroPipeline(Pipeline):
    """What the three tasks share: reading one study with the video processor into tensors plus a plain record
    (study id, videos, skipped files), batching studies, and keeping the model in eval mode. Each task defines
    `_check_model`, which refuses a model it cannot run with a clear error."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = True
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.video_processor is None and self.processor is not None:
            self.video_processor = getattr(self.processor, "video_processor", None)
        if self.video_processor is None:
            raise ValueError(
                f"{type(self).__name__} needs the model's video processor: pass video_processor= (or processor=), or "
                "load a folder written by save_pipeline_folder"
            )
        self._check_model()
        # `pipeline(model=<instance>)` leaves the model as it was; dropout and stochastic depth must be off.
        self.model.eval()

    def read_study(self, study: Any) -> tuple[dict[str, torch.Tensor], dict]:
        """Process one study: `pixel_values_videos` `[1, N, T, C, H, W]` and `video_mask` `[1, N]` (padded to the
        model's `max_videos`), and its record: id, StudyInstanceUID, videos analysed, files left out."""
        study_id, given = study_videos(study)
        # Files that are not videos (a README, .DS_Store...) are listed here rather than passed on: past max_videos the
        # processor stops reading, and would report them as left over instead of as not being videos.
        kept = [(i, item) for i, item in enumerate(given) if _is_video_file(item)]
        skipped = [
            (i, f"UnsupportedVideoError: {_display_name(item, i)}: not a DICOM file (no 'DICM' marker) and not a video "
             f"file ({', '.join(CONTAINER_SUFFIXES)})")
            for i, item in enumerate(given) if not _is_video_file(item)
        ]
        if not kept:
            raise StudyInputError(
                f"study {study_id or 'given'}: none of its {len(given)} files is a DICOM or video file; expected the "
                "DICOM cines of one study"
            )
        videos = [item for _, item in kept]
        max_videos = self.model.config.max_videos
        try:
            batch = self.video_processor(
                studies=[videos], return_tensors="pt", return_metadata=True, skip_invalid=True, max_videos=max_videos
            )
        except (ValueError, OSError) as err:  # e.g. no readable video at all
            message = _redact(str(err), videos).replace("studies[0]: ", "")
            raise StudyInputError(f"study {study_id or 'given'}: {message}") from err
        metadata = batch["video_metadata"][0]
        # Position in `given` of each input, under the name the processor gives it (path, or studies[0][j]).
        position = {_key(item, j): i for j, (i, item) in enumerate(kept)}

        def index_of(source: str) -> int:
            return position[str(Path(source))]

        skipped += [(index_of(s.source), _redact(s.reason, videos)) for s in batch.get("skipped", [])]
        used = {index_of(info.source) for info in metadata} | {i for i, _ in skipped}
        # The processor keeps the first `max_videos` in acquisition order; the others are listed, not dropped silently.
        skipped += [
            (i, f"beyond max_videos={max_videos}: the study has more videos than the model takes; the first "
             f"{max_videos} in acquisition order were analysed")
            for i, _ in kept if i not in used
        ]
        uids = sorted({info.study_uid for info in metadata if getattr(info, "study_uid", None)})
        if len(uids) > 1:
            raise StudyInputError(
                f"study {study_id or 'given'} mixes videos of {len(uids)} studies (StudyInstanceUID "
                f"{', '.join(uids)}); pass one folder per study"
            )
        record = {
            "study_id": study_id or (uids[0] if uids else None),
            "study_uid": uids[0] if uids else None,
            "videos": [
                {
                    "source": _display_name(given[index_of(info.source)], index_of(info.source)),
                    "view": getattr(info, "view", None),
                    "fps": _number(info.fps),
                    "num_frames": info.total_num_frames,
                }
                for info in metadata
            ],
            "skipped": [
                {"source": _display_name(given[i], i), "reason": reason}
                for i, reason in sorted(skipped, key=lambda entry: entry[0])
            ],
        }
        tensors = {"pixel_values_videos": batch["pixel_values_videos"], "video_mask": batch["video_mask"]}
        return tensors, record

    # Batching. transformers' default collate pads with a tokenizer or feature extractor, which these pipelines do
    # not have; studies are already padded to `max_videos`, so tensors concatenate and records gather in a list.
    @staticmethod
    def collate(items: list[dict]) -> dict:
        """Stack preprocessed studies into one model batch (what `batch_size > 1` runs)."""
        keys = set(items[0])
        if any(set(item) != keys for item in items):
            raise ValueError("cannot batch studies with texts; use batch_size=1 for a mix of studies and texts")
        batch = {}
        for key in items[0]:
            values = [item[key] for item in items]
            if key == "shared":  # the same for every item of a call (e.g. tokenised prompts)
                batch[key] = values[0]
            elif isinstance(values[0], torch.Tensor):
                batch[key] = torch.cat(values)
            else:
                batch[key] = [value for item_values in values for value in item_values]
        return batch

    @staticmethod
    def unbatch(outputs: dict, index: int) -> dict:
        """Outputs of study `index` of a batch, shaped like the outputs of a batch of one."""
        return {
            key: value[index : index + 1] if isinstance(value, (torch.Tensor, list)) else value
            for key, value in outputs.items()
        }

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        if batch_size == 1:
            return super().get_iterator(
                inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
            )
        return self._batches(inputs, batch_size, preprocess_params, forward_params, postprocess_params)

    def _batches(self, inputs, batch_size, preprocess_params, forward_params, postprocess_params):
        chunk = []
        for item in inputs:
            chunk.append(self.preprocess(item, **preprocess_params))
            if len(chunk) == batch_size:
                yield from self._run_batch(chunk, forward_params, postprocess_params)
                chunk = []
        if chunk:
            yield from self._run_batch(chunk, forward_params, postprocess_params)

    def _run_batch(self, chunk, forward_params, postprocess_params):
        outputs = self.forward(self.collate(chunk), **forward_params)
        for index in range(len(chunk)):
            yield self.postprocess(self.unbatch(outputs, index), **postprocess_params)


# ----------------------------------------------------------------------------------------------------------------------
# Study analysis
# ----------------------------------------------------------------------------------------------------------------------
class CoronaryStudyAnalysisPipeline(_DeepCoroPipeline):
    """Segment-level (or study-level) assessment of one angiography study by a `DeepCoroForSegmentClassification`.

    `pipe(study, threshold=0.5)` returns a dict:

    - `study_id`: the given id, else the folder or file name, else the StudyInstanceUID; `study_uid`;
    - `threshold`: the decision threshold used for the flags;
    - `segments` (models with a segment axis): one dict per segment of `config.segments`, in that order, with its
      key, display name, SYNTAX number, territory, one value per task of `config.tasks` (regression in label units,
      e.g. stenosis %; binary tasks as probabilities), `findings` (binary tasks with probability >= threshold) and
      `flagged` (any finding);
    - `study_tasks` (study-level models, `config.segments` empty): task -> value, plus `findings` and `flagged`;
    - `videos`: per analysed video, its file name, view, fps, frame count and the across-video attention weights
      (`cls_attention`, `gated_attention`: shares of the study summing to 1, None when the head has no such pooling);
    - `skipped`: files left out, with the reason;
    - `report`: the template report (see `vocabulary.prediction_report`).
    """

    def _check_model(self) -> None:
        if not hasattr(self.model, "heads") or not hasattr(self.model.config, "tasks"):
            raise ValueError(
                f"{STUDY_ANALYSIS} needs a DeepCoroForSegmentClassification, got {type(self.model).__name__}; use "
                f"{ZERO_SHOT} or {FEATURE_EXTRACTION} for a CLIP model"
            )

    def _sanitize_parameters(self, threshold: float | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)} for {STUDY_ANALYSIS}; it takes threshold=")
        postprocess = {}
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold must be a probability between 0 and 1, got {threshold!r}")
            postprocess["threshold"] = float(threshold)
        return {}, {}, postprocess

    def preprocess(self, inputs: Any) -> dict:
        tensors, record = self.read_study(inputs)
        return {**tensors, "studies": [record]}

    def _forward(self, model_inputs: dict) -> dict:
        outputs = self.model(
            pixel_values_videos=model_inputs["pixel_values_videos"], video_mask=model_inputs["video_mask"]
        )
        return {
            "logits": outputs.logits,
            "cls_attention_weights": outputs.cls_attention_weights,
            "gated_attention_weights": outputs.gated_attention_weights,
            "video_mask": model_inputs["video_mask"],
            "studies": model_inputs["studies"],
        }

    def postprocess(self, model_outputs: dict, threshold: float = DEFAULT_THRESHOLD) -> dict:
        config = self.model.config
        record = model_outputs["studies"][0]
        logits = model_outputs["logits"][0].float()  # [segments (1 for study-level tasks), tasks]
        values = torch.stack(
            [
                logits[:, k] if config.task_types[task] == "regression" else logits[:, k].sigmoid()
                for k, task in enumerate(config.tasks)
            ],
            dim=-1,
        ).tolist()
        binary = [task for task in config.tasks if config.task_types[task] == "binary"]

        def assess(row: list[float]) -> dict:
            outputs = dict(zip(config.tasks, row))
            findings = [task for task in binary if outputs[task] >= threshold]
            return {**outputs, "findings": findings, "flagged": bool(findings)}

        mask = model_outputs["video_mask"][0]
        attention = {}
        for name, key in (("cls_attention", "cls_attention_weights"), ("gated_attention", "gated_attention_weights")):
            weights = model_outputs.get(key)
            attention[name] = [None] * int(mask.sum()) if weights is None else weights[0][mask].float().tolist()
        videos = [
            {**video, **{name: weights[i] for name, weights in attention.items()}}
            for i, video in enumerate(record["videos"])
        ]
        result = {"study_id": record["study_id"], "study_uid": record["study_uid"], "threshold": threshold}
        if config.segments:
            result["segments"] = [
                {
                    "segment": key,
                    "name": SEGMENT_BY_KEY[key].name,
                    "syntax": SEGMENT_BY_KEY[key].syntax,
                    "territory": SEGMENT_BY_KEY[key].territory,
                    **assess(row),
                }
                for key, row in zip(config.segments, values)
            ]
        else:
            result["study_tasks"] = assess(values[0])
        result["videos"] = videos
        result["skipped"] = record["skipped"]
        segments = {entry["segment"]: {t: entry[t] for t in config.tasks} for entry in result.get("segments", [])}
        study_tasks = {task: (config.task_types[task], value) for task, value in zip(config.tasks, values[0])}
        result["report"] = prediction_report(
            segments,
            threshold,
            study_tasks=None if config.segments else study_tasks,
            views=[video["view"] or "unknown view" for video in videos],
            # "README.txt (UnsupportedVideoError)": the reason up to its first colon (error class, or max_videos).
            not_analysed=[f"{item['source']} ({item['reason'].split(':')[0]})" for item in record["skipped"]],
        )
        return result


# ----------------------------------------------------------------------------------------------------------------------
# Zero-shot classification
# ----------------------------------------------------------------------------------------------------------------------
class CoronaryZeroShotPipeline(_DeepCoroPipeline):
    """Scores of a study (or one video) against text prompts, with a `DeepCoroClipModel` and its tokenizer.

    `pipe(study, candidate_labels=[...], hypothesis_template="{}")` scores each label's prompt
    (`hypothesis_template.format(label)`); `pipe(study, segment="mid_lad")` scores the vocabulary's findings of that
    segment (`vocabulary.zero_shot_prompts`: normal, mild, moderate, severe, CTO, thrombus, calcification), each an
    ensemble of prompt templates (mean of their normalised text embeddings).

    The study embedding is the mean of its videos' embeddings (`get_video_features`), the logits are the model's
    `similarity` (cosine / temperature, plus the learned bias of a SigLIP model). Scores are the softmax over the
    labels for a CLIP / InfoNCE model, and independent sigmoids for a SigLIP model (`config.loss_type == "siglip"`),
    which was trained to score each pair on its own. Returns `{"study_id", "study_uid", "labels", "scores", "logits",
    "videos", "skipped"}`, labels sorted by decreasing score.
    """

    _load_tokenizer = True

    def _check_model(self) -> None:
        if not hasattr(self.model, "get_text_features") or not hasattr(self.model, "similarity"):
            raise ValueError(f"{ZERO_SHOT} needs a DeepCoroClipModel, got {type(self.model).__name__}")
        if self.tokenizer is None:
            raise ValueError(f"{ZERO_SHOT} needs the text tower's tokenizer: pass tokenizer= (or processor=)")

    def _sanitize_parameters(
        self,
        candidate_labels: list[str] | str | None = None,
        hypothesis_template: str | None = None,
        segment: str | None = None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(
                f"unexpected arguments {sorted(kwargs)} for {ZERO_SHOT}; it takes candidate_labels=, "
                "hypothesis_template= or segment="
            )
        preprocess = {}
        if candidate_labels is not None:
            preprocess["candidate_labels"] = candidate_labels
        if hypothesis_template is not None:
            preprocess["hypothesis_template"] = hypothesis_template
        if segment is not None:
            preprocess["segment"] = segment
        return preprocess, {}, {}

    def prompts(
        self,
        candidate_labels: list[str] | str | None = None,
        hypothesis_template: str = "{}",
        segment: str | None = None,
    ) -> tuple[list[str], list[str], list[int]]:
        """(labels, prompts, label index of each prompt) for the arguments of a call."""
        if candidate_labels is not None:
            if isinstance(candidate_labels, str):  # "a, b, c", as transformers' zero-shot pipelines take
                candidate_labels = [label.strip() for label in candidate_labels.split(",")]
            labels = list(candidate_labels)
            if not labels or any(not isinstance(label, str) or not label for label in labels):
                raise ValueError(f"candidate_labels must be non-empty strings, got {candidate_labels!r}")
            if "{}" not in hypothesis_template:
                raise ValueError(
                    f"hypothesis_template must contain '{{}}' where the label goes, got {hypothesis_template!r}"
                )
            return labels, [hypothesis_template.format(label) for label in labels], list(range(len(labels)))
        if segment is None:
            raise ValueError(
                "pass candidate_labels=[...] (with an optional hypothesis_template='The mid LAD has {}.'), or "
                "segment='mid_lad' to score that segment's findings"
            )
        if segment not in SEGMENT_BY_KEY:
            raise ValueError(f"unknown segment {segment!r}; expected one of {list(SEGMENT_BY_KEY)}")
        labels, prompts, index = [], [], []
        for finding, sentences in zero_shot_prompts(segment).items():
            labels.append(finding)
            prompts.extend(sentences)
            index.extend([len(labels) - 1] * len(sentences))
        return labels, prompts, index

    def preprocess(self, inputs: Any, candidate_labels=None, hypothesis_template: str = "{}", segment=None) -> dict:
        labels, prompts, index = self.prompts(candidate_labels, hypothesis_template, segment)
        tensors, record = self.read_study(inputs)
        max_length = min(512, self.model.config.text_config.max_position_embeddings)
        text = self.tokenizer(prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        shared = {"text": dict(text), "prompt_label": torch.tensor(index), "labels": labels}
        return {**tensors, "studies": [record], "shared": shared}

    def _forward(self, model_inputs: dict) -> dict:
        shared = model_inputs["shared"]
        study = F.normalize(
            self.model.get_video_features(model_inputs["pixel_values_videos"], model_inputs["video_mask"]), dim=-1
        )
        prompts = F.normalize(self.model.get_text_features(**shared["text"]), dim=-1)
        # Prompt ensembles: the mean of a label's normalised prompt embeddings, normalised again (as CLIP does).
        index = shared["prompt_label"].to(prompts.device)
        labels = torch.zeros(len(shared["labels"]), prompts.shape[1], dtype=prompts.dtype, device=prompts.device)
        labels = labels.index_add(0, index, prompts)
        return {"logits": self.model.similarity(study, F.normalize(labels, dim=-1)), "studies": model_inputs["studies"],
                "labels": [shared["labels"]] * study.shape[0]}

    def postprocess(self, model_outputs: dict) -> dict:
        record = model_outputs["studies"][0]
        labels = model_outputs["labels"][0]
        logits = model_outputs["logits"][0].float()
        scores = logits.sigmoid() if self.model.config.loss_type == "siglip" else logits.softmax(-1)
        order = scores.argsort(descending=True).tolist()
        return {
            "study_id": record["study_id"],
            "study_uid": record["study_uid"],
            "labels": [labels[i] for i in order],
            "scores": [float(scores[i]) for i in order],
            "logits": [float(logits[i]) for i in order],
            "videos": record["videos"],
            "skipped": record["skipped"],
        }


# ----------------------------------------------------------------------------------------------------------------------
# Feature extraction
# ----------------------------------------------------------------------------------------------------------------------
class CoronaryFeatureExtractionPipeline(_DeepCoroPipeline):
    """Embeddings of a study, its videos, or report texts.

    - A `DeepCoroClipModel`: per-video embeddings (`get_video_features`: mean of the projected tokens) and the study
      embedding (their mean over the study's videos, what `get_video_features(study, video_mask)` computes); texts
      given as `{"text": "..." or [...]}` get `get_text_features` (the tokenizer is then needed).
    - A `DeepCoroForSegmentClassification`: the study embedding its heads read (`study_embeds`, the multi-instance
      pooled vector); no per-video embedding.

    `normalize=True` L2-normalises the embeddings (the model's raw features otherwise); `return_tensors=True` gives
    torch tensors instead of lists. Returns `{"study_id", "study_uid", "study_embedding", "video_embeddings" (None for
    the classifier), "videos", "skipped"}`, or `{"text", "text_embeddings"}` for texts.
    """

    _load_tokenizer = None  # optional: only text inputs need it

    def _check_model(self) -> None:
        if not hasattr(self.model, "get_video_features") and not hasattr(self.model, "heads"):
            raise ValueError(
                f"{FEATURE_EXTRACTION} needs a DeepCoroClipModel or DeepCoroForSegmentClassification, got "
                f"{type(self.model).__name__}"
            )

    def _sanitize_parameters(self, normalize: bool | None = None, return_tensors: bool | None = None, **kwargs):
        if kwargs:
            raise TypeError(
                f"unexpected arguments {sorted(kwargs)} for {FEATURE_EXTRACTION}; it takes normalize= and "
                "return_tensors="
            )
        postprocess = {}
        if normalize is not None:
            postprocess["normalize"] = bool(normalize)
        if return_tensors is not None:
            postprocess["return_tensors"] = bool(return_tensors)
        return {}, {}, postprocess

    def preprocess(self, inputs: Any) -> dict:
        if isinstance(inputs, Mapping) and "text" in inputs:
            if not hasattr(self.model, "get_text_features"):
                raise ValueError(f"text embeddings need a DeepCoroClipModel, got {type(self.model).__name__}")
            if self.tokenizer is None:
                raise ValueError("text embeddings need the text tower's tokenizer: pass tokenizer= (or processor=)")
            texts = [inputs["text"]] if isinstance(inputs["text"], str) else list(inputs["text"])
            if not texts or any(not isinstance(text, str) for text in texts):
                raise ValueError(f"'text' must be a string or a list of strings, got {inputs['text']!r}")
            max_length = min(512, self.model.config.text_config.max_position_embeddings)
            encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            return {"text_inputs": [dict(encoded)], "texts": [texts]}
        tensors, record = self.read_study(inputs)
        return {**tensors, "studies": [record]}

    def _forward(self, model_inputs: dict) -> dict:
        if "texts" in model_inputs:
            embeds = [self.model.get_text_features(**encoded) for encoded in model_inputs["text_inputs"]]
            return {"texts": model_inputs["texts"], "text_embeddings": embeds}
        pixels, mask = model_inputs["pixel_values_videos"], model_inputs["video_mask"]
        if not hasattr(self.model, "get_video_features"):  # the segment classifier
            study = self.model(pixel_values_videos=pixels, video_mask=mask).study_embeds
            return {"study_embeddings": study, "video_mask": mask, "studies": model_inputs["studies"]}
        videos = self.model.get_video_features(pixels[mask.bool()])
        # The study embedding as `get_video_features(pixels, mask)` computes it (masked mean over the padded layout),
        # from the same per-video embeddings instead of a second pass through the video tower.
        padded = videos.new_zeros(*mask.shape, videos.shape[-1])
        padded[mask.bool()] = videos
        weights = mask.to(videos.dtype).unsqueeze(-1)
        study = (padded * weights).sum(1) / weights.sum(1)
        return {
            "study_embeddings": study,
            "video_embeddings": padded,
            "video_mask": mask,
            "studies": model_inputs["studies"],
        }

    def postprocess(self, model_outputs: dict, normalize: bool = False, return_tensors: bool = False) -> dict:
        def finish(embeds: torch.Tensor):
            embeds = embeds.float()
            embeds = F.normalize(embeds, dim=-1) if normalize else embeds
            return embeds if return_tensors else embeds.tolist()

        if "texts" in model_outputs:
            return {"text": model_outputs["texts"][0], "text_embeddings": finish(model_outputs["text_embeddings"][0])}
        record = model_outputs["studies"][0]
        mask = model_outputs["video_mask"][0].bool()
        videos = model_outputs.get("video_embeddings")
        return {
            "study_id": record["study_id"],
            "study_uid": record["study_uid"],
            "study_embedding": finish(model_outputs["study_embeddings"][0]),
            "video_embeddings": None if videos is None else finish(videos[0][mask]),
            "videos": record["videos"],
            "skipped": record["skipped"],
        }


# ----------------------------------------------------------------------------------------------------------------------
# Registration and saving
# ----------------------------------------------------------------------------------------------------------------------
PIPELINES: dict[str, tuple[type[Pipeline], str]] = {
    STUDY_ANALYSIS: (CoronaryStudyAnalysisPipeline, "video"),
    ZERO_SHOT: (CoronaryZeroShotPipeline, "multimodal"),
    FEATURE_EXTRACTION: (CoronaryFeatureExtractionPipeline, "multimodal"),
}
"""task -> (pipeline class, modality type recorded in `custom_pipelines`)."""


def register_pipelines() -> None:
    """Register the three tasks with transformers' `PIPELINE_REGISTRY` (what `import deepcoro_hf` does), so that
    `pipeline("coronary-study-analysis", model=...)` works in this process without remote code."""
    from transformers import AutoModel, AutoModelForVideoClassification
    from transformers.pipelines import PIPELINE_REGISTRY

    # The registry records one model class per task; in a saved folder the entry names the folder's own class.
    models = {STUDY_ANALYSIS: AutoModelForVideoClassification, ZERO_SHOT: AutoModel, FEATURE_EXTRACTION: AutoModel}
    for task, (pipeline_class, modality) in PIPELINES.items():
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is pipeline_class:
            continue
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=models[task], type=modality)


def _is_classifier(model) -> bool:
    return hasattr(model, "heads") and not hasattr(model, "get_text_features")


def save_pipeline_folder(
    model, processor, save_directory: str | os.PathLike, tasks: list[str] | None = None
) -> list[str]:
    """Write `model`, its processor and the custom pipeline registration into one folder that
    `transformers.pipeline(model=folder, trust_remote_code=True)` loads offline without `deepcoro_hf`.

    `processor` is the model's `DeepCoroVideoProcessor`, or a `DeepCoroProcessor` (video processor + tokenizer, which
    zero-shot and text embeddings need). `tasks` defaults to the one task of a segment classifier
    (`coronary-study-analysis`, so `pipeline()` infers it) and, for a CLIP model, to zero-shot classification (with a
    tokenizer) and feature extraction (then pass `task=` to `pipeline`). The registration lists the folder's own Auto
    class (`AutoModelForVideoClassification` for the classifier, `AutoModel` for CLIP), so a classifier folder that
    also registers feature extraction loads the classifier for it. Returns the tasks registered.
    """
    classifier = _is_classifier(model)
    has_tokenizer = getattr(processor, "tokenizer", None) is not None
    if tasks is None:
        tasks = [STUDY_ANALYSIS] if classifier else ([ZERO_SHOT] if has_tokenizer else []) + [FEATURE_EXTRACTION]
    tasks = list(tasks)
    unknown = [task for task in tasks if task not in PIPELINES]
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty list of {list(PIPELINES)}, got {tasks}")
    if classifier and ZERO_SHOT in tasks:
        raise ValueError(f"{ZERO_SHOT} needs a DeepCoroClipModel; {type(model).__name__} has no text tower")
    if not classifier and STUDY_ANALYSIS in tasks:
        raise ValueError(f"{STUDY_ANALYSIS} needs a DeepCoroForSegmentClassification, got {type(model).__name__}")
    if ZERO_SHOT in tasks and not has_tokenizer:
        raise ValueError(f"{ZERO_SHOT} needs the tokenizer: pass a DeepCoroProcessor (video processor + tokenizer)")
    if getattr(model, "_auto_class", None) is None:
        raise ValueError(
            f"{type(model).__name__} is not registered for remote code (import deepcoro_hf before saving), so the "
            "folder would not load without the package"
        )
    auto_class = "AutoModelForVideoClassification" if classifier else "AutoModel"
    module = Path(__file__).stem
    registration = {
        task: {"impl": f"{module}.{PIPELINES[task][0].__name__}", "pt": [auto_class], "type": PIPELINES[task][1]}
        for task in tasks
    }
    previous = getattr(model.config, "custom_pipelines", None)
    model.config.custom_pipelines = registration
    try:
        model.save_pretrained(save_directory)
    finally:  # the registration belongs to this folder, not to the model's later saves
        if previous is None:
            del model.config.custom_pipelines
        else:
            model.config.custom_pipelines = previous
    processor.save_pretrained(save_directory)
    custom_object_save(CoronaryStudyAnalysisPipeline, save_directory)  # this file and vocabulary.py
    return tasks


__all__ = [
    "DEFAULT_THRESHOLD",
    "FEATURE_EXTRACTION",
    "PIPELINES",
    "STUDY_ANALYSIS",
    "ZERO_SHOT",
    "CoronaryFeatureExtractionPipeline",
    "CoronaryStudyAnalysisPipeline",
    "CoronaryZeroShotPipeline",
    "StudyInputError",
    "register_pipelines",
    "save_pipeline_folder",
    "study_videos",
]
