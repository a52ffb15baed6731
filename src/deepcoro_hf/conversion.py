"""Convert the original DeepCORO-CLIP research checkpoints into Hugging Face folders of this package.

The research code (HeartWise-AI/DeepCORO_CLIP; reference-implementation.md §7) saves pickled dicts of two kinds:

- a **CLIP** checkpoint: `video_encoder` and `text_encoder` state dicts, the temperature τ under
  `train/temperature`, and training state → [`DeepCoroClipModel`];
- a fine-tuned **probe** checkpoint: `linear_probing`, the state dict of the video encoder (`video_encoder.*`) and of
  the multi-instance head (`mil_model.module.*`), plus training state → [`DeepCoroForSegmentClassification`].

Conversion is strict. Every entry of the checkpoint becomes a model weight or is listed as dropped with the reason it
has no counterpart, and every model weight must come from the checkpoint; anything else fails with the keys named.
What a state dict cannot tell — pooling settings the original code hard-wired whatever its YAML said — follows the
facts of reference-implementation.md (§4, "Critical for loading the released weights") and is recorded in the
report's notes.

Checkpoints are read with `torch.load(weights_only=True)`. A file that also pickles Python objects (numpy scalars in
the metric entries, for instance) is refused unless the caller opts in with `allow_pickle=True` / `--allow-pickle`,
because unpickling can execute code.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, PreTrainedModel
from transformers.initialization import no_init_weights

from .configuration_deepcoro import TASK_TYPES, DeepCoroClipConfig, DeepCoroVideoConfig
from .modeling_deepcoro import DeepCoroClipModel, DeepCoroForSegmentClassification, convert_torchvision_key
from .processing_deepcoro import DeepCoroProcessor
from .video_processing_deepcoro import STENOSIS_MEAN, STENOSIS_STD, DeepCoroVideoProcessor
from .vocabulary import LVEF_TASKS, MACE_TASKS, SEGMENT_KEYS, SEGMENT_TASKS

logger = logging.getLogger(__name__)

KINDS = ("auto", "clip", "probe")

ORIGINAL_MIL_NUM_HEADS = 8
"""Heads of the original CLS attention. `LinearProbingProject` never passes the YAML's `num_attention_heads`, so every
released head used the constructor default (reference-implementation.md §4); the state dict cannot tell."""

TEMPERATURE_KEY = "train/temperature"
"""Where a CLIP checkpoint stores τ itself (not log τ)."""

# Top-level entries of a checkpoint that are training state rather than weights.
TRAINING_STATE_KEYS = (
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "best_val_loss",
    "best_epoch",
    "highest_alignment_score",
    "highest_alignment_epoch",
)
METRIC_PREFIXES = ("train/", "val/", "test/")

# Why a key is dropped. Each is printed once with the keys it covers.
REASON_TRAINING_STATE = "training state of the run (optimizer, scheduler, AMP scaler, epoch and best-model counters)"
REASON_METRIC = "metric logged by the training run"
REASON_AGGREGATOR_CLIP = (
    "the original encoder's study aggregator (transformer + query attention over per-video vectors); "
    "DeepCoroClipModel pools a study by the mean over its valid videos instead, so it has no counterpart"
)
REASON_AGGREGATOR_PROBE = (
    "the original encoder's study aggregator, built but never called by the probe, whose MIL head reads the "
    "patch tokens (aggregate_videos_tokens=False, per_video_pool=False)"
)
REASON_ATTENTION_POOL_CLIP = (
    "the original's per-video attention pooling, which fed only the dropped aggregator; DeepCoroClipModel "
    "mean-pools the tokens of each video"
)
REASON_ATTENTION_POOL_PROBE = "the original's per-video attention pooling, unused when the MIL head reads patch tokens"
REASON_VIDEO_CLS = "a [1, 1, 768] token the original registers with use_cls_token but never uses in its forward"
REASON_TORCHVISION_HEAD = "torchvision's Kinetics classifier, replaced by Identity in the original encoder"
REASON_BERT_BUFFER = "a BERT buffer (position / token-type ids) that the model rebuilds; not a weight"
REASON_BERT_POOLER = "the BERT pooler: the original pools the [CLS] hidden state directly and never calls it"

# (original prefix, our prefix): a name ending in "." is a prefix, any other an exact key.
_VIDEO_RULES = (("video_encoder.proj.1.", "video_projection.linear."),)
_TEXT_RULES = (("text_encoder.bert.", "text_model."), ("text_encoder.proj.1.", "text_projection.linear."))
_MIL_RULES = (
    ("cls_token", "mil.cls_token"),
    ("cls_attention_within.", "mil.within_video_attention."),
    ("cls_attention_across.", "mil.across_video_attention."),
    ("cls_norm_within.", "mil.within_video_norm."),
    ("cls_norm_across.", "mil.across_video_norm."),
    ("cls_attention.", "mil.video_attention."),
    ("cls_norm.", "mil.video_norm."),
    ("attention_V.", "mil.attention_value."),
    ("attention_U.", "mil.attention_gate."),
    ("attention_w.", "mil.attention_score."),
)
# The inverse of modeling_deepcoro's torchvision rules, only to name missing weights the way the checkpoint spells them.
_TORCHVISION_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.patch_embeddings\.", "conv_proj."),
    (r"^embeddings\.cls_token$", "pos_encoding.class_token"),
    (r"^encoder\.layers\.(\d+)\.attention\.proj\.", r"blocks.\1.attn.project.0."),
    (r"^encoder\.layers\.(\d+)\.attention\.pool_([qkv])\.conv\.", r"blocks.\1.attn.pool_\2.pool."),
    (r"^encoder\.layers\.(\d+)\.attention\.pool_([qkv])\.norm\.", r"blocks.\1.attn.pool_\2.norm_act.0."),
    (r"^encoder\.layers\.(\d+)\.attention\.(qkv\.|rel_pos_[thw]$)", r"blocks.\1.attn.\2"),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc1\.", r"blocks.\1.mlp.0."),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc2\.", r"blocks.\1.mlp.3."),
    (r"^encoder\.layers\.(\d+)\.proj\.", r"blocks.\1.project."),
    (r"^encoder\.layers\.(\d+)\.(norm[12])\.", r"blocks.\1.\2."),
    (r"^layernorm\.", "norm."),
)


class CheckpointConversionError(ValueError):
    """An original checkpoint that cannot be converted; the message names the file and the offending keys."""


class PickledCheckpointError(CheckpointConversionError):
    """A checkpoint that pickles Python objects besides tensors, refused without `allow_pickle`."""


@dataclass
class ConversionReport:
    """What a conversion did, for the user to check: counts, every dropped key with its reason, and the assumptions."""

    kind: str
    """`"clip"` or `"probe"`."""
    model_class: str
    checkpoint: str
    output_dir: str | None = None
    converted: int = 0
    """Checkpoint tensors consumed into model weights (the probe's per-segment heads are stacked, so this can exceed
    `num_weights`)."""
    num_weights: int = 0
    """Weight tensors of the converted model, all filled from the checkpoint."""
    dropped: dict[str, list[str]] = field(default_factory=dict)
    """Reason → checkpoint keys dropped for it."""
    temperature: float | None = None
    """τ read from the checkpoint (CLIP); `None` when absent (the config default is then used)."""
    notes: list[str] = field(default_factory=list)

    @property
    def num_dropped(self) -> int:
        return sum(len(keys) for keys in self.dropped.values())

    def summary(self) -> str:
        """The multi-line report the CLI prints."""
        target = f" -> {self.output_dir}" if self.output_dir else ""
        lines = [
            f"converted {self.checkpoint} ({self.kind} checkpoint){target} as {self.model_class}",
            f"  converted: {self.converted} checkpoint tensors into {self.num_weights} model weights",
            f"  dropped: {self.num_dropped} checkpoint entries",
        ]
        for reason, keys in self.dropped.items():
            lines.append(f"    {len(keys)} x {_abbreviate(keys, 3)}")
            lines.append(f"      reason: {reason}")
        if self.notes:
            lines.append("  notes:")
            lines.extend(f"    - {note}" for note in self.notes)
        return "\n".join(lines)


def _abbreviate(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} ... ({len(keys) - limit} more)"


# ----------------------------------------------------------------------------------------------------------------------
# Reading the pickle
# ----------------------------------------------------------------------------------------------------------------------
def load_original_checkpoint(path: str | Path, allow_pickle: bool = False) -> dict:
    """Read an original checkpoint as plain tensors and containers (`torch.load(weights_only=True)`).

    When the file pickles other Python objects this raises [`PickledCheckpointError`], unless `allow_pickle` is set:
    then it is loaded with `weights_only=False` and a warning is logged, since unpickling can execute code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*$", str(err).split("Check the documentation")[0], re.S)
        reason = f"e.g. {found.group(1)}" if found else " ".join((detail.group(1) if detail else str(err)).split())
        if not allow_pickle and not found:  # garbage, or a pickle using opcodes the weights-only reader lacks
            raise CheckpointConversionError(
                f"{path} is not a checkpoint torch.load(weights_only=True) can read ({reason}); expected a file written "
                "by torch.save. If it is a pickle from a source you trust, --allow-pickle (allow_pickle=True) reads it"
            ) from err
        if not allow_pickle:
            raise PickledCheckpointError(
                f"{path} pickles Python objects besides tensors ({reason}), so it cannot be read as plain weights "
                "with torch.load(weights_only=True). Unpickling it can execute arbitrary code: if you trust where the "
                "file comes from, convert it with --allow-pickle (allow_pickle=True)"
            ) from err
        logger.warning(
            "loading %s with torch.load(weights_only=False) because --allow-pickle was given (%s): unpickling runs "
            "any code the file carries, so only do this for checkpoints from a trusted source",
            path,
            reason,
        )
        checkpoint = _load_or_explain(path, weights_only=False)
    except Exception as err:  # the unpickler fails on arbitrary bytes with any of IndexError, KeyError, EOFError, ...
        raise _unreadable(path, err) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointConversionError(
            f"{path} holds a {type(checkpoint).__name__}; an original DeepCORO-CLIP checkpoint is a dict "
            "(CLIP: video_encoder / text_encoder; probe: linear_probing)"
        )
    return checkpoint


