"""Model classes: torchvision parity, shapes, gradients, losses, masking, saving, remote code, bad input."""

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_VIDEO, tiny_clip_config
from huggingface_hub.errors import StrictDataclassClassValidationError
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

from deepcoro_hf import (
    DeepCoroClipConfig,
    DeepCoroClipModel,
    DeepCoroForSegmentClassification,
    DeepCoroVideoConfig,
    DeepCoroVideoModel,
)
from deepcoro_hf.configuration_deepcoro import MIL_POOLING_MODES
from deepcoro_hf.modeling_deepcoro import (
    clip_loss,
    infonce_loss,
    mvit_block_settings,
    segment_classification_loss,
    siglip_loss,
)
from deepcoro_hf.vocabulary import SEGMENT_KEYS, SEGMENT_TASKS

torchvision_mvit = pytest.importorskip("torchvision.models.video.mvit")


def _torchvision_from_config(config: DeepCoroVideoConfig, num_classes: int = 7) -> torch.nn.Module:
    """An independent reference: torchvision's own MViT class built with the block settings our config describes."""
    blocks = [
        torchvision_mvit.MSBlockConfig(
            num_heads=s.num_heads, input_channels=s.input_size, output_channels=s.output_size,
            kernel_q=list(config.pool_kernel_size), kernel_kv=list(config.pool_kernel_size),
            stride_q=list(s.stride_q), stride_kv=list(s.stride_kv),
        )
        for s in mvit_block_settings(config)
    ]
    return torchvision_mvit.MViT(
        spatial_size=(config.image_size, config.image_size), temporal_size=config.num_frames, block_setting=blocks,
        residual_pool=True, residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True,
        stochastic_depth_prob=config.stochastic_depth_prob, num_classes=num_classes,
    )


def _final_norm_output(reference: torch.nn.Module, clips_bcthw: torch.Tensor) -> torch.Tensor:
    captured = {}
    handle = reference.norm.register_forward_hook(lambda module, args, output: captured.setdefault("tokens", output))
    with torch.no_grad():
        reference(clips_bcthw)
    handle.remove()
    return captured["tokens"]


# ----------------------------------------------------------------------------------------------------------------------
# torchvision parity
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_size_matches_torchvision_mvit_v2_s(tmp_path):
    torch.manual_seed(0)
    reference = torchvision_mvit.mvit_v2_s().eval()
    ours = DeepCoroVideoModel.from_torchvision(reference).eval()
    assert ours.config.to_diff_dict() == DeepCoroVideoConfig().to_diff_dict()  # read off the module == defaults
    tower_params = sum(p.numel() for n, p in reference.named_parameters() if not n.startswith("head."))
    assert sum(p.numel() for p in ours.parameters()) == tower_params == 34_230_144

    clips = torch.randn(1, 16, 3, 224, 224)
    expected = _final_norm_output(reference, clips.transpose(1, 2))
    with torch.no_grad():
        tokens = ours(clips).last_hidden_state
    assert tokens.shape == (1, 393, 768)
    assert (tokens - expected).abs().max().item() <= 1e-4

    # The Kinetics conversion script does the same from a weight file on disk.
    weights = tmp_path / "mvit_v2_s.pth"
    torch.save(reference.state_dict(), weights)
    out_dir = tmp_path / "hf"
    subprocess.run(
        [sys.executable, "hub_scripts/convert_torchvision_mvit.py", str(weights), str(out_dir)],
        check=True, cwd=os.path.dirname(os.path.dirname(__file__)), capture_output=True,
    )
    converted = AutoModel.from_pretrained(out_dir)
    assert isinstance(converted, DeepCoroVideoModel)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, converted.state_dict()[name]), name


