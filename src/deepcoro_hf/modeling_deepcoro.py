"""DeepCORO-CLIP: an MViT-v2 video tower and a BERT text tower aligned by contrastive learning, and a multi-instance
study classifier that grades 18 coronary segments from up to 10 angiographic videos.

Read bottom-up like a transformers model file: outputs → MViT-v2 pieces → video tower → projection and study pooling
→ losses → the public models. Only torch, transformers and sibling modules are imported, so the file works as Hub
remote code.
"""

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .configuration_deepcoro import DeepCoroClipConfig, DeepCoroVideoConfig


logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class DeepCoroVideoModelOutput(ModelOutput):
    """
    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
            Tokens after the final layer norm: the class token at index 0, then the (t, h, w) token grid in
            row-major order (393 × 768 for the default 16×224×224 input).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            Tokens after the patch embedding and after every block (their grid shrinks and widths grow by stage).
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class DeepCoroClipOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `return_loss=True`):
            Contrastive loss of the configured `loss_type`.
        logits_per_video (`torch.FloatTensor` of shape `(video_batch, text_batch)`):
            Cosine similarities divided by the temperature (plus the learned bias for SigLIP).
        logits_per_text (`torch.FloatTensor` of shape `(text_batch, video_batch)`):
            The transpose of `logits_per_video`.
        video_embeds (`torch.FloatTensor` of shape `(video_batch, projection_dim)`):
            L2-normalised video (or study) embeddings.
        text_embeds (`torch.FloatTensor` of shape `(text_batch, projection_dim)`):
            L2-normalised report embeddings.
    """

    loss: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


@dataclass
class DeepCoroSegmentClassifierOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            Sum over heads (segment × task) of each head's mean loss over the studies that have its label:
            Huber (weighted by `regression_loss_weight`) for regression tasks, BCE-with-logits for binary ones.
        logits (`torch.FloatTensor` of shape `(batch_size, num_segments, num_tasks)`):
            Raw outputs in `config.segments` × `config.tasks` order: label units (stenosis %) for regression tasks,
            logits (apply a sigmoid) for binary tasks.
        study_embeds (`torch.FloatTensor` of shape `(batch_size, pooled_dim)`):
            The pooled study vector the heads read (1024 for the released `attention+cls_token` head).
        cls_attention_weights (`torch.FloatTensor` of shape `(batch_size, num_videos)`, *optional*):
            Across-video attention of the study CLS token over the videos, averaged over heads and renormalised over
            the videos (sums to 1 per study; 0 for padded videos).
        gated_attention_weights (`torch.FloatTensor` of shape `(batch_size, num_videos)`, *optional*):
            Video-level weights of the gated attention pooling (0 for padded videos).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    study_embeds: torch.FloatTensor | None = None
    cls_attention_weights: torch.FloatTensor | None = None
    gated_attention_weights: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# MViT-v2 building blocks
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MViTBlockSetting:
    """What one MViT block does: widths, heads and the pooling strides of queries and keys/values."""

    input_size: int
    output_size: int
    num_heads: int
    stride_q: tuple[int, int, int]
    stride_kv: tuple[int, int, int]


