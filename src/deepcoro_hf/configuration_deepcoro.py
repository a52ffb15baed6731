"""DeepCORO-CLIP configurations: the MViT-v2 video tower, and the video-text / segment-classification model."""

from huggingface_hub.dataclasses import strict
from transformers import BertConfig, PreTrainedConfig

from .vocabulary import LVEF_TASKS, MACE_TASKS, SEGMENT_KEYS, SEGMENT_TASKS


LOSS_TYPES = ("clip", "siglip", "infonce")
MIL_POOLING_MODES = ("mean", "attention", "cls_token", "attention+cls_token")
MIL_NORMALIZATIONS = ("post_norm", "pre_norm")
TASK_TYPES = ("regression", "binary")


@strict
class DeepCoroVideoConfig(PreTrainedConfig):
    r"""
    Configuration of the MViT-v2 video tower. The defaults are torchvision's `mvit_v2_s` (34.2 M parameters without
    its classifier; 16 frames of 224×224 in, 393 tokens of 768 out), the backbone of every released DeepCORO model.

    The network is described by stages as in the MViT-v2 paper: stage `i` has `depths[i]` blocks of width
    `hidden_sizes[i]` with `num_heads[i]` heads. The first block of every stage after the first pools the queries by
    `pool_q_stride` (halving height and width) and widens the channels; keys and values are pooled by an adaptive
    stride that starts at `pool_kv_stride` and shrinks with the queries, so attention always sees a small grid.

    Args:
        num_frames (`int`): frames per clip.
        image_size (`int`): height and width of the (square) frames.
        num_channels (`int`): input channels (grayscale angiograms are replicated to 3 by the processor).
        hidden_sizes (`list[int]`): channel width of each stage.
        depths (`list[int]`): blocks per stage.
        num_heads (`list[int]`): attention heads per stage.
        patch_kernel_size, patch_stride, patch_padding (`list[int]`): the (t, h, w) patch-embedding convolution.
        pool_kernel_size (`list[int]`): depth-wise pooling kernel for queries, keys and values.
        pool_q_stride (`list[int]`): query pooling stride at each stage transition.
        pool_kv_stride (`list[int]`): key/value pooling stride of the first stage.
        mlp_ratio (`float`): hidden width of the MLP relative to the block width.
        layer_norm_eps (`float`): epsilon of every layer norm.
        stochastic_depth_prob (`float`): drop-path rate of the last block (linearly increasing from 0).
        hidden_dropout (`float`): dropout after the attention projection and in the MLP.
        initializer_range (`float`): std of the truncated-normal init of linear layers and embeddings.
    """

    model_type = "deepcoro_video"
    base_config_key = "video_config"

    num_frames: int = 16
    image_size: int = 224
    num_channels: int = 3
    hidden_sizes: list[int] | tuple[int, ...] = (96, 192, 384, 768)
    depths: list[int] | tuple[int, ...] = (1, 2, 11, 2)
    num_heads: list[int] | tuple[int, ...] = (1, 2, 4, 8)
    patch_kernel_size: list[int] | tuple[int, ...] = (3, 7, 7)
    patch_stride: list[int] | tuple[int, ...] = (2, 4, 4)
    patch_padding: list[int] | tuple[int, ...] = (1, 3, 3)
    pool_kernel_size: list[int] | tuple[int, ...] = (3, 3, 3)
    pool_q_stride: list[int] | tuple[int, ...] = (1, 2, 2)
    pool_kv_stride: list[int] | tuple[int, ...] = (1, 8, 8)
    mlp_ratio: float | int = 4.0
    layer_norm_eps: float = 1e-6
    stochastic_depth_prob: float | int = 0.2
    hidden_dropout: float | int = 0.0
    initializer_range: float = 0.02

    @property
    def hidden_size(self) -> int:
        """Width of the output tokens."""
        return self.hidden_sizes[-1]

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(t, h, w) grid of the output tokens (the class token comes on top)."""
        t = self.num_frames // self.patch_stride[0]
        h = w = self.image_size // self.patch_stride[1]
        for _ in self.depths[1:]:
            h //= self.pool_q_stride[1]
            w //= self.pool_q_stride[2]
            t //= self.pool_q_stride[0]
        return t, h, w

    @property
    def num_tokens(self) -> int:
        """Output tokens per clip: the token grid plus the class token (393 for the defaults)."""
        t, h, w = self.token_grid
        return t * h * w + 1

    def validate_architecture(self):
        super().validate_architecture()
        stages = len(self.depths)
        if not (len(self.hidden_sizes) == len(self.num_heads) == stages) or stages == 0:
            raise ValueError(
                f"hidden_sizes, depths and num_heads must have one entry per stage, got {len(self.hidden_sizes)}, "
                f"{stages} and {len(self.num_heads)}"
            )
        for name in ("patch_kernel_size", "patch_stride", "patch_padding", "pool_kernel_size", "pool_q_stride", "pool_kv_stride"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} must give (t, h, w), got {getattr(self, name)}")
        for width, heads in zip(self.hidden_sizes, self.num_heads):
            if width % heads:
                raise ValueError(f"stage width {width} is not divisible by its {heads} attention heads")
        # Every pooled grid must divide exactly, otherwise pooled token grids and relative-position tables disagree.
        t, h, w = (s // p for s, p in zip((self.num_frames, self.image_size, self.image_size), self.patch_stride))
        if self.num_frames % self.patch_stride[0] or self.image_size % self.patch_stride[1]:
            raise ValueError(
                f"num_frames ({self.num_frames}) and image_size ({self.image_size}) must be multiples of the patch "
                f"stride {tuple(self.patch_stride)}"
            )
        for stage in range(1, stages):
            for size, stride in zip((t, h, w), self.pool_q_stride):
                if size % stride:
                    raise ValueError(
                        f"stage {stage} pools a {t}x{h}x{w} token grid by {tuple(self.pool_q_stride)}: choose "
                        "num_frames / image_size so every stage divides evenly"
                    )
            t, h, w = t // self.pool_q_stride[0], h // self.pool_q_stride[1], w // self.pool_q_stride[2]


@strict
class DeepCoroClipConfig(PreTrainedConfig):
    r"""
    Configuration of [`DeepCoroClipModel`] (video-text contrastive pretraining) and
    [`DeepCoroForSegmentClassification`] (study-level segment heads). Both share the video tower and its per-token
    projection, so a pretrained CLIP checkpoint initialises the classifier.

    Args:
        video_config (`DeepCoroVideoConfig` or `dict`): the MViT-v2 video tower.
        text_config (`BertConfig` or `dict`): the text tower. The default is BiomedBERT-base's architecture
            (`microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext`, 768 hidden, 12 layers); weights are
            loaded separately.
        projection_dim (`int`): width of the shared embedding space (512 in the paper).
        projection_dropout (`float`): dropout before and after the projection (0.158 in the released CLIP model).
        temperature (`float`): initial softmax temperature τ; the model learns log τ.
        loss_type (`str`): `"clip"` (symmetric cross-entropy), `"siglip"` (pairwise sigmoid loss with a learnable bias)
            or `"infonce"` (symmetric InfoNCE in which every pair sharing an identical report is a positive).
        siglip_bias_init (`float`): initial value of the learnable SigLIP bias.
        max_videos (`int`): most videos per study.
        mil_pooling (`str`): how the segment classifier pools a study: `"mean"`, `"attention"` (gated attention MIL),
            `"cls_token"` (within-video then across-video CLS attention) or `"attention+cls_token"` (both,
            concatenated: the released configuration).
        mil_attention_hidden (`int`): hidden width of the gated attention.
        mil_num_heads (`int`): heads of the CLS attention layers.
        mil_dropout (`float`): dropout on attention weights and pooled vectors.
        mil_separate_video_attention (`bool`): separate CLS attention layers within and across videos.
        mil_normalization (`str`): `"post_norm"` (layer norm on the attention output, released) or `"pre_norm"`.
        segments (`list[str]`): segment axis of the heads (keys of `vocabulary.SEGMENTS`); empty for study-level
            tasks such as MACE or LVEF.
        tasks (`list[str]`): task names in output order; one head per task, one output per segment. Defaults to the
            five segment tasks (`stenosis`, `stenosis_binary`, `calcif_binary`, `cto`, `thrombus`).
        task_types (`dict[str, str]`): task name → `"regression"` or `"binary"`. Tasks of the vocabulary (segment,
            MACE and LVEF tasks) are filled in automatically; custom tasks must be listed.
        regression_loss_weight (`float`): weight of regression heads in the summed loss (binary heads weigh 1).
        huber_delta (`float`): Huber threshold for regression targets, in label units (stenosis %).
        initializer_range (`float`): std for the projection and head initialisation.
    """

    model_type = "deepcoro_clip"
    sub_configs_defaults = {"video_config": DeepCoroVideoConfig, "text_config": BertConfig}

    video_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 512
    projection_dropout: float | int = 0.1
    temperature: float = 0.0588
    loss_type: str = "clip"
    siglip_bias_init: float | int = -10.0
    max_videos: int = 10
    mil_pooling: str = "attention+cls_token"
    mil_attention_hidden: int = 256
    mil_num_heads: int = 8
    mil_dropout: float | int = 0.2
    mil_separate_video_attention: bool = True
    mil_normalization: str = "post_norm"
    segments: list[str] | tuple[str, ...] = SEGMENT_KEYS
    tasks: list[str] | tuple[str, ...] | None = None
    task_types: dict[str, str] | None = None
    regression_loss_weight: float | int = 2.0
    huber_delta: float | int = 0.1
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.tasks = list(SEGMENT_TASKS) if self.tasks is None else list(self.tasks)
        known = {**SEGMENT_TASKS, **MACE_TASKS, **LVEF_TASKS}
        given = dict(self.task_types or {})
        untyped = [task for task in self.tasks if task not in given and task not in known]
        if untyped:
            raise ValueError(
                f"tasks {untyped} are not in the vocabulary: give their type ('regression' or 'binary'); custom tasks "
                "go in task_types"
            )
        self.task_types = {task: given.get(task, known.get(task)) for task in self.tasks}
        self.segments = list(self.segments)
        super().__post_init__(**kwargs)

    @property
    def head_names(self) -> list[str]:
        """Flat `{segment}_{task}` names of the outputs, segment-major (task names alone for study-level tasks)."""
        if not self.segments:
            return list(self.tasks)
        return [f"{segment}_{task}" for segment in self.segments for task in self.tasks]

    @property
    def num_segments(self) -> int:
        """Size of the segment axis of the logits (1 for study-level tasks)."""
        return max(len(self.segments), 1)

    def validate_architecture(self):
        super().validate_architecture()
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.mil_pooling not in MIL_POOLING_MODES:
            raise ValueError(f"mil_pooling must be one of {MIL_POOLING_MODES}, got {self.mil_pooling!r}")
        if self.mil_normalization not in MIL_NORMALIZATIONS:
            raise ValueError(f"mil_normalization must be one of {MIL_NORMALIZATIONS}, got {self.mil_normalization!r}")
        if self.projection_dim % self.mil_num_heads:
            raise ValueError(f"projection_dim ({self.projection_dim}) must be divisible by mil_num_heads ({self.mil_num_heads})")
        if not self.tasks:
            raise ValueError("tasks must name at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks are listed twice: {self.tasks}")
        bad = {name: kind for name, kind in self.task_types.items() if kind not in TASK_TYPES}
        if bad:
            raise ValueError(
                f"every task needs a type in {TASK_TYPES} (custom tasks go in task_types), got {bad}"
            )
        unknown = [s for s in self.segments if s not in SEGMENT_KEYS]
        if unknown:
            raise ValueError(f"unknown segment keys {unknown}; expected keys of deepcoro_hf.vocabulary.SEGMENTS")
        if len(set(self.segments)) != len(self.segments):
            raise ValueError(f"segments are listed twice: {self.segments}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.max_videos < 1:
            raise ValueError(f"max_videos must be at least 1, got {self.max_videos}")


__all__ = ["DeepCoroClipConfig", "DeepCoroVideoConfig"]