def test_tiny_custom_blocks_match_torchvision():
    torch.manual_seed(1)
    config = DeepCoroVideoConfig(
        num_frames=8, image_size=64, hidden_sizes=[16, 32, 64], depths=[1, 2, 1], num_heads=[1, 2, 4],
        pool_kv_stride=[1, 4, 4], stochastic_depth_prob=0.1,
    )
    reference = _torchvision_from_config(config).eval()
    from_module = DeepCoroVideoModel.from_torchvision(reference).eval()
    from_state_dict = DeepCoroVideoModel.from_torchvision(reference.state_dict(), config=config).eval()
    assert from_module.config.to_diff_dict() == config.to_diff_dict()

    clips = torch.randn(2, 8, 3, 64, 64)
    expected = _final_norm_output(reference, clips.transpose(1, 2))
    with torch.no_grad():
        for model in (from_module, from_state_dict):
            tokens = model(clips).last_hidden_state
            assert tokens.shape == (2, config.num_tokens, 64)
            assert (tokens - expected).abs().max().item() <= 1e-4


def test_from_torchvision_names_missing_and_mismatched_weights():
    config = DeepCoroVideoConfig(**TINY_VIDEO)
    state = _torchvision_from_config(config).state_dict()
    del state["blocks.0.attn.qkv.weight"]
    with pytest.raises(ValueError, match=r"missing: \['encoder.layers.0.attention.qkv.weight'\]"):
        DeepCoroVideoModel.from_torchvision(state, config=config)
    other = DeepCoroVideoConfig(**{**TINY_VIDEO, "hidden_sizes": [8, 24], "num_heads": [1, 3]})
    with pytest.raises(ValueError, match="shape mismatch"):
        DeepCoroVideoModel.from_torchvision(_torchvision_from_config(config).state_dict(), config=other)


def test_default_configs_are_the_papers():
    video = DeepCoroVideoConfig()
    assert (video.num_frames, video.image_size, video.num_blocks, video.hidden_size, video.num_tokens) == (16, 224, 16, 768, 393)
    clip = DeepCoroClipConfig()
    assert clip.projection_dim == 512
    assert (clip.text_config.model_type, clip.text_config.hidden_size, clip.text_config.num_hidden_layers) == ("bert", 768, 12)
    assert clip.mil_pooling == "attention+cls_token" and clip.mil_num_heads == 8 and clip.mil_attention_hidden == 256
    assert clip.segments == list(SEGMENT_KEYS) and clip.tasks == list(SEGMENT_TASKS)
    assert len(clip.head_names) == 90 and clip.head_names[:2] == ["prox_rca_stenosis", "prox_rca_stenosis_binary"]
    with torch.device("meta"):
        model = DeepCoroForSegmentClassification(clip)
    assert model.mil.output_size == 1024
    assert all(head.weight.shape == (18, 1024) for head in model.heads.values())


# ----------------------------------------------------------------------------------------------------------------------
# Shapes and gradients
# ----------------------------------------------------------------------------------------------------------------------
def _studies(batch=3, videos=2, config=None):
    config = config or tiny_clip_config()
    v = config.video_config
    return torch.randn(batch, videos, v.num_frames, 3, v.image_size, v.image_size)


def test_clip_shapes_for_videos_and_studies(tiny_config):
    model = DeepCoroClipModel(tiny_config).eval()
    clips = torch.randn(3, 4, 3, 32, 32)
    assert model.get_video_features(clips).shape == (3, 16)
    studies = _studies()
    mask = torch.tensor([[1, 1], [1, 0], [0, 1]], dtype=torch.bool)
    assert model.get_video_features(studies, mask).shape == (3, 16)
    ids = torch.randint(1, 100, (3, 9))
    assert model.get_text_features(ids, torch.ones_like(ids)).shape == (3, 16)
    out = model(studies, ids, torch.ones_like(ids), video_mask=mask, return_loss=True)
    assert out.logits_per_video.shape == (3, 3) and torch.equal(out.logits_per_text, out.logits_per_video.t())
    assert torch.allclose(out.video_embeds.norm(dim=-1), torch.ones(3)) and out.loss.ndim == 0


def test_study_embedding_is_mean_over_valid_videos(tiny_config):
    model = DeepCoroClipModel(tiny_config).eval()
    studies = _studies(batch=1, videos=3)
    with torch.no_grad():
        per_video = model.get_video_features(studies[0])
        study = model.get_video_features(studies, torch.tensor([[True, False, True]]))
    assert torch.allclose(study[0], per_video[[0, 2]].mean(0), atol=1e-6)