def mvit_block_settings(config: DeepCoroVideoConfig) -> list[MViTBlockSetting]:
    """Expand the stage description of `config` into one setting per block.

    The first block of every later stage widens the channels and pools the queries; the key/value stride starts at
    `pool_kv_stride` and is divided by each query stride, so keys and values keep a constant grid size.
    """
    settings = []
    kv_stride = tuple(config.pool_kv_stride)
    width = config.hidden_sizes[0]
    for stage, depth in enumerate(config.depths):
        for index in range(depth):
            transition = stage > 0 and index == 0
            stride_q = tuple(config.pool_q_stride) if transition else (1, 1, 1)
            if transition:
                kv_stride = tuple(max(kv // q, 1) for kv, q in zip(kv_stride, config.pool_q_stride))
            settings.append(
                MViTBlockSetting(width, config.hidden_sizes[stage], config.num_heads[stage], stride_q, kv_stride)
            )
            width = config.hidden_sizes[stage]
    return settings


class DeepCoroDropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch for a random subset of the clips during training."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1.0 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
        return hidden_states * keep / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def _split_class_token(tokens: torch.Tensor, thw: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., 1 + t·h·w, C] → class token [..., 1, C] and the grid as [prod(...), C, t, h, w] for 3-D pooling.

    Tokens already lie channel-last in memory, so the grid is a channels-last view rather than a copy; oneDNN's
    channels-last depth-wise convolutions are also markedly faster on CPU, backward pass included."""
    class_token, grid = tokens[..., :1, :], tokens[..., 1:, :]
    grid = grid.reshape(-1, *thw, grid.shape[-1]).permute(0, 4, 1, 2, 3)
    return class_token, grid


def _merge_class_token(class_token: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Inverse of `_split_class_token` after pooling: the pooled grid goes back to token order behind the class token."""
    lead = class_token.shape[:-2]
    grid = grid.permute(0, 2, 3, 4, 1).reshape(*lead, -1, grid.shape[1])
    return torch.cat((class_token, grid), dim=-2)


class DeepCoroAttentionPool(nn.Module):
    """Depth-wise 3-D convolution that pools one of q, k, v per head, followed by a layer norm (MViT-v2)."""

    def __init__(self, head_dim: int, kernel_size: tuple[int, ...], stride: tuple[int, ...], eps: float):
        super().__init__()
        self.conv = nn.Conv3d(
            head_dim, head_dim, kernel_size, stride=stride, padding=[k // 2 for k in kernel_size], groups=head_dim, bias=False
        )
        self.norm = nn.LayerNorm(head_dim, eps=eps)

    def forward(self, states: torch.Tensor, thw: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        # states: [batch, heads, 1 + t·h·w, head_dim]
        class_token, grid = _split_class_token(states, thw)
        grid = self.conv(grid)
        pooled_thw = tuple(grid.shape[-3:])
        return self.norm(_merge_class_token(class_token, grid)), pooled_thw


def _relative_position_index(q_size: int, k_size: int) -> torch.Tensor:
    """Index into a relative-position table of length 2·max(q, k) − 1 for every (query, key) pair along one axis.

    When queries and keys live on grids of different resolution, both coordinates are first scaled to the finer grid
    (MViT-v2's rule), so pooled keys look up the same table entries as the positions they summarise.
    """
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size)[:, None] * q_scale
    k_coords = torch.arange(k_size)[None, :] * k_scale
    return (q_coords - k_coords + (k_size - 1) * k_scale).long()


def _resize_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resample a relative-position table when the grid differs from the one it was trained for."""
    if table.shape[0] == length:
        return table
    return F.interpolate(table.t()[None], size=length, mode="linear")[0].t()


def relative_position_bias(
    query: torch.Tensor,
    q_thw: tuple[int, int, int],
    k_thw: tuple[int, int, int],
    tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Decomposed relative-position term of MViT-v2 as an additive attention bias.

    For a query at (t, h, w) and a key at (t', h', w'), the bias is q·R_t[t, t'] + q·R_h[h, h'] + q·R_w[w, w'].
    The class-token row and column get no bias. Returns `[batch, heads, 1 + q_tokens, 1 + k_tokens]`.
    """
    batch, heads, _, head_dim = query.shape
    grid_query = query[:, :, 1:].reshape(batch, heads, *q_thw, head_dim)
    rel_t, rel_h, rel_w = (
        _resize_table(table, 2 * max(q_size, k_size) - 1)[_relative_position_index(q_size, k_size).to(table.device)]
        for q_size, k_size, table in zip(q_thw, k_thw, tables)
    )  # each [q_size, k_size, head_dim]
    bias_t = torch.einsum("bnthwc,tkc->bnthwk", grid_query, rel_t)
    bias_h = torch.einsum("bnthwc,hkc->bnthwk", grid_query, rel_h)
    bias_w = torch.einsum("bnthwc,wkc->bnthwk", grid_query, rel_w)
    # Write the three broadcast terms straight into the padded bias: this tensor is the largest of the block, so no
    # temporary sums and no separate padding copy.
    bias = query.new_zeros(batch, heads, 1 + math.prod(q_thw), 1 + math.prod(k_thw))
    grid_bias = bias[:, :, 1:, 1:].view(batch, heads, *q_thw, *k_thw)
    grid_bias.copy_(bias_t[..., :, None, None])
    grid_bias.add_(bias_h[..., None, :, None])
    grid_bias.add_(bias_w[..., None, None, :])
    return bias


class DeepCoroVideoAttention(nn.Module):
    """Multiscale pooling attention of MViT-v2 with decomposed relative positions and residual pooling.

    Queries, keys and values are pooled by depth-wise convolutions; attention runs through
    `scaled_dot_product_attention` with the relative-position term as an additive bias, and the pooled query is
    added back to the output (residual pooling, class token excluded).
    """

    def __init__(self, config: DeepCoroVideoConfig, setting: MViTBlockSetting, input_thw: tuple[int, int, int]):
        super().__init__()
        self.num_heads = setting.num_heads
        self.head_dim = setting.output_size // setting.num_heads
        self.output_size = setting.output_size
        # Relative-position tables cover the largest of the query and key grids of this block (as torchvision).
        size = max(input_thw[1:])
        spatial = 2 * max(size // setting.stride_q[1], size // setting.stride_kv[1]) - 1
        self.rel_pos_h = nn.Parameter(torch.zeros(spatial, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(spatial, self.head_dim))
        self.rel_pos_t = nn.Parameter(torch.zeros(2 * input_thw[0] - 1, self.head_dim))
        self.qkv = nn.Linear(setting.input_size, 3 * setting.output_size)
        kernel = tuple(config.pool_kernel_size)
        eps = config.layer_norm_eps
        self.pool_q = DeepCoroAttentionPool(self.head_dim, kernel, setting.stride_q, eps)
        self.pool_k = DeepCoroAttentionPool(self.head_dim, kernel, setting.stride_kv, eps)
        self.pool_v = DeepCoroAttentionPool(self.head_dim, kernel, setting.stride_kv, eps)
        self.proj = nn.Linear(setting.output_size, setting.output_size)
        self.proj_dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self, hidden_states: torch.Tensor, thw: tuple[int, int, int]
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        batch, tokens, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [batch, heads, tokens, head_dim]
        key, k_thw = self.pool_k(key, thw)
        value, _ = self.pool_v(value, thw)
        query, q_thw = self.pool_q(query, thw)

        bias = relative_position_bias(query, q_thw, k_thw, (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w))
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype))
        # Residual pooling: add the pooled query to every grid token (not to the class token).
        attended = torch.cat((attended[:, :, :1], attended[:, :, 1:] + query[:, :, 1:]), dim=2)
        attended = attended.transpose(1, 2).reshape(batch, -1, self.output_size)
        return self.proj_dropout(self.proj(attended)), q_thw


class DeepCoroVideoMLP(nn.Module):
    def __init__(self, config: DeepCoroVideoConfig, width: int, output_size: int):
        super().__init__()
        self.fc1 = nn.Linear(width, int(config.mlp_ratio * width))
        self.fc2 = nn.Linear(int(config.mlp_ratio * width), output_size)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(F.gelu(self.fc1(hidden_states)))
        return self.dropout(self.fc2(hidden_states))


class DeepCoroVideoLayer(GradientCheckpointingLayer):
    """One multiscale block: pooling attention and an MLP, each with a (pooled) residual and stochastic depth.

    Modules are registered in torchvision's order so parameter listings line up with the original checkpoints.
    """

    def __init__(
        self,
        config: DeepCoroVideoConfig,
        setting: MViTBlockSetting,
        input_thw: tuple[int, int, int],
        drop_path: float,
    ):
        super().__init__()
        eps = config.layer_norm_eps
        self.norm1 = nn.LayerNorm(setting.input_size, eps=eps)
        self.norm2 = nn.LayerNorm(setting.output_size, eps=eps)
        self.attention = DeepCoroVideoAttention(config, setting, input_thw)
        self.mlp = DeepCoroVideoMLP(config, setting.output_size, setting.output_size)
        # A block that widens the channels projects its (normalised) input for the residual path.
        self.proj = nn.Linear(setting.input_size, setting.output_size) if setting.input_size != setting.output_size else None
        self.drop_path = DeepCoroDropPath(drop_path)
        self.skip_pool = None
        if math.prod(setting.stride_q) > 1:
            kernel = [s + 1 if s > 1 else s for s in setting.stride_q]
            self.skip_pool = nn.MaxPool3d(kernel, stride=setting.stride_q, padding=[k // 2 for k in kernel])

    def forward(
        self, hidden_states: torch.Tensor, thw: tuple[int, int, int]
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        normed = self.norm1(hidden_states)
        attended, new_thw = self.attention(normed, thw)
        residual = hidden_states if self.proj is None else self.proj(normed)
        if self.skip_pool is not None:
            class_token, grid = _split_class_token(residual, thw)
            residual = _merge_class_token(class_token, self.skip_pool(grid))
        hidden_states = residual + self.drop_path(attended)
        hidden_states = hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))
        return hidden_states, new_thw


class DeepCoroVideoEmbeddings(nn.Module):
    """3×7×7 convolutional patch embedding (stride 2×4×4) followed by a learned class token; positions are relative."""

    def __init__(self, config: DeepCoroVideoConfig):
        super().__init__()
        self.patch_embeddings = nn.Conv3d(
            config.num_channels,
            config.hidden_sizes[0],
            kernel_size=tuple(config.patch_kernel_size),
            stride=tuple(config.patch_stride),
            padding=tuple(config.patch_padding),
        )
        self.cls_token = nn.Parameter(torch.zeros(config.hidden_sizes[0]))

    def forward(self, pixel_values_videos: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        # [batch, frames, channels, height, width] → [batch, channels, frames, height, width] for Conv3d
        patches = self.patch_embeddings(pixel_values_videos.transpose(1, 2))
        thw = tuple(patches.shape[-3:])
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.shape[0], 1, -1).to(patches.dtype)
        return torch.cat((cls, patches), dim=1), thw


class DeepCoroVideoEncoder(nn.Module):
    def __init__(self, config: DeepCoroVideoConfig):
        super().__init__()
        settings = mvit_block_settings(config)
        thw = (config.num_frames // config.patch_stride[0],) + (config.image_size // config.patch_stride[1],) * 2
        layers = []
        for index, setting in enumerate(settings):
            drop_path = config.stochastic_depth_prob * index / max(len(settings) - 1, 1)
            layers.append(DeepCoroVideoLayer(config, setting, thw, drop_path))
            thw = tuple(size // stride for size, stride in zip(thw, setting.stride_q))
        self.layers = nn.ModuleList(layers)

    def forward(
        self, hidden_states: torch.Tensor, thw: tuple[int, int, int], output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states, thw = layer(hidden_states, thw)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states


# ----------------------------------------------------------------------------------------------------------------------
# Pretrained-model base
# ----------------------------------------------------------------------------------------------------------------------
class DeepCoroPreTrainedModel(PreTrainedModel):
    config: DeepCoroClipConfig
    base_model_prefix = "deepcoro"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["DeepCoroVideoLayer", "BertLayer"]
    _supports_sdpa = True
    # Every Auto entry point is written into a saved config, so one folder loads through `AutoModel` (the CLIP model)
    # and `AutoModelForVideoClassification` (the segment classifier, e.g. initialised from a CLIP checkpoint) alike.
    _remote_auto_map = {
        "AutoConfig": "configuration_deepcoro.DeepCoroClipConfig",
        "AutoModel": "modeling_deepcoro.DeepCoroClipModel",
        "AutoModelForVideoClassification": "modeling_deepcoro.DeepCoroForSegmentClassification",
    }

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self._remote_auto_map}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv3d):
            # PyTorch's default convolution init (what torchvision's MViT uses).
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * math.prod(module.weight.shape[2:])
                init.uniform_(module.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, DeepCoroVideoEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
        elif isinstance(module, DeepCoroVideoAttention):
            for table in (module.rel_pos_h, module.rel_pos_w, module.rel_pos_t):
                init.trunc_normal_(table, std=std)
        elif isinstance(module, DeepCoroMultiInstancePooling):
            module.reset_parameters()
        elif isinstance(module, DeepCoroForSegmentClassification):
            for head in module.heads.values():
                init.xavier_uniform_(head.weight)
                init.zeros_(head.bias)
        elif isinstance(module, DeepCoroSimilarity):
            init.constant_(module.log_temperature, math.log(self.config.temperature))
            if module.siglip_bias is not None:
                init.constant_(module.siglip_bias, float(self.config.siglip_bias_init))


# ----------------------------------------------------------------------------------------------------------------------
# Video tower
# ----------------------------------------------------------------------------------------------------------------------
# torchvision `mvit_v2_s` parameter names → ours. The classifier (`head.*`) has no counterpart and is dropped.
_TORCHVISION_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^conv_proj\.", "embeddings.patch_embeddings."),
    (r"^pos_encoding\.class_token$", "embeddings.cls_token"),
    (r"^blocks\.(\d+)\.attn\.project\.0\.", r"encoder.layers.\1.attention.proj."),
    (r"^blocks\.(\d+)\.attn\.pool_([qkv])\.pool\.", r"encoder.layers.\1.attention.pool_\2.conv."),
    (r"^blocks\.(\d+)\.attn\.pool_([qkv])\.norm_act\.0\.", r"encoder.layers.\1.attention.pool_\2.norm."),
    (r"^blocks\.(\d+)\.attn\.(qkv\.|rel_pos_[thw]$)", r"encoder.layers.\1.attention.\2"),
    (r"^blocks\.(\d+)\.mlp\.0\.", r"encoder.layers.\1.mlp.fc1."),
    (r"^blocks\.(\d+)\.mlp\.3\.", r"encoder.layers.\1.mlp.fc2."),
    (r"^blocks\.(\d+)\.project\.", r"encoder.layers.\1.proj."),
    (r"^blocks\.(\d+)\.(norm[12])\.", r"encoder.layers.\1.\2."),
    (r"^norm\.", "layernorm."),
)


def convert_torchvision_key(key: str) -> str | None:
    """Our parameter name for a torchvision MViT key; `None` for its classification head (not part of the tower)."""
    if key.startswith("head."):
        return None
    for pattern, replacement in _TORCHVISION_KEY_RULES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    raise KeyError(f"no DeepCoroVideoModel counterpart for torchvision MViT key {key!r}")


class DeepCoroVideoModel(DeepCoroPreTrainedModel):
    """MViT-v2 video tower: clips `[batch, frames, 3, height, width]` → tokens `[batch, 1 + t·h·w, hidden_size]`."""

    config: DeepCoroVideoConfig
    config_class = DeepCoroVideoConfig
    input_modalities = ("video",)
    _remote_auto_map = {
        "AutoConfig": "configuration_deepcoro.DeepCoroVideoConfig",
        "AutoModel": "modeling_deepcoro.DeepCoroVideoModel",
    }

    def __init__(self, config: DeepCoroVideoConfig):
        super().__init__(config)
        self.embeddings = DeepCoroVideoEmbeddings(config)
        self.encoder = DeepCoroVideoEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DeepCoroVideoModelOutput | tuple:
        _check_clip_shape(pixel_values_videos, self.config)
        output_hidden_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden_states, thw = self.embeddings(pixel_values_videos)
        hidden_states, all_hidden_states = self.encoder(hidden_states, thw, output_hidden_states=bool(output_hidden_states))
        hidden_states = self.layernorm(hidden_states)
        if not return_dict:
            return tuple(v for v in (hidden_states, all_hidden_states) if v is not None)
        return DeepCoroVideoModelOutput(last_hidden_state=hidden_states, hidden_states=all_hidden_states)

    @classmethod
    def from_torchvision(
        cls, module_or_state_dict: "nn.Module | dict[str, torch.Tensor]", config: DeepCoroVideoConfig | None = None
    ) -> "DeepCoroVideoModel":
        """Build a video tower carrying the weights of a torchvision MViT-v2 (`torchvision.models.video.mvit_v2_s()` or a
        custom-block `MViT`), or of its state dict.

        With a module the architecture is read from the module itself; with a state dict `config` describes it
        (default: `mvit_v2_s`). Every tower weight must be present and every key (except the classifier) used.
        """
        if isinstance(module_or_state_dict, nn.Module):
            if config is None:
                config = _config_from_torchvision(module_or_state_dict)
            state_dict = module_or_state_dict.state_dict()
        else:
            state_dict = module_or_state_dict
        config = config if config is not None else DeepCoroVideoConfig()
        converted = {}
        for key, tensor in state_dict.items():
            new_key = convert_torchvision_key(key)
            if new_key is not None:
                converted[new_key] = tensor
        model = cls(config)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(converted))
        unexpected = sorted(set(converted) - set(expected))
        mismatched = sorted(k for k in set(expected) & set(converted) if expected[k].shape != converted[k].shape)
        if missing or unexpected or mismatched:
            details = [f"{name}: {keys[:8]}{' ...' if len(keys) > 8 else ''}" for name, keys in
                       (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if keys]
            raise ValueError(f"torchvision weights do not fit {config.__class__.__name__}: " + "; ".join(details))
        model.load_state_dict(converted, strict=True)
        return model


def _config_from_torchvision(module: nn.Module) -> DeepCoroVideoConfig:
    """Read a stage description off a torchvision `MViT` and check it reproduces every block exactly."""
    conv = module.conv_proj
    encoding = module.pos_encoding
    if encoding.spatial_size[0] != encoding.spatial_size[1]:
        raise ValueError(f"only square inputs are supported, this MViT expects {encoding.spatial_size} tokens")
    blocks = list(module.blocks)
    hidden_sizes, depths, num_heads = [blocks[0].attn.output_dim], [0], [blocks[0].attn.num_heads]
    pool_q_stride = (1, 1, 1)
    for block in blocks:
        if block.attn.output_dim != hidden_sizes[-1]:
            hidden_sizes.append(block.attn.output_dim)
            num_heads.append(block.attn.num_heads)
            depths.append(0)
            pool_q_stride = tuple(block.attn.pool_q.pool.stride)
        depths[-1] += 1
    first = blocks[0].attn
    config = DeepCoroVideoConfig(
        num_frames=encoding.temporal_size * conv.stride[0],
        image_size=encoding.spatial_size[0] * conv.stride[1],
        num_channels=conv.in_channels,
        hidden_sizes=hidden_sizes,
        depths=depths,
        num_heads=num_heads,
        patch_kernel_size=list(conv.kernel_size),
        patch_stride=list(conv.stride),
        patch_padding=list(conv.padding),
        pool_kernel_size=list(first.pool_q.pool.kernel_size),
        pool_q_stride=list(pool_q_stride if len(hidden_sizes) > 1 else (1, 2, 2)),
        pool_kv_stride=list(first.pool_k.pool.stride),
        layer_norm_eps=module.norm.eps,
        stochastic_depth_prob=round(float(blocks[-1].stochastic_depth.p), 12),  # p·(n−1)/(n−1) is not exact in floats
    )
    for index, (block, setting) in enumerate(zip(blocks, mvit_block_settings(config))):
        actual = (
            block.norm1.normalized_shape[0], block.attn.output_dim, block.attn.num_heads,
            tuple(block.attn.pool_q.pool.stride), tuple(block.attn.pool_k.pool.stride),
        )
        wanted = (setting.input_size, setting.output_size, setting.num_heads, setting.stride_q, setting.stride_kv)
        if actual != wanted:
            raise ValueError(
                f"torchvision block {index} (in, out, heads, q stride, kv stride) = {actual} cannot be expressed as "
                f"stages; the nearest stage description gives {wanted}"
            )
    return config


# ----------------------------------------------------------------------------------------------------------------------
# Input checks, projection and study pooling
# ----------------------------------------------------------------------------------------------------------------------
def _check_clip_shape(pixel_values_videos: torch.Tensor, config: DeepCoroVideoConfig) -> None:
    if not isinstance(pixel_values_videos, torch.Tensor):
        raise ValueError(f"pixel_values_videos must be a torch.Tensor, got {type(pixel_values_videos).__name__}")
    if not pixel_values_videos.is_floating_point():
        raise ValueError(
            f"pixel_values_videos must be a floating-point tensor of normalised pixels, got {pixel_values_videos.dtype}; "
            "run the videos through DeepCoroVideoProcessor first"
        )
    expected = (config.num_frames, config.num_channels, config.image_size, config.image_size)
    if pixel_values_videos.ndim != 5 or tuple(pixel_values_videos.shape[1:]) != expected:
        raise ValueError(
            f"pixel_values_videos must have shape [batch, {', '.join(map(str, expected))}] "
            f"(batch, frames, channels, height, width), got {list(pixel_values_videos.shape)}"
        )


def prepare_video_inputs(
    pixel_values_videos: torch.Tensor,
    video_mask: torch.Tensor | None,
    config: DeepCoroClipConfig,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate `[B, T, C, H, W]` clips or `[B, N, T, C, H, W]` studies and return the clips to encode.

    For studies, only the valid videos are returned (`[V, T, C, H, W]`) together with the boolean `[B, N]` mask, so
    padded videos are never computed and cannot influence any output.
    """
    video_config = config.video_config
    expected = (video_config.num_frames, video_config.num_channels, video_config.image_size, video_config.image_size)
    if not isinstance(pixel_values_videos, torch.Tensor):
        raise ValueError(f"pixel_values_videos must be a torch.Tensor, got {type(pixel_values_videos).__name__}")
    if pixel_values_videos.ndim == 5:
        if video_mask is not None:
            raise ValueError(
                "video_mask is only meaningful for studies: pass pixel_values_videos as [batch, videos, "
                f"{', '.join(map(str, expected))}] with video_mask [batch, videos]"
            )
        _check_clip_shape(pixel_values_videos, video_config)
        return pixel_values_videos, None
    if pixel_values_videos.ndim != 6 or tuple(pixel_values_videos.shape[2:]) != expected:
        raise ValueError(
            f"pixel_values_videos must be clips [batch, {', '.join(map(str, expected))}] or studies "
            f"[batch, videos, {', '.join(map(str, expected))}], got {list(pixel_values_videos.shape)}"
        )
    batch, num_videos = pixel_values_videos.shape[:2]
    if num_videos > config.max_videos:
        raise ValueError(f"studies hold at most max_videos={config.max_videos} videos, got {num_videos}")
    if video_mask is None:
        video_mask = torch.ones(batch, num_videos, dtype=torch.bool, device=pixel_values_videos.device)
    if not isinstance(video_mask, torch.Tensor) or tuple(video_mask.shape) != (batch, num_videos):
        shape = list(video_mask.shape) if isinstance(video_mask, torch.Tensor) else type(video_mask).__name__
        raise ValueError(f"video_mask must have shape [batch, videos] = [{batch}, {num_videos}], got {shape}")
    if video_mask.dtype != torch.bool:
        if video_mask.is_floating_point() or video_mask.is_complex() or ((video_mask != 0) & (video_mask != 1)).any():
            raise ValueError(f"video_mask must be boolean or 0/1 integers, got {video_mask.dtype} values")
        video_mask = video_mask.bool()
    empty = (~video_mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"studies {empty} have no valid video (video_mask is all zero); every study needs at least one")
    videos = pixel_values_videos[video_mask]
    _check_clip_shape(videos, video_config)
    return videos, video_mask


def scatter_videos(values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
    """Put per-video values `[V, ...]` back into a zero-padded `[B, N, ...]` study layout."""
    out = values.new_zeros(*video_mask.shape, *values.shape[1:])
    out[video_mask] = values
    return out


def masked_mean(values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `[B, N, D]` over the valid videos of each study."""
    weights = video_mask.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(1) / weights.sum(1)


class DeepCoroProjection(nn.Module):
    """Per-token projection into the shared space: dropout → linear → GELU → dropout (as the original)."""

    def __init__(self, input_size: int, projection_dim: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(input_size, projection_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(F.gelu(self.linear(self.dropout(hidden_states))))


class DeepCoroMultiInstancePooling(nn.Module):
    """Pool the projected tokens of a study's videos `[B, N, L, D]` into one study vector.

    - `mean`: mean over tokens, then over the valid videos.
    - `attention`: gated attention MIL (Ilse et al.), first over the tokens of each video, then over the videos;
      both levels share the gating weights (as the original).
    - `cls_token`: a learned CLS token attends to the tokens of each video (within-video attention), then a CLS token
      attends to the resulting video vectors (across-video attention, padded videos masked out).
    - `attention+cls_token`: both, concatenated (the released configuration, 2·D = 1024).
    """

    def __init__(self, config: DeepCoroClipConfig):
        super().__init__()
        dim = config.projection_dim
        modes = config.mil_pooling.split("+")
        self.use_gated = "attention" in modes
        self.use_cls = "cls_token" in modes
        self.pre_norm = config.mil_normalization == "pre_norm"
        self.separate = config.mil_separate_video_attention
        self.output_size = dim * (int(self.use_gated) + int(self.use_cls)) if (self.use_gated or self.use_cls) else dim
        self.dropout = nn.Dropout(config.mil_dropout)
        if self.use_gated:
            self.attention_value = nn.Linear(dim, config.mil_attention_hidden)
            self.attention_gate = nn.Linear(dim, config.mil_attention_hidden)
            self.attention_score = nn.Linear(config.mil_attention_hidden, 1)
        if self.use_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

            def attention() -> nn.MultiheadAttention:
                return nn.MultiheadAttention(dim, config.mil_num_heads, dropout=config.mil_dropout, batch_first=True)

            if self.separate:
                self.within_video_attention, self.within_video_norm = attention(), nn.LayerNorm(dim)
                self.across_video_attention, self.across_video_norm = attention(), nn.LayerNorm(dim)
            else:
                self.video_attention, self.video_norm = attention(), nn.LayerNorm(dim)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The original's init: Xavier-uniform linear weights with zero biases, and a standard-normal CLS token."""
        for module in self.modules():
            if isinstance(module, nn.MultiheadAttention):
                init.xavier_uniform_(module.in_proj_weight)
                init.zeros_(module.in_proj_bias)
            if isinstance(module, nn.Linear):
                init.xavier_uniform_(module.weight)
                init.zeros_(module.bias)
        if self.use_cls:
            init.normal_(self.cls_token, std=1.0)

    def _gated_scores(self, states: torch.Tensor) -> torch.Tensor:
        gated = torch.tanh(self.attention_value(states)) * torch.sigmoid(self.attention_gate(states))
        return self.attention_score(gated).squeeze(-1)

    def _cls_attend(self, level: str, tokens: torch.Tensor, padding: torch.Tensor | None, need_weights: bool):
        attention = getattr(self, f"{level}_video_attention" if self.separate else "video_attention")
        norm = getattr(self, f"{level}_video_norm" if self.separate else "video_norm")
        query = self.cls_token.expand(tokens.shape[0], 1, -1).to(tokens.dtype)
        keys = torch.cat((query, tokens), dim=1)
        if self.pre_norm:
            query, keys = norm(query), norm(keys)
        if padding is not None:
            padding = torch.cat((padding.new_zeros(padding.shape[0], 1), padding), dim=1)
        out, weights = attention(query, keys, keys, key_padding_mask=padding, need_weights=need_weights)
        out = out[:, 0]
        if not self.pre_norm:
            out = norm(out)
        if need_weights:
            # Share of the attention that went to each video, renormalised over the videos (the CLS token's attention
            # to itself is left out) so the weights of a study sum to 1 and padded videos get 0. In training mode the
            # weights include attention dropout and may all be dropped, hence the clamp.
            weights = weights[:, 0, 1:]
            weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(weights.dtype).tiny)
        return self.dropout(out), weights

    def forward(
        self, video_tokens: torch.Tensor, video_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """`video_tokens` `[V, L, D]` of the valid videos and `video_mask` `[B, N]` → (study vector, CLS weights,
        gated weights)."""
        pooled, cls_weights, gated_weights = [], None, None
        if not (self.use_gated or self.use_cls):
            pooled.append(masked_mean(scatter_videos(video_tokens.mean(1), video_mask), video_mask))
        if self.use_gated:
            token_weights = self.dropout(self._gated_scores(video_tokens).softmax(dim=-1))
            videos = scatter_videos(torch.einsum("vl,vld->vd", token_weights, video_tokens), video_mask)
            scores = self._gated_scores(videos).masked_fill(~video_mask, float("-inf"))
            gated_weights = scores.softmax(dim=-1)
            pooled.append(torch.einsum("bn,bnd->bd", self.dropout(gated_weights), videos))
        if self.use_cls:
            within, _ = self._cls_attend("within", video_tokens, None, need_weights=False)
            study, cls_weights = self._cls_attend("across", scatter_videos(within, video_mask), ~video_mask, True)
            pooled.append(study)
        return torch.cat(pooled, dim=-1), cls_weights, gated_weights


class DeepCoroSimilarity(nn.Module):
    """Scaled cosine similarity of the shared space: logits = cos(video, text) / τ (+ b for SigLIP).

    The learnable log-temperature (and SigLIP bias) live in this small module, not loose on the model, so adapters
    (peft `modules_to_save=["similarity"]`) train and save them like any other head.
    """

    def __init__(self, config: DeepCoroClipConfig):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.temperature)))
        self.siglip_bias = nn.Parameter(torch.tensor(float(config.siglip_bias_init))) if config.loss_type == "siglip" else None

    @property
    def temperature(self) -> torch.Tensor:
        """τ = exp(log τ), kept above 1e-4 so logits stay finite."""
        return self.log_temperature.exp().clamp(min=1e-4)

    def forward(self, video_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """`[V, D]` × `[T, D]` L2-normalised embeddings → `[V, T]` logits."""
        logits = video_embeds @ text_embeds.t() / self.temperature
        if self.siglip_bias is not None:
            logits = logits + self.siglip_bias
        return logits


# ----------------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------------
def clip_loss(logits_per_video: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy: video i matches text i, in both directions."""
    targets = torch.arange(logits_per_video.shape[0], device=logits_per_video.device)
    return 0.5 * (F.cross_entropy(logits_per_video, targets) + F.cross_entropy(logits_per_video.t(), targets))


def siglip_loss(logits_per_video: torch.Tensor) -> torch.Tensor:
    """Pairwise sigmoid loss (Zhai et al.): every (video, text) pair is a binary match / non-match problem.
    Normalised by the number of videos, as in the SigLIP paper."""
    signs = 2 * torch.eye(logits_per_video.shape[0], device=logits_per_video.device, dtype=logits_per_video.dtype) - 1
    return -F.logsigmoid(signs * logits_per_video).sum() / logits_per_video.shape[0]


def infonce_loss(logits_per_video: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE: each row's target spreads evenly over all its positives (e.g. every video whose
    report text is identical), so duplicate reports are not treated as negatives."""
    positives = positives.to(logits_per_video.dtype)
    video_to_text = -(positives / positives.sum(1, keepdim=True) * logits_per_video.log_softmax(1)).sum(1).mean()
    text_to_video = -(positives.t() / positives.t().sum(1, keepdim=True) * logits_per_video.t().log_softmax(1)).sum(1).mean()
    return 0.5 * (video_to_text + text_to_video)


_FINGERPRINT_HASHES = ((1_000_003, 2_147_483_647), (999_983, 2_147_483_629))  # (base, prime modulus) pairs


def _text_fingerprints(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Two polynomial hashes per text `[B, 2]`, so identical reports are recognised across processes without gathering
    variable-length token ids. Padding does not count. (Hand-written: no library hashes token rows on device.)"""
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    values = (input_ids.long() + 1) * mask.long()  # < 2**17, so value × power (< 2**31) summed over 512 fits in int64
    columns = []
    for base, modulus in _FINGERPRINT_HASHES:
        powers = torch.tensor([pow(base, i, modulus) for i in range(values.shape[1])], device=values.device)
        columns.append((values * powers).sum(1) % modulus)
    return torch.stack(columns, dim=1)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor from every process, keeping the gradient path to the local shard.

    Contrastive losses need all negatives; `torch.distributed.nn.functional.all_gather` sums the gradients of every
    process's copy back into the shard that produced it, so with DDP's gradient averaging each parameter receives the
    gradient of the full-batch loss. Without a process group this is the identity.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor
    if torch.distributed.get_world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


def segment_classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task_types: list[str],
    regression_loss_weight: float,
    huber_delta: float,
) -> torch.Tensor:
    """Masked multi-head loss: NaN labels are ignored; each (segment, task) head contributes its mean loss over the
    studies that have a label, and the heads are summed (regression heads weighted)."""
    valid = ~torch.isnan(labels)
    targets = torch.where(valid, labels, torch.zeros_like(labels)).to(logits.dtype)
    losses = torch.empty_like(logits)
    is_regression = torch.tensor([t == "regression" for t in task_types], device=logits.device)
    if is_regression.any():
        losses[..., is_regression] = F.huber_loss(
            logits[..., is_regression], targets[..., is_regression], reduction="none", delta=huber_delta
        )
    if (~is_regression).any():
        losses[..., ~is_regression] = F.binary_cross_entropy_with_logits(
            logits[..., ~is_regression], targets[..., ~is_regression], reduction="none"
        )
    counts = valid.sum(0)  # [segments, tasks]
    per_head = (losses * valid).sum(0) / counts.clamp(min=1)
    weights = torch.where(is_regression, float(regression_loss_weight), 1.0).to(per_head.dtype)
    return (per_head * weights * (counts > 0)).sum()


# ----------------------------------------------------------------------------------------------------------------------
# Public models
# ----------------------------------------------------------------------------------------------------------------------
class DeepCoroClipModel(DeepCoroPreTrainedModel):
    """Dual encoder aligning angiography videos (or whole studies) with report text in a 512-d space."""

    def __init__(self, config: DeepCoroClipConfig):
        super().__init__(config)
        self.video_model = DeepCoroVideoModel(config.video_config)
        self.video_projection = DeepCoroProjection(config.video_config.hidden_size, config.projection_dim, config.projection_dropout)
        self.text_model = BertModel(config.text_config, add_pooling_layer=False)
        self.text_projection = DeepCoroProjection(config.text_config.hidden_size, config.projection_dim, config.projection_dropout)
        self.similarity = DeepCoroSimilarity(config)
        self.post_init()

    def get_video_features(self, pixel_values_videos: torch.Tensor, video_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Video embeddings `[B, D]` for clips `[B, T, C, H, W]`, or study embeddings `[B, D]` for studies
        `[B, N, T, C, H, W]`: the mean of the projected tokens of each video, averaged over the study's valid videos.
        Not normalised."""
        videos, video_mask = prepare_video_inputs(pixel_values_videos, video_mask, self.config)
        tokens = self.video_model(videos).last_hidden_state
        embeds = self.video_projection(tokens).mean(dim=1)
        if video_mask is None:
            return embeds
        return masked_mean(scatter_videos(embeds, video_mask), video_mask)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Report embeddings `[B, D]`: the projected [CLS] token of the text tower. Not normalised."""
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must have shape [batch, sequence], got {list(input_ids.shape)}")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must match input_ids {list(input_ids.shape)}, got {list(attention_mask.shape)}"
            )
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return self.text_projection(hidden.last_hidden_state[:, 0])

    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        video_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DeepCoroClipOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        video_embeds = F.normalize(self.get_video_features(pixel_values_videos, video_mask), dim=-1)
        text_embeds = F.normalize(self.get_text_features(input_ids, attention_mask, token_type_ids), dim=-1)
        if video_embeds.shape[0] != text_embeds.shape[0] and return_loss:
            raise ValueError(
                f"the contrastive loss pairs video i with text i: got {video_embeds.shape[0]} videos/studies and "
                f"{text_embeds.shape[0]} texts"
            )
        logits_per_video = self.similarity(video_embeds, text_embeds)
        loss = None
        if return_loss:
            all_videos, all_texts = gather_with_grad(video_embeds), gather_with_grad(text_embeds)
            all_logits = self.similarity(all_videos, all_texts) if all_videos is not video_embeds else logits_per_video
            if self.config.loss_type == "clip":
                loss = clip_loss(all_logits)
            elif self.config.loss_type == "siglip":
                loss = siglip_loss(all_logits)
            else:
                fingerprints = gather_with_grad(_text_fingerprints(input_ids, attention_mask))
                loss = infonce_loss(all_logits, (fingerprints[:, None] == fingerprints[None, :]).all(-1))
        output = DeepCoroClipOutput(
            loss=loss,
            logits_per_video=logits_per_video,
            logits_per_text=logits_per_video.t(),
            video_embeds=video_embeds,
            text_embeds=text_embeds,
        )
        return output if return_dict else output.to_tuple()


class DeepCoroForSegmentClassification(DeepCoroPreTrainedModel):
    """Study-level classifier: up to 10 videos → projected tokens → multi-instance pooling → one head per task with an
    output per coronary segment (18 segments × {stenosis %, ≥70 %, calcification, CTO, thrombus} by default; study-level
    transfer tasks such as MACE or LVEF when `config.segments` is empty)."""

    def __init__(self, config: DeepCoroClipConfig):
        super().__init__(config)
        self.video_model = DeepCoroVideoModel(config.video_config)
        self.video_projection = DeepCoroProjection(config.video_config.hidden_size, config.projection_dim, config.projection_dropout)
        self.mil = DeepCoroMultiInstancePooling(config)
        self.heads = nn.ModuleDict({task: nn.Linear(self.mil.output_size, config.num_segments) for task in config.tasks})
        self.post_init()

    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        video_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DeepCoroSegmentClassifierOutput | tuple:
        """`pixel_values_videos` `[B, N, T, C, H, W]` (or `[B, T, C, H, W]`, one video per study), `video_mask` `[B, N]`,
        `labels` `[B, num_segments, num_tasks]` with NaN where a label is missing."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if isinstance(pixel_values_videos, torch.Tensor) and pixel_values_videos.ndim == 5 and video_mask is None:
            _check_clip_shape(pixel_values_videos, self.config.video_config)
            pixel_values_videos = pixel_values_videos.unsqueeze(1)
        videos, video_mask = prepare_video_inputs(pixel_values_videos, video_mask, self.config)
        tokens = self.video_projection(self.video_model(videos).last_hidden_state)
        study_embeds, cls_weights, gated_weights = self.mil(tokens, video_mask)
        logits = torch.stack([self.heads[task](study_embeds) for task in self.config.tasks], dim=-1)

        loss = None
        if labels is not None:
            if tuple(labels.shape) != tuple(logits.shape):
                raise ValueError(
                    f"labels must have shape [batch, segments, tasks] = {list(logits.shape)} "
                    f"(segments {self.config.segments or ['study']}, tasks {list(self.config.tasks)}), got {list(labels.shape)}"
                )
            loss = segment_classification_loss(
                logits.float(), labels.float(), [self.config.task_types[task] for task in self.config.tasks],
                self.config.regression_loss_weight, self.config.huber_delta,
            )
        output = DeepCoroSegmentClassifierOutput(
            loss=loss,
            logits=logits,
            study_embeds=study_embeds,
            cls_attention_weights=cls_weights,
            gated_attention_weights=gated_weights,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "DeepCoroClipModel",
    "DeepCoroForSegmentClassification",
    "DeepCoroPreTrainedModel",
    "DeepCoroVideoModel",
]