def _load_or_explain(path: Path, weights_only: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # anything the unpickler raises: the file is unusable either way
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: Exception) -> CheckpointConversionError:
    return CheckpointConversionError(
        f"{path} is not a readable torch checkpoint ({type(err).__name__}: {err}); expected a file written by torch.save"
    )


def detect_kind(checkpoint: dict, kind: str = "auto", source: str = "checkpoint") -> str:
    """`"clip"` or `"probe"` from the top-level keys; with an explicit `kind`, check that the checkpoint is one."""
    if kind not in KINDS:
        raise CheckpointConversionError(f"kind must be one of {KINDS}, got {kind!r}")
    if "linear_probing" in checkpoint:
        found = "probe"
    elif {"video_encoder", "text_encoder"} <= set(checkpoint):
        found = "clip"
    else:
        raise CheckpointConversionError(
            f"{source} is not an original DeepCORO-CLIP checkpoint: top-level keys "
            f"{_abbreviate(sorted(map(str, checkpoint)))}; "
            "expected 'video_encoder' and 'text_encoder' (CLIP) or 'linear_probing' (fine-tuned probe)"
        )
    if kind != "auto" and kind != found:
        raise CheckpointConversionError(
            f"{source} is a {found} checkpoint, not a {kind} one (use --kind auto or {found})"
        )
    return found


