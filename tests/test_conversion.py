"""Conversion of the original research checkpoints: checkpoints are built here with the ORIGINAL key names and shapes
from independent modules (torchvision's MViT, transformers' BertModel, torch's MultiheadAttention, the gated attention
written out), converted, and the converted model must reproduce the forward of those modules."""

import json
import logging
import math
import random
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_VIDEO
from torch import nn
from transformers import AutoModel, AutoModelForVideoClassification, AutoProcessor, BertConfig, BertModel, BertTokenizer

from deepcoro_hf import cli, conversion
from deepcoro_hf.configuration_deepcoro import DeepCoroVideoConfig
from deepcoro_hf.conversion import (
    REASON_AGGREGATOR_CLIP,
    REASON_AGGREGATOR_PROBE,
    REASON_BERT_BUFFER,
    REASON_METRIC,
    REASON_TRAINING_STATE,
    CheckpointConversionError,
    PickledCheckpointError,
    build_model_from_original,
    convert_original_checkpoint,
    infer_text_config,
)
from deepcoro_hf.modeling_deepcoro import (
    DeepCoroClipModel,
    DeepCoroForSegmentClassification,
    convert_torchvision_key,
    mvit_block_settings,
)
from deepcoro_hf.vocabulary import LABEL_COLUMNS, SEGMENT_KEYS, SEGMENT_TASKS

torchvision_mvit = pytest.importorskip("torchvision.models.video.mvit")

TINY_TEXT = {  # 64 wide, so the number of heads can be inferred (64 / 64 = 1)
    "vocab_size": 30,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 1,
    "intermediate_size": 32,
    "max_position_embeddings": 16,
}
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "lad", "rca", "has", "severe", "stenosis", "no", "."]


# ----------------------------------------------------------------------------------------------------------------------
# The "original" modules and their checkpoints
# ----------------------------------------------------------------------------------------------------------------------
def _perturb_constants(module: nn.Module, scale: float = 0.1) -> None:
    """Give layer norms, biases and zero-initialised tokens distinct values, so a swapped weight cannot go unnoticed."""
    with torch.no_grad():
        for param in module.parameters():
            if param.numel() == 1 or bool((param == param.flatten()[0]).all()):
                param.add_(torch.randn_like(param) * scale)


def _torchvision_mvit(config: DeepCoroVideoConfig) -> nn.Module:
    if config.to_diff_dict() == DeepCoroVideoConfig().to_diff_dict():
        model = torchvision_mvit.mvit_v2_s()
    else:  # torchvision's own MViT class with the block settings of the tiny config
        blocks = [
            torchvision_mvit.MSBlockConfig(
                num_heads=s.num_heads,
                input_channels=s.input_size,
                output_channels=s.output_size,
                kernel_q=list(config.pool_kernel_size),
                kernel_kv=list(config.pool_kernel_size),
                stride_q=list(s.stride_q),
                stride_kv=list(s.stride_kv),
            )
            for s in mvit_block_settings(config)
        ]
        model = torchvision_mvit.MViT(
            spatial_size=(config.image_size,) * 2,
            temporal_size=config.num_frames,
            block_setting=blocks,
            residual_pool=True,
            residual_with_cls_embed=False,
            rel_pos_embed=True,
            proj_after_attn=True,
            stochastic_depth_prob=0.2,
            num_classes=5,
        )
    _perturb_constants(model)
    return model.eval()


def _aggregator_state(dim: int) -> dict[str, torch.Tensor]:
    """The original EnhancedVideoAggregator's keys at depth 1 (random values: the conversion drops them)."""
    shapes = {
        "pos_encoding": [1, 1024, dim],
        "attn_query": [1, 1, dim],
        "final_ln.weight": [dim],
        "final_ln.bias": [dim],
        "blocks.0.norm1.weight": [dim],
        "blocks.0.norm1.bias": [dim],
        "blocks.0.attn.in_proj_weight": [3 * dim, dim],
        "blocks.0.attn.in_proj_bias": [3 * dim],
        "blocks.0.attn.out_proj.weight": [dim, dim],
        "blocks.0.attn.out_proj.bias": [dim],
        "blocks.0.norm2.weight": [dim],
        "blocks.0.norm2.bias": [dim],
        "blocks.0.mlp.0.weight": [4 * dim, dim],
        "blocks.0.mlp.0.bias": [4 * dim],
        "blocks.0.mlp.3.weight": [dim, 4 * dim],
        "blocks.0.mlp.3.bias": [dim],
    }
    return {f"aggregator.{name}": torch.randn(shape) for name, shape in shapes.items()}