@pytest.mark.parametrize("loss_type", ["clip", "siglip", "infonce"])
def test_clip_gradients_reach_every_parameter(loss_type):
    model = DeepCoroClipModel(tiny_clip_config(loss_type=loss_type)).train()
    ids = torch.randint(1, 100, (3, 9))
    out = model(_studies(), ids, torch.ones_like(ids), video_mask=torch.tensor([[1, 1], [1, 0], [1, 1]]), return_loss=True)
    out.loss.backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []
    assert (model.similarity.siglip_bias is not None) == (loss_type == "siglip")


@pytest.mark.parametrize("pooling", MIL_POOLING_MODES)
def test_segment_model_shapes_and_gradients(pooling):
    config = tiny_clip_config(mil_pooling=pooling)
    model = DeepCoroForSegmentClassification(config).train()
    labels = torch.rand(3, 18, 5)
    labels[..., 0] *= 100
    out = model(_studies(), torch.tensor([[1, 1], [1, 0], [0, 1]]), labels=labels)
    expected_width = {"mean": 16, "attention": 16, "cls_token": 16, "attention+cls_token": 32}[pooling]
    assert out.logits.shape == (3, 18, 5) and out.study_embeds.shape == (3, expected_width)
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    with torch.no_grad():
        out = model.eval()(_studies(), torch.tensor([[1, 1], [1, 0], [0, 1]]))
    for weights in (out.cls_attention_weights, out.gated_attention_weights):
        if weights is not None:
            assert torch.allclose(weights.sum(-1), torch.ones(3), atol=1e-5)
            assert weights[1, 1] == 0 and weights[2, 0] == 0
    assert (out.cls_attention_weights is not None) == ("cls_token" in pooling)
    assert (out.gated_attention_weights is not None) == (pooling.startswith("attention"))


def test_study_level_transfer_tasks():
    config = tiny_clip_config(segments=[], tasks=["lvef", "lvef_below_40", "lvef_below_50"])
    assert config.task_types == {"lvef": "regression", "lvef_below_40": "binary", "lvef_below_50": "binary"}
    model = DeepCoroForSegmentClassification(config)
    out = model(_studies(batch=2), labels=torch.tensor([[[55.0, 0.0, float("nan")]], [[30.0, 1.0, 1.0]]]))
    assert out.logits.shape == (2, 1, 3) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="custom tasks go in task_types"):
        tiny_clip_config(segments=[], tasks=["my_outcome"])
    assert tiny_clip_config(segments=[], tasks=["my_outcome"], task_types={"my_outcome": "binary"}).num_segments == 1


# ----------------------------------------------------------------------------------------------------------------------
# Masking: padded videos have no influence
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", MIL_POOLING_MODES)
def test_masked_videos_have_no_influence(pooling):
    model = DeepCoroForSegmentClassification(tiny_clip_config(mil_pooling=pooling)).eval()
    studies = _studies(batch=2, videos=3)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    changed = studies.clone()
    changed[0, 1] = torch.randn_like(changed[0, 1]) * 50
    changed[1, 2] = float("inf")
    with torch.no_grad():
        a, b = model(studies, mask), model(changed, mask)
        alone = model(studies[:1, [0, 2]])  # the first study without any padding
    for field in ("logits", "study_embeds", "cls_attention_weights", "gated_attention_weights"):
        if getattr(a, field) is not None:
            assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert torch.allclose(a.logits[0], alone.logits[0], atol=1e-5)


def test_clip_study_features_ignore_masked_videos(tiny_config):
    model = DeepCoroClipModel(tiny_config).eval()
    studies = _studies(batch=2, videos=2)
    mask = torch.tensor([[True, False], [True, True]])
    changed = studies.clone()
    changed[0, 1] = 1e4
    with torch.no_grad():
        assert torch.equal(model.get_video_features(studies, mask), model.get_video_features(changed, mask))


# ----------------------------------------------------------------------------------------------------------------------
# Losses against hand computations
# ----------------------------------------------------------------------------------------------------------------------
LOGITS = [[2.0, 0.0, -1.0], [1.0, 3.0, 0.5], [0.0, -2.0, 1.5]]