# ----------------------------------------------------------------------------------------------------------------------
# Key bookkeeping
# ----------------------------------------------------------------------------------------------------------------------
class _Ledger:
    """Every checkpoint entry lands here once: as a model weight, as dropped (with a reason) or as unexpected."""

    def __init__(self, source: str):
        self.source = source
        self.weights: dict[str, torch.Tensor] = {}
        self.origin: dict[str, str] = {}  # our key -> the checkpoint key(s) it came from
        self.dropped: dict[str, list[str]] = {}
        self.unexpected: list[str] = []
        self.consumed = 0

    def put(self, key: str, tensor: object, original: str, count: int = 1) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointConversionError(
                f"{self.source}: {original} holds a {type(tensor).__name__}, expected a tensor"
            )
        if key in self.weights:
            raise CheckpointConversionError(
                f"{self.source}: {original} and {self.origin[key]} both map to {key} (the same weight saved twice, "
                "e.g. with and without a 'module.' prefix)"
            )
        self.weights[key] = tensor
        self.origin[key] = original
        self.consumed += count

    def drop(self, original: str, reason: str) -> None:
        self.dropped.setdefault(reason, []).append(original)

    def check_against(self, model_class: type[PreTrainedModel], config: DeepCoroClipConfig, original_name) -> None:
        """Compare with the weights `model_class(config)` has (built on the meta device: no memory, no init)."""
        with torch.device("meta"):
            expected = {k: v.shape for k, v in model_class(config).state_dict().items()}
        missing = sorted(set(expected) - set(self.weights))
        extra = sorted(set(self.weights) - set(expected))
        mismatched = sorted(
            f"{self.origin[k]} {list(self.weights[k].shape)} (model {k} expects {list(expected[k])})"
            for k in set(expected) & set(self.weights)
            if tuple(self.weights[k].shape) != tuple(expected[k])
        )
        problems = []
        if self.unexpected or extra:
            keys = sorted(self.unexpected) + [self.origin[k] for k in extra]
            problems.append(f"checkpoint keys with no counterpart in {model_class.__name__}: {_abbreviate(keys)}")
        if missing:
            problems.append(f"weights missing from the checkpoint: {_abbreviate([original_name(k) for k in missing])}")
        if mismatched:
            problems.append(f"shape mismatches: {_abbreviate(mismatched)}")
        if problems:
            raise CheckpointConversionError(
                f"{self.source} does not fit {model_class.__name__}: " + "; ".join(problems)
            )


def _apply_rules(key: str, rules: tuple[tuple[str, str], ...], reverse: bool = False) -> str | None:
    for original, ours in rules:
        source, target = (ours, original) if reverse else (original, ours)
        if source.endswith(".") and key.startswith(source):
            return target + key[len(source) :]
        if key == source:
            return target
    return None


def _torchvision_name(key: str) -> str:
    for pattern, replacement in _TORCHVISION_NAME_RULES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return key


def _original_name(key: str, video_prefix: str = "video_encoder.", mil_prefix: str = "mil_model.module.") -> str:
    """How the research checkpoint spells one of our weight names (for error messages)."""
    if key.startswith("video_model."):
        return f"{video_prefix}model." + _torchvision_name(key[len("video_model.") :])
    if key.startswith("video_projection.linear."):
        return f"{video_prefix}proj.1." + key[len("video_projection.linear.") :]
    if key == "similarity.log_temperature":
        return TEMPERATURE_KEY
    if key.startswith("mil."):
        return mil_prefix + (_apply_rules(key, _MIL_RULES, reverse=True) or key)
    return _apply_rules(key, _VIDEO_RULES + _TEXT_RULES, reverse=True) or key


def _split_top_level(checkpoint: dict, model_keys: tuple[str, ...], ledger: _Ledger) -> dict[str, object]:
    """Model entries by name; training state and metrics dropped; anything else unexpected."""
    entries = {}
    for key, value in checkpoint.items():
        if key in model_keys:
            if not isinstance(value, dict):
                raise CheckpointConversionError(
                    f"{ledger.source}: '{key}' holds a {type(value).__name__}, expected a state dict"
                )
            entries[key] = value
        elif key == TEMPERATURE_KEY and "text_encoder" in model_keys:
            entries[key] = value
        elif key in TRAINING_STATE_KEYS:
            ledger.drop(key, REASON_TRAINING_STATE)
        elif isinstance(key, str) and key.startswith(METRIC_PREFIXES):
            ledger.drop(key, REASON_METRIC)
        else:
            ledger.unexpected.append(str(key))
    return entries