class OriginalVideoEncoder:
    """torchvision MViT + `proj` (Dropout, Linear, GELU, Dropout) as the original VideoEncoder, in eval mode."""

    def __init__(self, video_config: DeepCoroVideoConfig, dim: int):
        self.mvit = _torchvision_mvit(video_config)
        self.proj = nn.Linear(video_config.hidden_size, dim)
        _perturb_constants(self.proj)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"model.{k}": v for k, v in self.mvit.state_dict().items() if not k.startswith("head.")}
        state.update({f"proj.1.{k}": v for k, v in self.proj.state_dict().items()})
        state.update(_aggregator_state(self.proj.out_features))
        return state

    @torch.no_grad()
    def tokens(self, videos_channels_last: torch.Tensor) -> torch.Tensor:
        """`[B, N, T, H, W, C]` (the original's layout) → projected tokens `[B, N, L, D]`."""
        batch, num_videos = videos_channels_last.shape[:2]
        clips = videos_channels_last.permute(0, 1, 5, 2, 3, 4).flatten(0, 1)  # [B·N, C, T, H, W]
        captured = {}
        handle = self.mvit.norm.register_forward_hook(lambda m, a, out: captured.setdefault("tokens", out))
        self.mvit(clips)
        handle.remove()
        tokens = F.gelu(self.proj(captured["tokens"]))
        return tokens.view(batch, num_videos, *tokens.shape[1:])


