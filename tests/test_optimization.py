"""freeze_ratio meaning and parameter groups."""

import pytest
import torch
from conftest import tiny_clip_config

from deepcoro_hf import DeepCoroClipConfig, DeepCoroClipModel, DeepCoroForSegmentClassification, DeepCoroVideoModel
from deepcoro_hf.optimization import PARAMETER_GROUPS, build_parameter_groups, freeze_backbone, parameter_group


def _frozen_layers(layers):
    return [all(not p.requires_grad for p in layer.parameters()) for layer in layers]


@pytest.fixture(scope="module")
def full_size_classifier():
    # Built on the meta device: the paper-size layout without allocating 34 M weights.
    with torch.device("meta"):
        return DeepCoroForSegmentClassification(DeepCoroClipConfig())


def test_freeze_ratio_counts_mvit_blocks_from_the_input(full_size_classifier):
    model = full_size_classifier
    video = model.video_model
    assert freeze_backbone(model, 0.8) == 12  # the paper's "80 % frozen": 12 of 16 blocks, last 4 trainable
    assert _frozen_layers(video.encoder.layers) == [True] * 12 + [False] * 4
    assert not any(p.requires_grad for p in video.embeddings.parameters())
    assert all(p.requires_grad for p in video.layernorm.parameters())
    assert all(p.requires_grad for p in model.video_projection.parameters())
    assert all(p.requires_grad for p in model.mil.parameters()) and all(p.requires_grad for p in model.heads.parameters())

    assert freeze_backbone(model, 0.75) == 12  # MACE transfer: 12 of 16 layers frozen
    assert freeze_backbone(model, 0.0) == 0
    assert all(p.requires_grad for p in video.parameters())
    assert freeze_backbone(model, 1.0) == 16
    assert not any(p.requires_grad for p in video.parameters())
    assert all(p.requires_grad for p in model.video_projection.parameters())
    # Lowering the ratio unfreezes again: the ratio is a state, not an increment.
    freeze_backbone(model, 0.5)
    assert _frozen_layers(video.encoder.layers) == [True] * 8 + [False] * 8
    assert all(p.requires_grad for p in video.layernorm.parameters())


def test_text_tower_freezing():
    model = DeepCoroClipModel(tiny_clip_config())
    assert freeze_backbone(model, 0.5, tower="text") == 1
    layers = model.text_model.encoder.layer
    assert _frozen_layers(layers) == [True, False]
    assert not any(p.requires_grad for p in model.text_model.embeddings.parameters())
    assert all(p.requires_grad for p in model.video_model.parameters())  # the other tower is untouched


def test_freeze_errors():
    model = DeepCoroForSegmentClassification(tiny_clip_config())
    with pytest.raises(ValueError, match=r"freeze_ratio must lie in \[0, 1\], got 1.5"):
        freeze_backbone(model, 1.5)
    with pytest.raises(ValueError, match="has no text tower"):
        freeze_backbone(model, 0.5, tower="text")


def test_parameter_groups_cover_every_trainable_parameter_once():
    model = DeepCoroForSegmentClassification(tiny_clip_config())
    freeze_backbone(model, 0.5)
    groups = build_parameter_groups(
        model, learning_rate=1e-4, weight_decay=0.01,
        learning_rates={"video_backbone": 1e-5, "heads": 3e-4, "heads.stenosis": 5e-4, "within_video_attention": 4.1e-3},
        weight_decays={"across_video_attention": 6.8e-6},
    )
    placed = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(placed) == sorted(trainable) and len(placed) == len(set(placed))
    by_name = {g["name"]: g for g in groups}
    assert by_name["video_backbone"]["lr"] == 1e-5
    assert by_name["heads.stenosis"]["lr"] == 5e-4 and by_name["heads.cto"]["lr"] == 3e-4
    assert by_name["within_video_attention"]["lr"] == 4.1e-3
    assert by_name["across_video_attention"]["weight_decay"] == 6.8e-6
    assert by_name["gated_attention"]["lr"] == 1e-4 and by_name["gated_attention"]["weight_decay"] == 0.01
    assert all(g["weight_decay"] == 0.0 for name, g in by_name.items() if name.endswith("no_decay"))
    assert {p for p in by_name["video_projection"]["params"]} == {model.video_projection.linear.weight}
    torch.optim.AdamW(groups)  # a valid optimizer specification


def test_parameter_group_names_and_errors():
    assert parameter_group("base_model.model.video_model.encoder.layers.3.attention.qkv.lora_A.default.weight") == "video_backbone"
    assert parameter_group("module.mil.across_video_attention.in_proj_weight") == "across_video_attention"
    assert parameter_group("mil.cls_token") == "within_video_attention"
    assert parameter_group("base_model.model.similarity.modules_to_save.default.log_temperature") == "temperature"
    assert parameter_group("encoder.layers.0.norm1.weight") == "video_backbone"
    assert set(PARAMETER_GROUPS) >= {parameter_group(n).split(".")[0] for n, _ in DeepCoroClipModel(tiny_clip_config()).named_parameters()}
    with pytest.raises(ValueError, match="belongs to no parameter group"):
        parameter_group("mystery.weight")
    with pytest.raises(ValueError, match=r"unknown parameter groups \['backbone'\]"):
        build_parameter_groups(DeepCoroVideoModel(tiny_clip_config().video_config), 1e-4, learning_rates={"backbone": 1.0})
