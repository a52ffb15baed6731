"""Partial freezing and named parameter groups for DeepCORO-CLIP models.

`freeze_ratio` here means what its name says: the fraction of a tower's layers that is frozen, counted from the input
side. (The original code's `freeze_ratio` was the fraction left *trainable*, counted from the output side: its
released probe's 0.8483 froze only the first ~15 % of the parameter tensors.)

Parameter groups let training give separate learning rates and weight decay to the video backbone, the projections,
the text tower, the within- and across-video attention, the gated attention, each task head, and the temperature.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping

from torch import nn


PARAMETER_GROUPS: tuple[str, ...] = (
    "video_backbone",
    "video_projection",
    "text_backbone",
    "text_projection",
    "within_video_attention",
    "across_video_attention",
    "gated_attention",
    "heads",
    "temperature",
)

# (pattern searched in the parameter name, group), matched after wrapper parts of the name are removed (DDP's
# `module.`, peft's `base_model.model.`, `modules_to_save.<adapter>.` and `original_module.`).
_GROUP_RULES: tuple[tuple[str, str], ...] = (
    (r"(^|\.)video_model\.", "video_backbone"),
    (r"(^|\.)video_projection\.", "video_projection"),
    (r"(^|\.)text_model\.", "text_backbone"),
    (r"(^|\.)text_projection\.", "text_projection"),
    (r"(^|\.)mil\.(within_video_|cls_token)", "within_video_attention"),
    (r"(^|\.)mil\.(across_video_|video_attention|video_norm)", "across_video_attention"),
    (r"(^|\.)mil\.attention_", "gated_attention"),
    (r"(^|\.)heads\.", "heads"),
    (r"(^|\.)similarity\.(log_temperature|siglip_bias)$", "temperature"),
    # A bare DeepCoroVideoModel (no `video_model.` prefix).
    (r"^(embeddings|encoder|layernorm)\.", "video_backbone"),
)
# Parameters that never take weight decay: biases, norms, learned tokens, relative-position tables, temperature.
_NO_DECAY = re.compile(r"(bias$|norm[^.]*\.weight$|LayerNorm\.weight$|cls_token$|rel_pos_[thw]$|log_temperature$|siglip_bias$)")


_WRAPPER_PARTS = re.compile(r"(^module\.|^base_model\.model\.|modules_to_save\.[^.]+\.|original_module\.)")


def parameter_group(name: str) -> str:
    """Group of one parameter name; heads are split per task (`heads.stenosis`, `heads.cto`, ...)."""
    name = _WRAPPER_PARTS.sub("", name)
    for pattern, group in _GROUP_RULES:
        if re.search(pattern, name):
            if group == "heads":
                task = re.search(r"(?:^|\.)heads\.([^.]+)\.", name)
                return f"heads.{task.group(1)}" if task else group
            return group
    raise ValueError(f"parameter {name!r} belongs to no parameter group of {PARAMETER_GROUPS}")


def _lookup(table: Mapping[str, float], group: str, default: float) -> float:
    """`heads.cto` falls back to `heads`, then to the default."""
    if group in table:
        return table[group]
    return table.get(group.split(".")[0], default)


def build_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.0,
    learning_rates: Mapping[str, float] | None = None,
    weight_decays: Mapping[str, float] | None = None,
) -> list[dict]:
    """Optimizer parameter groups for every trainable parameter, each placed exactly once.

    `learning_rates` / `weight_decays` override the defaults per group name (see `PARAMETER_GROUPS`; `heads.<task>`
    overrides `heads`). Biases, norms, tokens, relative-position tables and the temperature get no weight decay.
    Each returned group carries a `name` (e.g. `"video_backbone"` or `"video_backbone.no_decay"`).
    """
    learning_rates = dict(learning_rates or {})
    weight_decays = dict(weight_decays or {})
    unknown = sorted((set(learning_rates) | set(weight_decays)) - set(PARAMETER_GROUPS) - {
        g for g in (set(learning_rates) | set(weight_decays)) if g.startswith("heads.")
    })
    if unknown:
        raise ValueError(f"unknown parameter groups {unknown}; expected names from {PARAMETER_GROUPS} or heads.<task>")
    groups: dict[str, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        group = parameter_group(name)
        no_decay = bool(_NO_DECAY.search(name)) or group == "temperature"
        key = f"{group}.no_decay" if no_decay else group
        if key not in groups:
            groups[key] = {
                "name": key,
                "params": [],
                "lr": _lookup(learning_rates, group, learning_rate),
                "weight_decay": 0.0 if no_decay else _lookup(weight_decays, group, weight_decay),
            }
        groups[key]["params"].append(parameter)
    return list(groups.values())


def _tower(model: nn.Module, tower: str) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module]]:
    """(input-side modules, layers in order, output-side modules) of the video or text tower inside `model`.

    Towers are found by class name so wrapped models (DDP, peft) and remote-code copies work too."""
    wanted = {"video": "DeepCoroVideoModel", "text": "BertModel"}[tower]
    found = next((m for m in model.modules() if type(m).__name__ == wanted), None)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no {tower} tower ({wanted})")
    if tower == "video":
        return [found.embeddings], list(found.encoder.layers), [found.layernorm]
    return [found.embeddings], list(found.encoder.layer), []


def _parameters(modules: list[nn.Module]) -> Iterator[nn.Parameter]:
    for module in modules:
        yield from module.parameters()


def freeze_backbone(model: nn.Module, freeze_ratio: float, tower: str = "video") -> int:
    """Freeze the first `freeze_ratio` of a tower's layers, counted from the input; unfreeze the rest of the tower.

    - video tower: the 16 MViT blocks; the patch embedding and class token freeze with the first block, the final
      layer norm only at 1.0. `floor(ratio × 16)` blocks are frozen, so 0.8 freezes 12 blocks and trains the last 4.
    - text tower: the 12 BERT layers; the embeddings freeze with the first layer.
    Projections, pooling and heads are never touched. Returns the number of frozen layers.
    """
    if tower not in ("video", "text"):
        raise ValueError(f"tower must be 'video' or 'text', got {tower!r}")
    if not 0.0 <= freeze_ratio <= 1.0:
        raise ValueError(f"freeze_ratio must lie in [0, 1], got {freeze_ratio}")
    inputs, layers, outputs = _tower(model, tower)
    num_frozen = math.floor(freeze_ratio * len(layers) + 1e-9)
    frozen = (inputs if num_frozen else []) + layers[:num_frozen] + (outputs if freeze_ratio == 1.0 else [])
    trainable = ([] if num_frozen else inputs) + layers[num_frozen:] + ([] if freeze_ratio == 1.0 else outputs)
    for parameter in _parameters(frozen):
        parameter.requires_grad_(False)
    for parameter in _parameters(trainable):
        parameter.requires_grad_(True)
    return num_frozen


__all__ = ["PARAMETER_GROUPS", "build_parameter_groups", "freeze_backbone", "parameter_group"]