def _log_softmax_row(row, i):
    return row[i] - math.log(sum(math.exp(v) for v in row))


def test_clip_loss_by_hand():
    rows = LOGITS
    cols = [list(c) for c in zip(*LOGITS)]
    expected = 0.5 * (
        -sum(_log_softmax_row(rows[i], i) for i in range(3)) / 3 - sum(_log_softmax_row(cols[i], i) for i in range(3)) / 3
    )
    assert clip_loss(torch.tensor(LOGITS)).item() == pytest.approx(expected, rel=1e-6)


def test_siglip_loss_by_hand():
    def log_sigmoid(z):
        return -math.log(1 + math.exp(-z))

    expected = -sum(log_sigmoid(LOGITS[i][j] if i == j else -LOGITS[i][j]) for i in range(3) for j in range(3)) / 3
    assert siglip_loss(torch.tensor(LOGITS)).item() == pytest.approx(expected, rel=1e-6)


def test_infonce_with_duplicate_reports_by_hand():
    # Texts 0 and 2 are the same report: for videos 0 and 2 both texts are correct.
    positives = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    rows, cols = LOGITS, [list(c) for c in zip(*LOGITS)]

    def direction(matrix):
        total = 0.0
        for i, row in enumerate(matrix):
            targets = [j for j in range(3) if positives[i, j]]
            total += -sum(_log_softmax_row(row, j) for j in targets) / len(targets)
        return total / 3

    expected = 0.5 * (direction(rows) + direction(cols))
    assert infonce_loss(torch.tensor(LOGITS), positives).item() == pytest.approx(expected, rel=1e-6)
    assert infonce_loss(torch.tensor(LOGITS), torch.eye(3, dtype=torch.bool)).item() == pytest.approx(
        clip_loss(torch.tensor(LOGITS)).item(), rel=1e-6
    )


def test_segment_loss_by_hand():
    nan = float("nan")
    logits = torch.tensor([[[10.0, 0.5]], [[40.0, -1.0]], [[70.0, 2.0]]])  # 3 studies × 1 segment × (regression, binary)
    labels = torch.tensor([[[10.05, 1.0]], [[nan, 0.0]], [[60.0, nan]]])

    def huber(err, delta=0.1):
        return 0.5 * err**2 if abs(err) <= delta else delta * (abs(err) - 0.5 * delta)

    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    regression = (huber(10.0 - 10.05) + huber(70.0 - 60.0)) / 2
    binary = (bce(0.5, 1.0) + bce(-1.0, 0.0)) / 2
    loss = segment_classification_loss(logits, labels, ["regression", "binary"], regression_loss_weight=2.0, huber_delta=0.1)
    assert loss.item() == pytest.approx(2.0 * regression + binary, rel=1e-6)
    all_missing = torch.full_like(labels, nan)
    assert segment_classification_loss(logits, all_missing, ["regression", "binary"], 2.0, 0.1).item() == 0.0


def test_model_loss_equals_independent_computation():
    model = DeepCoroClipModel(tiny_clip_config(temperature=0.07)).eval()
    ids = torch.randint(1, 100, (3, 9))
    clips = torch.randn(3, 4, 3, 32, 32)
    with torch.no_grad():
        out = model(clips, ids, torch.ones_like(ids), return_loss=True)
        v = F.normalize(model.get_video_features(clips), dim=-1)
        t = F.normalize(model.get_text_features(ids, torch.ones_like(ids)), dim=-1)
    logits = (v @ t.t() / 0.07).tolist()
    rows, cols = logits, [list(c) for c in zip(*logits)]
    expected = 0.5 * (-sum(_log_softmax_row(rows[i], i) for i in range(3)) / 3 - sum(_log_softmax_row(cols[i], i) for i in range(3)) / 3)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert model.similarity.log_temperature.item() == pytest.approx(math.log(0.07))