def _convert_video_encoder(state: dict, prefix: str, ledger: _Ledger, kind: str) -> None:
    """`video_encoder` entries (`model.*` torchvision MViT, `proj.1.*`, aggregator, attention pool) → ours."""
    for key, tensor in state.items():
        name = f"{prefix}{key}"
        if key.startswith("model."):
            try:
                ours = convert_torchvision_key(key[len("model.") :])
            except KeyError:
                ledger.unexpected.append(name)
                continue
            if ours is None:
                ledger.drop(name, REASON_TORCHVISION_HEAD)
            else:
                ledger.put(f"video_model.{ours}", tensor, name)
        elif key.startswith("aggregator."):
            ledger.drop(name, REASON_AGGREGATOR_CLIP if kind == "clip" else REASON_AGGREGATOR_PROBE)
        elif key.startswith("attention_pool."):
            ledger.drop(name, REASON_ATTENTION_POOL_CLIP if kind == "clip" else REASON_ATTENTION_POOL_PROBE)
        elif key == "cls_token":
            ledger.drop(name, REASON_VIDEO_CLS)
        elif (ours := _apply_rules(f"video_encoder.{key}", _VIDEO_RULES)) is not None:
            ledger.put(ours, tensor, name)
        else:
            ledger.unexpected.append(name)


def _strip_module(key: str) -> str:
    return key.removeprefix("module.")


# ----------------------------------------------------------------------------------------------------------------------
# CLIP checkpoints
# ----------------------------------------------------------------------------------------------------------------------
def infer_text_config(bert_state: dict[str, torch.Tensor], source: str = "checkpoint") -> BertConfig:
    """A `BertConfig` read off the shapes of a `bert.*` state dict (prefix stripped).

    Shapes give the vocabulary, widths, depth and table sizes; the number of attention heads is not stored anywhere, so
    it is taken as hidden_size / 64 (BERT's and BiomedBERT's head width). Other settings are BertConfig's defaults,
    which are BiomedBERT-base's.
    """
    needed = {
        "word": "embeddings.word_embeddings.weight",
        "position": "embeddings.position_embeddings.weight",
        "token_type": "embeddings.token_type_embeddings.weight",
        "intermediate": "encoder.layer.0.intermediate.dense.weight",
    }
    absent = [f"text_encoder.bert.{key}" for key in needed.values() if key not in bert_state]
    if absent:
        raise CheckpointConversionError(f"{source}: cannot infer the text tower, missing {absent}; pass --text-config")
    hidden = bert_state[needed["word"]].shape[1]
    if hidden % 64:
        raise CheckpointConversionError(
            f"{source}: the text tower is {hidden} wide, not a multiple of 64, so its number of attention heads cannot "
            "be inferred; pass --text-config with its config.json"
        )
    layers = {int(m.group(1)) for key in bert_state if (m := re.match(r"encoder\.layer\.(\d+)\.", key))}
    return BertConfig(
        vocab_size=bert_state[needed["word"]].shape[0],
        hidden_size=hidden,
        num_hidden_layers=max(layers) + 1,
        num_attention_heads=hidden // 64,
        intermediate_size=bert_state[needed["intermediate"]].shape[0],
        max_position_embeddings=bert_state[needed["position"]].shape[0],
        type_vocab_size=bert_state[needed["token_type"]].shape[0],
    )