class OriginalProbe:
    """The original multi-instance head, in eval mode, with its semantics written out (reference-implementation §4)."""

    def __init__(self, video_config, dim, hidden, head_names, pooling="attention+cls_token", separate=True):
        self.encoder = OriginalVideoEncoder(video_config, dim)
        self.gated, self.cls, self.separate = "attention" in pooling, "cls_token" in pooling, separate
        self.modules: dict[str, nn.Module] = {}
        if self.cls:
            self.cls_token = torch.randn(1, 1, dim)
            for level in ("within", "across") if separate else ("",):
                suffix = f"_{level}" if level else ""
                self.modules[f"cls_attention{suffix}"] = nn.MultiheadAttention(dim, 8, batch_first=True)
                self.modules[f"cls_norm{suffix}"] = nn.LayerNorm(dim)
        if self.gated:
            self.modules["attention_V"] = nn.Linear(dim, hidden)
            self.modules["attention_U"] = nn.Linear(dim, hidden)
            self.modules["attention_w"] = nn.Linear(hidden, 1)
        width = dim * (int(self.gated) + int(self.cls))
        self.heads = {name: nn.Linear(width, 1) for name in head_names}
        for module in [*self.modules.values(), *self.heads.values()]:
            _perturb_constants(module)
            module.eval()

    def checkpoint(self, video_prefix="video_encoder.", mil_prefix="mil_model.module.", seed=0) -> dict:
        state = {f"{video_prefix}{k}": v for k, v in self.encoder.state_dict().items()}
        mil = {f"{name}.{k}": v for name, module in self.modules.items() for k, v in module.state_dict().items()}
        if self.cls:
            mil["cls_token"] = self.cls_token
        names = list(self.heads)
        random.Random(seed).shuffle(names)  # the conversion must not depend on the order of the heads
        for name in names:
            mil.update({f"heads.{name}.{k}": v for k, v in self.heads[name].state_dict().items()})
        state.update({f"{mil_prefix}{k}": v for k, v in mil.items()})
        return {
            "linear_probing": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 3e-4, "params": [0, 1]}]},
            "scheduler": {"last_epoch": 11},
            "epoch": 11,
            "scaler": {"scale": 65536.0, "growth_factor": 2.0},
        }

    def _gated_score(self, states: torch.Tensor) -> torch.Tensor:
        m = self.modules
        return m["attention_w"](torch.tanh(m["attention_V"](states)) * torch.sigmoid(m["attention_U"](states)))

    def _cls_attend(self, level: str, sequence: torch.Tensor, key_padding_mask=None) -> torch.Tensor:
        """One attention call over [CLS ∥ sequence], no residual, post-norm, CLS output."""
        suffix = f"_{level}" if self.separate else ""
        attention, norm = self.modules[f"cls_attention{suffix}"], self.modules[f"cls_norm{suffix}"]
        with_cls = torch.cat([self.cls_token.expand(sequence.shape[0], 1, -1), sequence], dim=1)
        if key_padding_mask is not None:
            key_padding_mask = torch.cat([torch.zeros_like(key_padding_mask[:, :1]), key_padding_mask], dim=1)
        out, _ = attention(with_cls, with_cls, with_cls, key_padding_mask=key_padding_mask)
        return norm(out)[:, 0]

    @torch.no_grad()
    def logits(self, videos_channels_last: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.encoder.tokens(videos_channels_last)  # [B, N, L, D]
        batch, num_videos, length, dim = tokens.shape
        pooled = []
        if self.gated:  # patch-level softmax over L (unmasked), then video-level softmax over N (masked)
            patch_weights = self._gated_score(tokens).softmax(dim=2)
            videos = (patch_weights * tokens).sum(dim=2)
            scores = self._gated_score(videos).masked_fill(~mask[..., None], float("-inf"))
            pooled.append((scores.softmax(dim=1) * videos).sum(dim=1))
        if self.cls:  # within each video over its tokens, then across videos with the padding masked
            within = self._cls_attend("within", tokens.reshape(batch * num_videos, length, dim))
            pooled.append(self._cls_attend("across", within.view(batch, num_videos, dim), ~mask))
        study = torch.cat(pooled, dim=-1)  # [gated attention, CLS]
        return {name: head(study)[:, 0] for name, head in self.heads.items()}


def _tiny_video() -> DeepCoroVideoConfig:
    return DeepCoroVideoConfig(**TINY_VIDEO)


def _videos(config: DeepCoroVideoConfig, batch: int, num_videos: int) -> torch.Tensor:
    """Channels-last studies `[B, N, T, H, W, C]` (the original's layout)."""
    return torch.randn(batch, num_videos, config.num_frames, config.image_size, config.image_size, 3)


def _ours(videos_channels_last: torch.Tensor) -> torch.Tensor:
    return videos_channels_last.permute(0, 1, 2, 5, 3, 4).contiguous()  # [B, N, T, C, H, W]


def _assert_logits_match(model: DeepCoroForSegmentClassification, expected: dict, videos, mask) -> None:
    with torch.no_grad():
        logits = model(_ours(videos), video_mask=mask).logits
    config = model.config
    assert logits.shape == (videos.shape[0], config.num_segments, len(config.tasks))
    for name, value in expected.items():
        segment, task = conversion._split_head_name(name)
        row = config.segments.index(segment) if segment is not None else 0
        torch.testing.assert_close(logits[:, row, config.tasks.index(task)], value, rtol=1e-4, atol=1e-4, msg=name)


def _save(checkpoint: dict, path) -> str:
    torch.save(checkpoint, path)
    return str(path)


# ----------------------------------------------------------------------------------------------------------------------
# Probe checkpoints
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_size_probe_through_the_cli_matches_the_original_forward(tmp_path, capsys):
    """The released layout at full size (mvit_v2_s, 512-d MIL head, 90 heads) through `deepcoro convert`."""
    torch.manual_seed(0)
    original = OriginalProbe(DeepCoroVideoConfig(), dim=512, hidden=256, head_names=LABEL_COLUMNS)
    checkpoint = original.checkpoint()
    path = _save(checkpoint, tmp_path / "best_model_epoch_11.pt")
    tokenizer_dir = tmp_path / "tokenizer"
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(tokenizer_dir)
    out = tmp_path / "hf"

    code = cli.main(
        ["convert", path, str(out), "--mean", "110.4955", "--std", "37.8058", "--tokenizer", str(tokenizer_dir)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    num_aggregator = sum(k.startswith("video_encoder.aggregator.") for k in checkpoint["linear_probing"])
    assert f"{num_aggregator} x video_encoder.aggregator." in printed and REASON_AGGREGATOR_PROBE in printed
    assert "4 x epoch, optimizer, scaler ... (1 more)" in printed and REASON_TRAINING_STATE in printed
    # converted: 395 MViT tensors + proj (2) + MIL (19) + 90 heads x 2; dropped: 16 aggregator + 4 training entries
    assert "converted: 596 checkpoint tensors into 426 model weights" in printed

    model = AutoModelForVideoClassification.from_pretrained(out).eval()
    assert isinstance(model, DeepCoroForSegmentClassification)
    config = model.config
    assert config.segments == list(SEGMENT_KEYS) and config.tasks == list(SEGMENT_TASKS)
    assert (config.mil_pooling, config.mil_attention_hidden, config.mil_num_heads) == ("attention+cls_token", 256, 8)
    assert config.mil_separate_video_attention and config.mil_normalization == "post_norm"
    assert mvit_block_settings(config.video_config) == mvit_block_settings(DeepCoroVideoConfig())
    assert (config.video_config.num_frames, config.video_config.image_size) == (16, 224)
    saved = json.loads((out / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForVideoClassification"] == "modeling_deepcoro.DeepCoroForSegmentClassification"
    assert (out / "model.safetensors").is_file() and (out / "modeling_deepcoro.py").is_file()
    processor = AutoProcessor.from_pretrained(out)
    assert list(processor.video_processor.image_mean) == [110.4955] * 3
    assert list(processor.video_processor.image_std) == [37.8058] * 3
    assert processor.tokenizer.convert_tokens_to_ids("stenosis") == WORDS.index("stenosis")

    videos, mask = _videos(config.video_config, 1, 1), torch.ones(1, 1, dtype=torch.bool)
    _assert_logits_match(model, original.logits(videos, mask), videos, mask)


@pytest.mark.parametrize(
    "pooling, separate, video_prefix, mil_prefix",
    [
        ("attention+cls_token", True, "video_encoder.", "mil_model.module."),
        ("attention+cls_token", False, "module.video_encoder.", "module.mil_model."),
        ("attention", True, "video_encoder.", "mil_model."),
        ("cls_token", True, "module.video_encoder.", "module.mil_model.module."),
    ],
)
def test_tiny_probe_matches_the_original_forward_with_padded_videos(
    tmp_path, pooling, separate, video_prefix, mil_prefix
):
    torch.manual_seed(1)
    video_config = _tiny_video()
    names = ["lvp_cto", "prox_rca_stenosis", "mid_lad_cto", "lvp_stenosis", "prox_rca_cto", "mid_lad_stenosis"]
    original = OriginalProbe(video_config, dim=16, hidden=8, head_names=names, pooling=pooling, separate=separate)
    path = _save(original.checkpoint(video_prefix, mil_prefix), tmp_path / "probe.pt")

    report = convert_original_checkpoint(path, tmp_path / "hf", video_config=video_config)
    model = DeepCoroForSegmentClassification.from_pretrained(tmp_path / "hf").eval()
    assert model.config.segments == ["prox_rca", "mid_lad", "lvp"]  # vocabulary order, whatever the file's order
    assert model.config.tasks == ["stenosis", "cto"]
    assert (model.config.mil_pooling, model.config.mil_separate_video_attention) == (
        pooling,
        separate or "cls" not in pooling,
    )
    assert report.kind == "probe" and report.num_dropped == 16 + 4

    videos = _videos(video_config, 2, 3)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    videos[~mask] = 0  # the original's padding videos
    _assert_logits_match(model, original.logits(videos, mask), videos, mask)


def test_study_level_heads_need_types_outside_the_vocabulary(tmp_path):
    torch.manual_seed(2)
    video_config = _tiny_video()
    original = OriginalProbe(video_config, dim=16, hidden=8, head_names=["mace_composite", "MACE_Core_Events_730d"])
    checkpoint = original.checkpoint()
    with pytest.raises(CheckpointConversionError, match=r"\['MACE_Core_Events_730d'\].*--task-type"):
        build_model_from_original(checkpoint, video_config=video_config)
    with pytest.raises(CheckpointConversionError, match="not tasks of this checkpoint"):
        build_model_from_original(checkpoint, video_config=video_config, task_types={"lvef": "regression"})

    model, _ = build_model_from_original(
        checkpoint, video_config=video_config, task_types={"MACE_Core_Events_730d": "binary"}
    )
    assert model.config.segments == [] and set(model.config.tasks) == {"mace_composite", "MACE_Core_Events_730d"}
    assert model.config.task_types == {"mace_composite": "binary", "MACE_Core_Events_730d": "binary"}
    videos, mask = _videos(video_config, 2, 2), torch.ones(2, 2, dtype=torch.bool)
    _assert_logits_match(model, original.logits(videos, mask), videos, mask)


# ----------------------------------------------------------------------------------------------------------------------
# CLIP checkpoints
# ----------------------------------------------------------------------------------------------------------------------
class OriginalClip:
    def __init__(self, video_config: DeepCoroVideoConfig, text_config: BertConfig, dim: int = 16):
        self.video = OriginalVideoEncoder(video_config, dim)
        self.bert = BertModel(text_config, add_pooling_layer=False).eval()
        _perturb_constants(self.bert)
        self.text_proj = nn.Linear(text_config.hidden_size, dim)

    def checkpoint(self, temperature=0.07) -> dict:
        text = {f"bert.{k}": v for k, v in self.bert.state_dict().items()}
        text["bert.embeddings.position_ids"] = torch.arange(self.bert.config.max_position_embeddings)[None]
        text.update({f"proj.1.{k}": v for k, v in self.text_proj.state_dict().items()})
        checkpoint = {
            "video_encoder": self.video.state_dict(),
            "text_encoder": text,
            "optimizer": {"state": {}, "param_groups": []},
            "scheduler": None,
            "epoch": 9,
            "scaler": None,
            "val/loss": 1.25,
            "val/alignment_score": 0.4,
            "best_val_loss": 1.25,
            "best_epoch": 9,
            "highest_alignment_score": 0.4,
            "highest_alignment_epoch": 9,
        }
        if temperature is not None:
            checkpoint["train/temperature"] = temperature
        return checkpoint

    @torch.no_grad()
    def text_features(self, input_ids, attention_mask) -> torch.Tensor:
        """The [CLS] hidden state, projected (no pooler)."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return F.gelu(self.text_proj(hidden[:, 0]))


def test_tiny_clip_matches_the_original_towers_and_temperature(tmp_path):
    torch.manual_seed(3)
    video_config = _tiny_video()
    original = OriginalClip(video_config, BertConfig(**TINY_TEXT))
    path = _save(original.checkpoint(temperature=0.0588), tmp_path / "best_model_epoch_9.pt")
    tokenizer_dir = tmp_path / "tokenizer"
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(tokenizer_dir)

    report = convert_original_checkpoint(path, tmp_path / "hf", tokenizer=tokenizer_dir, video_config=video_config)
    assert report.temperature == pytest.approx(0.0588)
    assert report.dropped[REASON_BERT_BUFFER] == ["text_encoder.bert.embeddings.position_ids"]
    assert len(report.dropped[REASON_AGGREGATOR_CLIP]) == 16
    assert report.dropped[REASON_TRAINING_STATE] == sorted(
        [
            "optimizer",
            "scheduler",
            "epoch",
            "scaler",
            "best_val_loss",
            "best_epoch",
            "highest_alignment_score",
            "highest_alignment_epoch",
        ]
    )
    assert report.dropped[REASON_METRIC] == ["val/alignment_score", "val/loss"]
    assert any("1 heads (assumed hidden/64)" in note for note in report.notes)

    model = AutoModel.from_pretrained(tmp_path / "hf").eval()
    assert isinstance(model, DeepCoroClipModel)
    assert model.config.temperature == pytest.approx(0.0588)
    assert model.similarity.log_temperature.item() == pytest.approx(math.log(0.0588))
    assert model.config.text_config.num_attention_heads == 1 and model.config.text_config.vocab_size == 30

    processor = AutoProcessor.from_pretrained(tmp_path / "hf")
    assert list(processor.video_processor.image_mean) == [122.0901] * 3 and processor.video_processor.num_frames == 4
    batch = processor(text=["the lad has severe stenosis .", "no stenosis"], return_tensors="pt")
    with torch.no_grad():
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(
        text, original.text_features(batch["input_ids"], batch["attention_mask"]), rtol=1e-4, atol=1e-5
    )

    videos = _videos(video_config, 2, 3)
    tokens = original.video.tokens(videos)  # [B, N, L, D]
    with torch.no_grad():
        clips = model.get_video_features(_ours(videos)[:, 0])
        mask = torch.tensor([[True, True, False], [True, False, True]])
        studies = model.get_video_features(_ours(videos), video_mask=mask)
    torch.testing.assert_close(clips, tokens[:, 0].mean(dim=1), rtol=1e-4, atol=1e-5)
    expected = torch.stack([tokens[b][mask[b]].mean(dim=1).mean(dim=0) for b in range(2)])
    torch.testing.assert_close(studies, expected, rtol=1e-4, atol=1e-5)


def test_clip_text_config_from_a_folder_and_missing_temperature(tmp_path, caplog):
    torch.manual_seed(4)
    video_config = _tiny_video()
    text_config = BertConfig(**{**TINY_TEXT, "num_attention_heads": 2})  # not what hidden/64 would guess
    text_config.save_pretrained(tmp_path / "text")
    original = OriginalClip(video_config, text_config)
    path = _save(original.checkpoint(temperature=None), tmp_path / "clip.pt")

    with caplog.at_level(logging.INFO, logger="deepcoro_hf.conversion"):
        report = convert_original_checkpoint(
            path, tmp_path / "hf", text_config=tmp_path / "text", video_config=video_config
        )
    assert report.temperature is None and "no train/temperature" in caplog.text
    model = DeepCoroClipModel.from_pretrained(tmp_path / "hf").eval()
    assert model.config.text_config.num_attention_heads == 2
    assert model.similarity.log_temperature.item() == pytest.approx(math.log(model.config.temperature))
    ids = torch.tensor([[2, 5, 6, 8, 9, 10, 3, 0]])
    attention = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(
            model.get_text_features(ids, attention), original.text_features(ids, attention), rtol=1e-4, atol=1e-5
        )
    assert not (tmp_path / "hf" / "tokenizer_config.json").exists()  # no tokenizer given: video processor only
    assert (tmp_path / "hf" / "video_preprocessor_config.json").is_file()


def test_a_tokenizer_larger_than_the_text_vocabulary_is_refused(tmp_path):
    torch.manual_seed(7)
    video_config = _tiny_video()
    path = _save(OriginalClip(video_config, BertConfig(**TINY_TEXT)).checkpoint(), tmp_path / "clip.pt")
    words = WORDS + [f"word{i}" for i in range(40)]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(tmp_path / "tokenizer")
    with pytest.raises(CheckpointConversionError, match="has 53 tokens but the text tower's vocabulary holds 30"):
        convert_original_checkpoint(path, tmp_path / "hf", tokenizer=tmp_path / "tokenizer", video_config=video_config)
    assert not (tmp_path / "hf").exists()


def test_infer_text_config_reads_the_shapes():
    state = BertModel(
        BertConfig(**{**TINY_TEXT, "num_hidden_layers": 3, "type_vocab_size": 3}), add_pooling_layer=False
    ).state_dict()
    config = infer_text_config(state)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        30,
        64,
        3,
        1,
    )
    assert (config.intermediate_size, config.max_position_embeddings, config.type_vocab_size) == (32, 16, 3)
    narrow = BertModel(
        BertConfig(**{**TINY_TEXT, "hidden_size": 48, "num_attention_heads": 2}), add_pooling_layer=False
    )
    with pytest.raises(CheckpointConversionError, match="--text-config"):
        infer_text_config(narrow.state_dict())


# ----------------------------------------------------------------------------------------------------------------------
# Strictness and safety
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_probe_checkpoint():
    torch.manual_seed(5)
    original = OriginalProbe(
        _tiny_video(),
        dim=16,
        hidden=8,
        head_names=["prox_rca_stenosis", "prox_rca_cto", "mid_lad_stenosis", "mid_lad_cto"],
    )
    return original.checkpoint()


def _convert_fails(checkpoint, match, **kwargs):
    with pytest.raises(CheckpointConversionError, match=match):
        build_model_from_original(checkpoint, video_config=kwargs.pop("video_config", _tiny_video()), **kwargs)


def test_unexpected_keys_are_named(tiny_probe_checkpoint):
    state = tiny_probe_checkpoint["linear_probing"]
    state["video_encoder.model.blocks.0.attn.extra_scale"] = torch.ones(1)
    state["mil_model.module.view_embedding.weight"] = torch.zeros(5, 16)
    tiny_probe_checkpoint["ema_state"] = {}
    _convert_fails(
        tiny_probe_checkpoint,
        r"no counterpart in DeepCoroForSegmentClassification: ema_state, mil_model\.module\.view_embedding\.weight, "
        r"video_encoder\.model\.blocks\.0\.attn\.extra_scale",
    )


@pytest.mark.parametrize(
    "key",
    [
        "video_encoder.model.blocks.0.attn.qkv.weight",
        "video_encoder.proj.1.bias",
        "mil_model.module.attention_w.bias",  # the original's nn.Linear has a bias: no zeros are invented
        "mil_model.module.cls_norm_across.weight",
        "mil_model.module.heads.mid_lad_cto.bias",
    ],
)
def test_missing_weights_are_named_as_the_checkpoint_spells_them(tiny_probe_checkpoint, key):
    del tiny_probe_checkpoint["linear_probing"][key]
    _convert_fails(tiny_probe_checkpoint, "weights missing from the checkpoint: " + re.escape(key))


def test_heads_must_form_a_single_output_grid(tiny_probe_checkpoint):
    state = tiny_probe_checkpoint["linear_probing"]
    incomplete = {k: v for k, v in state.items() if ".heads.mid_lad_cto." not in k}
    _convert_fails({"linear_probing": incomplete}, r"missing heads: mid_lad_cto")
    state["mil_model.module.heads.prox_rca_cto.weight"] = torch.zeros(3, 32)
    state["mil_model.module.heads.prox_rca_cto.bias"] = torch.zeros(3)
    _convert_fails(tiny_probe_checkpoint, r"heads\.prox_rca_cto\.weight has shape \[3, 32\]; only single-output")


def test_shape_mismatches_and_wrong_kind_fail(tiny_probe_checkpoint):
    wider = DeepCoroVideoConfig(**{**TINY_VIDEO, "hidden_sizes": [8, 24], "num_heads": [1, 3]})
    _convert_fails(tiny_probe_checkpoint, r"shape mismatches: .*video_encoder\.model\.", video_config=wider)
    _convert_fails(tiny_probe_checkpoint, "is a probe checkpoint, not a clip one", kind="clip")
    _convert_fails({"state_dict": {}}, r"not an original DeepCORO-CLIP checkpoint: top-level keys state_dict")


def test_pickled_objects_are_refused_unless_allowed(tmp_path, caplog):
    torch.manual_seed(6)
    video_config = _tiny_video()
    checkpoint = OriginalClip(video_config, BertConfig(**TINY_TEXT)).checkpoint()
    checkpoint["val/auc"] = np.float64(0.81)  # what metric entries of the research runs hold
    path = _save(checkpoint, tmp_path / "clip.pt")
    with pytest.raises(PickledCheckpointError, match=r"numpy\S*scalar.*--allow-pickle"):
        convert_original_checkpoint(path, tmp_path / "refused", video_config=video_config)
    assert not (tmp_path / "refused").exists()

    with caplog.at_level(logging.WARNING, logger="deepcoro_hf.conversion"):
        report = convert_original_checkpoint(path, tmp_path / "hf", allow_pickle=True, video_config=video_config)
    assert "weights_only=False" in caplog.text and "trusted source" in caplog.text
    assert "val/auc" in report.dropped[REASON_METRIC]


def test_a_file_that_is_no_checkpoint_is_not_called_a_pickle(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    expected = r"notes\.pt is not a .*checkpoint.*expected a file written by torch\.save"
    with pytest.raises(CheckpointConversionError, match=expected) as caught:
        convert_original_checkpoint(path, tmp_path / "hf")
    assert not isinstance(caught.value, PickledCheckpointError)
    assert not (tmp_path / "hf").exists()


def test_cli_reports_errors_in_one_line(tmp_path, tiny_probe_checkpoint, capsys):
    path = _save(tiny_probe_checkpoint, tmp_path / "probe.pt")
    assert cli.main(["convert", path, str(tmp_path / "hf"), "--mean", "110.4955"]) == 1
    assert "give --mean and --std together" in capsys.readouterr().err
    assert cli.main(["convert", path, str(tmp_path / "hf"), "--mean", "300", "--std", "10"]) == 1
    assert "mean must be a pixel value in 0-255 units, got 300.0" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "other.txt").write_text("x")
    assert cli.main(["convert", path, str(tmp_path / "busy")]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "absent.pt"), str(tmp_path / "hf")]) == 1
    assert "no such checkpoint file" in capsys.readouterr().err
    # a checkpoint of the tiny tower does not fit the default mvit_v2_s: one line naming the mismatch
    assert cli.main(["convert", path, str(tmp_path / "hf"), "--kind", "probe"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shape mismatches" in err


def test_torchvision_names_invert_the_key_conversion():
    with torch.device("meta"):
        reference = torchvision_mvit.mvit_v2_s()
    keys = [k for k in reference.state_dict() if not k.startswith("head.")]
    assert [conversion._torchvision_name(convert_torchvision_key(k)) for k in keys] == keys