def test_infonce_model_recognises_identical_reports():
    model = DeepCoroClipModel(tiny_clip_config(loss_type="infonce")).eval()
    ids = torch.randint(1, 100, (3, 9))
    ids[2] = ids[0]
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padding never changes what a report is
    clips = torch.randn(3, 4, 3, 32, 32)
    with torch.no_grad():
        out = model(clips, ids, mask, return_loss=True)
    positives = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    assert out.loss.item() == pytest.approx(infonce_loss(out.logits_per_video, positives).item(), rel=1e-6)


def test_siglip_bias_and_temperature_are_trained():
    from deepcoro_hf.optimization import build_parameter_groups

    model = DeepCoroClipModel(tiny_clip_config(loss_type="siglip", siglip_bias_init=-10.0)).train()
    assert model.similarity.siglip_bias.item() == -10.0
    groups = build_parameter_groups(model, learning_rate=1e-2, weight_decay=0.1)
    temperature_group = next(g for g in groups if g["name"] == "temperature.no_decay")
    assert temperature_group["weight_decay"] == 0.0
    assert {id(p) for p in temperature_group["params"]} == {id(model.similarity.siglip_bias), id(model.similarity.log_temperature)}
    optimizer = torch.optim.AdamW(groups)
    ids = torch.randint(1, 100, (4, 9))
    before = (model.similarity.siglip_bias.item(), model.similarity.log_temperature.item())
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 4, 3, 32, 32), ids, return_loss=True).loss.backward()
        optimizer.step()
    assert model.similarity.siglip_bias.item() > before[0]  # all-negative start: the bias must rise
    assert model.similarity.log_temperature.item() != before[1]


# ----------------------------------------------------------------------------------------------------------------------
# Saving, Auto classes and remote code
# ----------------------------------------------------------------------------------------------------------------------
def test_save_load_roundtrip_through_auto_classes(tmp_path, tiny_config):
    segment = DeepCoroForSegmentClassification(tiny_config).eval()
    segment.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"config.json", "model.safetensors", "modeling_deepcoro.py", "configuration_deepcoro.py", "vocabulary.py"} <= files
    config = AutoConfig.from_pretrained(tmp_path)
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForVideoClassification"}
    assert config.tasks == tiny_config.tasks  # order survives JSON (it is the logits' order)
    loaded = AutoModelForVideoClassification.from_pretrained(tmp_path)
    assert isinstance(loaded, DeepCoroForSegmentClassification) and not loaded.training
    studies = _studies(batch=2)
    with torch.no_grad():
        assert torch.equal(segment(studies).logits, loaded(studies).logits)

    clip_dir = tmp_path / "clip"
    clip = DeepCoroClipModel(tiny_config).eval()
    clip.save_pretrained(clip_dir)
    reloaded = AutoModel.from_pretrained(clip_dir)
    assert isinstance(reloaded, DeepCoroClipModel)
    ids = torch.randint(1, 100, (2, 5))
    with torch.no_grad():
        assert torch.equal(clip.get_text_features(ids), reloaded.get_text_features(ids))
    # A CLIP checkpoint initialises the segment classifier's video tower and projection.
    classifier = AutoModelForVideoClassification.from_pretrained(clip_dir)
    assert torch.equal(classifier.video_projection.linear.weight, clip.video_projection.linear.weight)