def _read_temperature(value: object, source: str) -> float:
    try:
        tau = float(value.item() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointConversionError(
            f"{source}: {TEMPERATURE_KEY} must be a number (τ), got {type(value).__name__}"
        ) from err
    if not (math.isfinite(tau) and tau > 0):
        raise CheckpointConversionError(f"{source}: {TEMPERATURE_KEY} must be a positive temperature τ, got {tau}")
    return tau


def _convert_clip(
    checkpoint: dict, source: str, video_config: DeepCoroVideoConfig, text_config: BertConfig | None
) -> tuple[DeepCoroClipModel, ConversionReport]:
    ledger = _Ledger(source)
    report = ConversionReport(kind="clip", model_class=DeepCoroClipModel.__name__, checkpoint=source)
    entries = _split_top_level(checkpoint, ("video_encoder", "text_encoder"), ledger)
    _convert_video_encoder(
        {_strip_module(k): v for k, v in entries["video_encoder"].items()}, "video_encoder.", ledger, "clip"
    )

    bert_state = {}
    for key, tensor in entries["text_encoder"].items():
        key = _strip_module(key)
        name = f"text_encoder.{key}"
        if key in ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids"):
            ledger.drop(name, REASON_BERT_BUFFER)
        elif key.startswith("bert.pooler."):
            ledger.drop(name, REASON_BERT_POOLER)
        elif (ours := _apply_rules(name, _TEXT_RULES)) is not None:
            ledger.put(ours, tensor, name)
            if key.startswith("bert."):
                bert_state[key[len("bert.") :]] = tensor
        else:
            ledger.unexpected.append(name)

    if text_config is None:
        text_config = infer_text_config(bert_state, source)
        report.notes.append(
            f"text config inferred from the state dict: vocab {text_config.vocab_size}, hidden "
            f"{text_config.hidden_size}, {text_config.num_hidden_layers} layers, "
            f"{text_config.num_attention_heads} heads "
            f"(assumed hidden/64), intermediate {text_config.intermediate_size}, {text_config.max_position_embeddings} "
            f"positions, {text_config.type_vocab_size} token types"
        )
    if "video_projection.linear.weight" not in ledger.weights:
        raise CheckpointConversionError(f"{source}: weights missing from the checkpoint: video_encoder.proj.1.weight")
    projection_dim = ledger.weights["video_projection.linear.weight"].shape[0]

    tau = None
    if TEMPERATURE_KEY in entries:
        tau = _read_temperature(entries[TEMPERATURE_KEY], source)
        report.notes.append(f"temperature τ = {tau:g} from {TEMPERATURE_KEY} (stored as log τ)")
    config = DeepCoroClipConfig(
        video_config=video_config,
        text_config=text_config,
        projection_dim=projection_dim,
        **({"temperature": tau} if tau is not None else {}),
    )
    if tau is None:
        logger.info("%s has no %s: using the config default τ = %g", source, TEMPERATURE_KEY, config.temperature)
        report.notes.append(f"no {TEMPERATURE_KEY} in the checkpoint: τ is the config default {config.temperature:g}")
    ledger.put(
        "similarity.log_temperature",
        torch.tensor(math.log(config.temperature)),
        TEMPERATURE_KEY,
        count=int(tau is not None),
    )
    report.temperature = tau
    report.notes.append(
        "video embeddings are the mean of the projected tokens over each video and over a study's valid videos; the "
        "original CLIP encoder passed per-video means through its (dropped) aggregator, so retrieval embeddings of "
        "the converted model are not the original's"
    )
    model = _build(DeepCoroClipModel, config, ledger, _original_name)
    _finish_report(report, ledger, model)
    return model, report


# ----------------------------------------------------------------------------------------------------------------------
# Probe checkpoints
# ----------------------------------------------------------------------------------------------------------------------
def _normalise_probe_key(key: str) -> str:
    """`module.`-prefixed variants (DDP wrappers around the whole probe or the MIL head) → `video_encoder.*` /
    `mil_model.*`."""
    key = _strip_module(key)
    for part in ("video_encoder.", "mil_model."):
        if key.startswith(f"{part}module."):
            return part + key[len(f"{part}module.") :]
    return key


def _split_head_name(name: str) -> tuple[str | None, str]:
    """`prox_rca_stenosis_binary` → (`prox_rca`, `stenosis_binary`); a study-level head → (None, name)."""
    matches = [segment for segment in SEGMENT_KEYS if name.startswith(f"{segment}_")]
    if not matches:
        return None, name
    segment = max(matches, key=len)
    return segment, name[len(segment) + 1 :]


def _head_grid(
    heads: dict[str, dict[str, object]], prefix: str, task_types: dict[str, str], ledger: _Ledger
) -> tuple[list[str], list[str], dict[str, str]]:
    """Read `config.segments` / `config.tasks` off the head names and stack the per-segment `Linear(in, 1)` heads into
    one `Linear(in, num_segments)` per task (rows in `segments` order)."""
    for name, params in heads.items():
        for part, tensor in params.items():
            original = f"{prefix}heads.{name}.{part}"
            if part not in ("weight", "bias"):
                ledger.unexpected.append(original)
            elif not isinstance(tensor, torch.Tensor):
                raise CheckpointConversionError(
                    f"{ledger.source}: {original} holds a {type(tensor).__name__}, expected a tensor"
                )
        width = params.get("weight")
        if isinstance(width, torch.Tensor) and (width.ndim != 2 or width.shape[0] != 1):
            raise CheckpointConversionError(
                f"{ledger.source}: {prefix}heads.{name}.weight has shape {list(width.shape)}; only single-output heads "
                "[1, in] convert (DeepCoroForSegmentClassification has one output per segment and task, no "
                "multi-class heads)"
            )

    absent = [
        f"{prefix}heads.{name}.{part}"
        for name, params in heads.items()
        for part in ("weight", "bias")
        if part not in params
    ]
    if absent:
        # A head without its bias is not the original's nn.Linear (bias=True); inventing zeros would change outputs.
        raise CheckpointConversionError(f"{ledger.source}: weights missing from the checkpoint: {_abbreviate(absent)}")
    widths = {name: params["weight"].shape[1] for name, params in heads.items()}
    if len(set(widths.values())) > 1:
        raise CheckpointConversionError(f"{ledger.source}: the heads read different feature widths: {widths}")
    bad_bias = sorted(f"{prefix}heads.{name}.bias" for name, params in heads.items() if params["bias"].numel() != 1)
    if bad_bias:
        raise CheckpointConversionError(f"{ledger.source}: single-output heads need one bias each: {bad_bias}")

    split = {name: _split_head_name(name) for name in heads}
    segment_heads = {name: st for name, st in split.items() if st[0] is not None}
    study_heads = [name for name, (segment, _) in split.items() if segment is None]
    if segment_heads and study_heads:
        raise CheckpointConversionError(
            f"{ledger.source}: the checkpoint mixes per-segment heads ({_abbreviate(sorted(segment_heads), 3)}) and "
            f"study-level heads ({_abbreviate(study_heads, 3)}); one model has either a segment axis or none"
        )
    if segment_heads:
        present = set(segment_heads.values())
        segments = [s for s in SEGMENT_KEYS if any(seg == s for seg, _ in present)]
        found_tasks = list(dict.fromkeys(task for _, task in segment_heads.values()))
        tasks = [t for t in SEGMENT_TASKS if t in found_tasks] + [t for t in found_tasks if t not in SEGMENT_TASKS]
        absent = [f"{s}_{t}" for s in segments for t in tasks if (s, t) not in present]
        if absent:
            raise CheckpointConversionError(
                f"{ledger.source}: the heads do not form a segments x tasks grid (segments {segments}, tasks {tasks}); "
                f"missing heads: {_abbreviate(absent)}"
            )
        names = {(s, t): f"{s}_{t}" for s in segments for t in tasks}
    else:
        segments, tasks = [], study_heads
        names = {(None, t): t for t in tasks}

    unknown = sorted(set(task_types) - set(tasks))
    if unknown:
        raise CheckpointConversionError(
            f"{ledger.source}: task types were given for {unknown}, which are not tasks of this checkpoint "
            f"(tasks: {tasks})"
        )
    known = {**SEGMENT_TASKS, **MACE_TASKS, **LVEF_TASKS}
    untyped = [t for t in tasks if t not in task_types and t not in known]
    if untyped:
        raise CheckpointConversionError(
            f"{ledger.source}: heads {untyped} are not tasks of the vocabulary, so their type is unknown; give "
            "each with --task-type NAME=binary|regression (task_types={NAME: TYPE})"
        )
    bad = {t: kind for t, kind in task_types.items() if kind not in TASK_TYPES}
    if bad:
        raise CheckpointConversionError(f"task types must be one of {TASK_TYPES}, got {bad}")

    for task in tasks:
        keys = [names[(s, task)] for s in (segments or [None])]
        origin = f"{prefix}heads.{{{','.join(keys)}}}" if len(keys) > 1 else f"{prefix}heads.{keys[0]}"
        ledger.put(f"heads.{task}.weight", torch.cat([heads[k]["weight"] for k in keys]), f"{origin}.weight", len(keys))
        ledger.put(
            f"heads.{task}.bias", torch.cat([heads[k]["bias"].reshape(-1) for k in keys]), f"{origin}.bias", len(keys)
        )
    return segments, tasks, {t: task_types.get(t, known.get(t)) for t in tasks}


def _convert_probe(
    checkpoint: dict, source: str, video_config: DeepCoroVideoConfig, task_types: dict[str, str]
) -> tuple[DeepCoroForSegmentClassification, ConversionReport]:
    ledger = _Ledger(source)
    report = ConversionReport(kind="probe", model_class=DeepCoroForSegmentClassification.__name__, checkpoint=source)
    state = _split_top_level(checkpoint, ("linear_probing",), ledger)["linear_probing"]

    # The spelling of each part's prefix in this file (e.g. "module.mil_model.") is kept for messages.
    parts: dict[str, dict[str, object]] = {"video_encoder.": {}, "mil_model.": {}}
    prefixes = {"video_encoder.": "video_encoder.", "mil_model.": "mil_model.module."}
    seen = set()
    for raw_key, tensor in state.items():
        raw_key = str(raw_key)
        key = _normalise_probe_key(raw_key)
        part = next((p for p in parts if key.startswith(p)), None)
        if part is None:
            ledger.unexpected.append(raw_key)
            continue
        key = key[len(part) :]
        if key in parts[part]:
            raise CheckpointConversionError(f"{source}: {raw_key} is saved twice (with and without a 'module.' prefix)")
        if part not in seen:
            prefixes[part] = raw_key[: len(raw_key) - len(key)]
            seen.add(part)
        parts[part][key] = tensor
    video_prefix, mil_prefix = prefixes["video_encoder."], prefixes["mil_model."]
    mil_state = parts["mil_model."]
    _convert_video_encoder(parts["video_encoder."], video_prefix, ledger, "probe")

    heads: dict[str, dict[str, object]] = {}
    for key, tensor in mil_state.items():
        if key.startswith("heads."):
            name, _, part = key[len("heads.") :].rpartition(".")
            heads.setdefault(name, {})[part] = tensor
        elif (ours := _apply_rules(key, _MIL_RULES)) is not None:
            ledger.put(ours, tensor, f"{mil_prefix}{key}")
        else:
            ledger.unexpected.append(f"{mil_prefix}{key}")
    if not heads:
        raise CheckpointConversionError(f"{source}: the checkpoint has no heads ({mil_prefix}heads.*)")
    segments, tasks, types = _head_grid(heads, mil_prefix, dict(task_types), ledger)

    weights = ledger.weights
    if "video_projection.linear.weight" not in weights:
        raise CheckpointConversionError(f"{source}: weights missing from the checkpoint: video_encoder.proj.1.weight")
    projection_dim = weights["video_projection.linear.weight"].shape[0]
    use_gated = any(k.startswith("mil.attention_") for k in weights)
    use_cls = any(k.startswith(("mil.cls_token", "mil.within_", "mil.across_", "mil.video_")) for k in weights)
    separate = any(k.startswith(("mil.within_", "mil.across_")) for k in weights)
    pooling = "+".join(mode for mode, used in (("attention", use_gated), ("cls_token", use_cls)) if used) or "mean"
    pooled_width = projection_dim * max(int(use_gated) + int(use_cls), 1)
    head_width = next(iter(heads.values())).get("weight")
    if isinstance(head_width, torch.Tensor) and head_width.shape[-1] != pooled_width:
        raise CheckpointConversionError(
            f"{source}: the heads read {head_width.shape[-1]} features, but '{pooling}' pooling of {projection_dim}-d "
            f"tokens gives {pooled_width}; the original's 'max' and 'mean+cls_token' pooling modes are not supported"
        )
    hidden = weights["mil.attention_value.weight"].shape[0] if "mil.attention_value.weight" in weights else None
    config = DeepCoroClipConfig(
        video_config=video_config,
        projection_dim=projection_dim,
        mil_pooling=pooling,
        mil_num_heads=ORIGINAL_MIL_NUM_HEADS,
        mil_separate_video_attention=separate or not use_cls,
        mil_normalization="post_norm",
        segments=segments,
        tasks=tasks,
        task_types=types,
        **({"mil_attention_hidden": hidden} if hidden is not None else {}),
    )
    shape = f"{len(segments)} segments x {len(tasks)} tasks" if segments else f"{len(tasks)} study-level tasks"
    report.notes.append(f"heads: {shape} ({', '.join(tasks)})")
    report.notes.append(
        f"MIL head: '{pooling}' pooling read from the weights; {ORIGINAL_MIL_NUM_HEADS} attention heads, "
        f"{'separate within/across' if separate else 'one shared'} CLS attention and post-norm, as the original code "
        "built it whatever its YAML said (not stored in the checkpoint)"
    )
    report.notes.append(
        "padding videos: the original passed an all-ones mask, so its zero-padded videos took part in the pooling; "
        "the converted model leaves them out (video_mask), so studies with fewer videos than max_videos get the "
        "predictions of their real videos only"
    )
    if not use_gated and not use_cls:
        report.notes.append(
            "no pooling weights: assumed the original's 'mean' pooling ('max' pooling has no weights either and "
            "would convert to the wrong model)"
        )
    model = _build(
        DeepCoroForSegmentClassification, config, ledger, lambda key: _original_name(key, video_prefix, mil_prefix)
    )
    _finish_report(report, ledger, model)
    return model, report


# ----------------------------------------------------------------------------------------------------------------------
# Building, saving, reporting
# ----------------------------------------------------------------------------------------------------------------------
def _build(model_class, config: DeepCoroClipConfig, ledger: _Ledger, original_name) -> PreTrainedModel:
    ledger.check_against(model_class, config, original_name)
    # Every weight is overwritten below and checked complete above, so the (slow) random init is skipped.
    with no_init_weights():
        model = model_class(config)
    model.load_state_dict(ledger.weights, strict=True)
    return model.eval()


def _finish_report(report: ConversionReport, ledger: _Ledger, model: PreTrainedModel) -> None:
    report.converted = ledger.consumed
    report.num_weights = len(model.state_dict())
    report.dropped = {reason: sorted(keys) for reason, keys in ledger.dropped.items()}


def build_model_from_original(
    checkpoint: dict,
    kind: str = "auto",
    *,
    video_config: DeepCoroVideoConfig | None = None,
    text_config: BertConfig | None = None,
    task_types: dict[str, str] | None = None,
    source: str = "checkpoint",
) -> tuple[DeepCoroClipModel | DeepCoroForSegmentClassification, ConversionReport]:
    """Convert a loaded original checkpoint dict into our model (in eval mode) and its report, without writing files.

    Args:
        checkpoint: the dict [`load_original_checkpoint`] returns.
        kind: `"clip"`, `"probe"` or `"auto"` (from the top-level keys).
        video_config: the MViT architecture; default torchvision's `mvit_v2_s`, the backbone of every released model.
        text_config: the text tower of a CLIP checkpoint; default inferred from the `bert.*` shapes.
        task_types: task name → `"binary"` / `"regression"` for probe heads outside the vocabulary.
        source: name of the checkpoint in messages.
    """
    kind = detect_kind(checkpoint, kind, source)
    video_config = video_config if video_config is not None else DeepCoroVideoConfig()
    if kind == "clip":
        if task_types:
            raise CheckpointConversionError(
                "task types apply to probe checkpoints only; a CLIP checkpoint has no heads"
            )
        return _convert_clip(checkpoint, source, video_config, text_config)
    if text_config is not None:
        raise CheckpointConversionError(
            "a text config applies to CLIP checkpoints only; a probe checkpoint has no text tower"
        )
    return _convert_probe(checkpoint, source, video_config, task_types or {})


def _read_text_config(folder: Path) -> BertConfig:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: no config.json for the text tower")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError) as err:
        raise CheckpointConversionError(f"{config_file} is not a JSON config object: {err}") from err
    if model_type != "bert":
        raise CheckpointConversionError(f"{config_file} describes a {model_type!r} model; the text tower is a BERT")
    return BertConfig.from_pretrained(folder)


def _check_normalisation(mean: float, std: float) -> None:
    if not (math.isfinite(mean) and 0 <= mean <= 255):
        raise CheckpointConversionError(f"mean must be a pixel value in 0-255 units, got {mean}")
    if not (math.isfinite(std) and std > 0):
        raise CheckpointConversionError(f"std must be positive (0-255 units), got {std}")


def build_processor(
    config: DeepCoroClipConfig, mean: float = STENOSIS_MEAN, std: float = STENOSIS_STD, tokenizer=None
) -> DeepCoroVideoProcessor | DeepCoroProcessor:
    """The processor that goes with a converted model: the video processor (frames, size and study length from the
    config, scalar mean / std in 0-255 units), paired with the tokenizer when one is given."""
    _check_normalisation(mean, std)
    video_config = config.video_config
    video_processor = DeepCoroVideoProcessor(
        image_mean=[float(mean)] * 3,
        image_std=[float(std)] * 3,
        num_frames=video_config.num_frames,
        size={"height": video_config.image_size, "width": video_config.image_size},
        max_videos=config.max_videos,
    )
    if tokenizer is None:
        return video_processor
    return DeepCoroProcessor(video_processor=video_processor, tokenizer=tokenizer)


def convert_original_checkpoint(
    checkpoint_path: str | Path,
    output_dir: str | Path,
    kind: str = "auto",
    *,
    tokenizer: str | Path | None = None,
    text_config: str | Path | None = None,
    mean: float = STENOSIS_MEAN,
    std: float = STENOSIS_STD,
    allow_pickle: bool = False,
    video_config: DeepCoroVideoConfig | None = None,
    task_types: dict[str, str] | None = None,
) -> ConversionReport:
    """Convert an original checkpoint file into a Hugging Face folder: `config.json`, `model.safetensors`, the remote
    code, and the processor (`DeepCoroProcessor` with a tokenizer, the video processor alone otherwise).

    Args:
        checkpoint_path: the research `.pt` file.
        output_dir: a new or empty folder.
        kind: `"clip"`, `"probe"` or `"auto"`.
        tokenizer: folder of the text tower's tokenizer, saved with the processor.
        text_config: folder with the text tower's `config.json` (CLIP); default: the tokenizer folder's
            `config.json` if it has one, else inferred from the weights.
        mean, std: scalar normalisation in 0-255 units (122.0901 / 28.7908 for the released stenosis model; other
            released models used e.g. 110.4955 / 37.8058).
        allow_pickle: read a checkpoint that pickles Python objects (runs its code; trusted files only).
        video_config: the MViT architecture (default `mvit_v2_s`).
        task_types: types of probe tasks outside the vocabulary.
    """
    checkpoint_path, output_dir = Path(checkpoint_path), Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir} exists and is not an empty folder; convert into a new or empty one")
    _check_normalisation(mean, std)
    loaded_tokenizer = AutoTokenizer.from_pretrained(tokenizer) if tokenizer is not None else None
    checkpoint = load_original_checkpoint(checkpoint_path, allow_pickle=allow_pickle)
    kind = detect_kind(checkpoint, kind, str(checkpoint_path))
    bert_config = None
    if text_config is not None:
        bert_config = _read_text_config(Path(text_config))  # rejected below for a probe, which has no text tower
    elif kind == "clip" and tokenizer is not None and (Path(tokenizer) / "config.json").is_file():
        bert_config = _read_text_config(Path(tokenizer))
    model, report = build_model_from_original(
        checkpoint,
        kind,
        video_config=video_config,
        text_config=bert_config,
        task_types=task_types,
        source=str(checkpoint_path),
    )
    if text_config is not None:
        report.notes.append(f"text config from {Path(text_config) / 'config.json'}")
    elif bert_config is not None:
        report.notes.append(f"text config from the tokenizer folder {Path(tokenizer) / 'config.json'}")

    if kind == "clip" and loaded_tokenizer is not None and len(loaded_tokenizer) > model.config.text_config.vocab_size:
        raise CheckpointConversionError(
            f"the tokenizer in {tokenizer} has {len(loaded_tokenizer)} tokens but the text tower's vocabulary holds "
            f"{model.config.text_config.vocab_size}: it is not this model's tokenizer"
        )
    processor = build_processor(model.config, mean, std, loaded_tokenizer)
    if loaded_tokenizer is None and kind == "clip":
        report.notes.append(
            "no --tokenizer: the folder holds the video processor only; save the text tower's tokenizer (BiomedBERT's "
            "WordPiece for the released models) into it to get a DeepCoroProcessor"
        )
    report.notes.append(f"processor: scalar mean {mean} / std {std} (0-255 units)")

    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    report.output_dir = str(output_dir)
    logger.info("wrote %s (%s)", output_dir, report.model_class)
    return report


# ----------------------------------------------------------------------------------------------------------------------
# CLI: deepcoro convert
# ----------------------------------------------------------------------------------------------------------------------
def _task_type(value: str) -> tuple[str, str]:
    name, sep, kind = value.partition("=")
    if not sep or not name or kind not in TASK_TYPES:
        raise argparse.ArgumentTypeError(f"expected NAME=binary or NAME=regression, got {value!r}")
    return name, kind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="original research checkpoint (.pt)")
    parser.add_argument(
        "output_dir", type=Path, metavar="OUT_DIR", help="new or empty folder for the Hugging Face model"
    )
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="auto",
        help="clip (video_encoder/text_encoder) or probe (linear_probing); default: detected",
    )
    parser.add_argument(
        "--tokenizer", type=Path, metavar="DIR", help="tokenizer folder of the text tower, saved with the processor"
    )
    parser.add_argument(
        "--text-config",
        type=Path,
        metavar="DIR",
        help="folder with the text tower's config.json (CLIP); default: the tokenizer folder's, else read off "
        "the weights",
    )
    parser.add_argument(
        "--mean",
        type=float,
        metavar="M",
        help=f"pixel mean in 0-255 units (default {STENOSIS_MEAN}, the released stenosis model's); give with --std",
    )
    parser.add_argument("--std", type=float, metavar="S", help=f"pixel std in 0-255 units (default {STENOSIS_STD})")
    parser.add_argument(
        "--task-type",
        type=_task_type,
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="type (binary or regression) of a probe head outside the vocabulary, e.g. "
        "MACE_Core_Events_730d=binary; repeatable",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read a checkpoint that pickles Python objects (torch.load weights_only=False): runs its code, "
        "trusted files only",
    )


def run(args: argparse.Namespace) -> int:
    if (args.mean is None) != (args.std is None):
        raise CheckpointConversionError("give --mean and --std together (the normalisation of one training run)")
    task_types = dict(args.task_type)
    if len(task_types) != len(args.task_type):
        raise CheckpointConversionError("a --task-type is given twice for the same head")
    report = convert_original_checkpoint(
        args.checkpoint,
        args.output_dir,
        args.kind,
        tokenizer=args.tokenizer,
        text_config=args.text_config,
        mean=STENOSIS_MEAN if args.mean is None else args.mean,
        std=STENOSIS_STD if args.std is None else args.std,
        allow_pickle=args.allow_pickle,
        task_types=task_types,
    )
    print(report.summary())
    return 0


__all__ = [
    "KINDS",
    "CheckpointConversionError",
    "ConversionReport",
    "PickledCheckpointError",
    "add_arguments",
    "build_model_from_original",
    "build_processor",
    "convert_original_checkpoint",
    "detect_kind",
    "infer_text_config",
    "load_original_checkpoint",
    "run",
]