def test_remote_code_in_a_process_that_never_imports_the_package(tmp_path, tiny_config):
    model = DeepCoroForSegmentClassification(tiny_config).eval()
    model.save_pretrained(tmp_path / "model")
    studies = _studies(batch=2)
    with torch.no_grad():
        save_file({"studies": studies, "logits": model(studies).logits}, str(tmp_path / "io.safetensors"))
    script = textwrap.dedent(
        f"""
        import sys, torch
        from safetensors.torch import load_file, save_file
        from transformers import AutoModel, AutoModelForVideoClassification
        io = load_file({str(tmp_path / "io.safetensors")!r})
        model = AutoModelForVideoClassification.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        with torch.no_grad():
            logits = model(io["studies"]).logits
        clip = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert "deepcoro_hf" not in sys.modules, "the package was imported"
        save_file({{"logits": logits}}, {str(tmp_path / "remote.safetensors")!r})
        print(type(model).__module__, type(clip).__name__)
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    module, clip_name = result.stdout.split()
    assert module.startswith("transformers_modules.") and clip_name == "DeepCoroClipModel"
    remote = load_file(str(tmp_path / "remote.safetensors"))["logits"]
    assert torch.allclose(remote, load_file(str(tmp_path / "io.safetensors"))["logits"], atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Activation checkpointing and bf16
# ----------------------------------------------------------------------------------------------------------------------
def test_activation_checkpointing_gives_the_same_gradients():
    config = tiny_clip_config(projection_dropout=0.0, mil_dropout=0.0)
    config.video_config.stochastic_depth_prob = 0.0
    torch.manual_seed(0)
    model = DeepCoroForSegmentClassification(config).train()
    studies, labels = _studies(batch=2), torch.rand(2, 18, 5)

    def grads():
        model.zero_grad()
        model(studies, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.video_model.encoder.layers)
    checkpointed = grads()
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-6), name


def test_bf16_autocast_stays_close_to_fp32(tiny_config):
    model = DeepCoroClipModel(tiny_config).eval()
    clips = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        full = model.get_video_features(clips)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model.get_video_features(clips)
    assert half.dtype == torch.bfloat16
    assert F.cosine_similarity(full, half.float()).min() > 0.99


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda: torch.randn(2, 4, 3, 32), "clips \\[batch, 4, 3, 32, 32\\]"),
        (lambda: torch.randn(2, 5, 3, 32, 32), "got \\[2, 5, 3, 32, 32\\]"),
        (lambda: torch.randn(2, 4, 3, 64, 64), "\\[batch, 4, 3, 32, 32\\]"),
        (lambda: torch.randn(2, 4, 1, 32, 32), "\\[batch, 4, 3, 32, 32\\]"),
        (lambda: torch.randint(0, 255, (2, 4, 3, 32, 32), dtype=torch.uint8), "floating-point"),
        (lambda: torch.randn(1, 6, 4, 3, 32, 32), "at most max_videos=4"),
        (lambda: [[0.0]], "must be a torch.Tensor"),
    ],
)
def test_bad_pixel_values_raise_value_error(tiny_config, make_input, message):
    model = DeepCoroForSegmentClassification(tiny_config)
    with pytest.raises(ValueError, match=message):
        model(make_input())


@pytest.mark.parametrize(
    "mask, message",
    [
        (torch.tensor([[True, False], [False, False]]), "studies \\[1\\] have no valid video"),
        (torch.ones(2, 3, dtype=torch.bool), "\\[batch, videos\\] = \\[2, 2\\], got \\[2, 3\\]"),
        (torch.ones(2, dtype=torch.bool), "got \\[2\\]"),
        (torch.tensor([[1, 2], [1, 1]]), "boolean or 0/1"),
        (torch.tensor([[0.5, 1.0], [1.0, 1.0]]), "boolean or 0/1"),
    ],
)
def test_bad_video_mask_raises_value_error(tiny_config, mask, message):
    model = DeepCoroClipModel(tiny_config)
    with pytest.raises(ValueError, match=message):
        model.get_video_features(_studies(batch=2), mask)


def test_other_bad_inputs(tiny_config):
    clip = DeepCoroClipModel(tiny_config)
    with pytest.raises(ValueError, match="only meaningful for studies"):
        clip.get_video_features(torch.randn(2, 4, 3, 32, 32), torch.ones(2, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="attention_mask must match input_ids"):
        clip.get_text_features(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="pairs video i with text i"):
        clip(torch.randn(2, 4, 3, 32, 32), torch.ones(3, 5, dtype=torch.long), return_loss=True)
    segment = DeepCoroForSegmentClassification(tiny_config)
    with pytest.raises(ValueError, match="labels must have shape \\[batch, segments, tasks\\] = \\[2, 18, 5\\]"):
        segment(_studies(batch=2), labels=torch.zeros(2, 90))
    with pytest.raises(StrictDataclassClassValidationError, match="mil_pooling must be one of"):
        tiny_clip_config(mil_pooling="max")
    with pytest.raises(StrictDataclassClassValidationError, match="unknown segment keys \\['lad'\\]"):
        tiny_clip_config(segments=["lad"])
