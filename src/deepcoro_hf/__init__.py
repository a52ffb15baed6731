"""deepcoro-hf: DeepCORO-CLIP, the multi-view video-text foundation model for coronary angiography, as a Hugging Face
package. Importing it registers the configurations and models with the transformers Auto classes, and marks them so
`save_pretrained` ships the code files (Hub remote code) next to the weights."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForVideoClassification,
    AutoProcessor,
    AutoVideoProcessor,
)

from .configuration_deepcoro import DeepCoroClipConfig, DeepCoroVideoConfig
from .modeling_deepcoro import (
    DeepCoroClipModel,
    DeepCoroForSegmentClassification,
    DeepCoroPreTrainedModel,
    DeepCoroVideoModel,
)
from .pipeline_deepcoro import register_pipelines, save_pipeline_folder
from .processing_deepcoro import DeepCoroProcessor
from .video_processing_deepcoro import DeepCoroVideoProcessor

__version__ = "0.1.0"

AutoConfig.register(DeepCoroVideoConfig.model_type, DeepCoroVideoConfig, exist_ok=True)
AutoConfig.register(DeepCoroClipConfig.model_type, DeepCoroClipConfig, exist_ok=True)
AutoModel.register(DeepCoroVideoConfig, DeepCoroVideoModel, exist_ok=True)
AutoModel.register(DeepCoroClipConfig, DeepCoroClipModel, exist_ok=True)
AutoModelForVideoClassification.register(DeepCoroClipConfig, DeepCoroForSegmentClassification, exist_ok=True)
AutoVideoProcessor.register(DeepCoroVideoConfig, DeepCoroVideoProcessor, exist_ok=True)
AutoVideoProcessor.register(DeepCoroClipConfig, DeepCoroVideoProcessor, exist_ok=True)
AutoProcessor.register(DeepCoroClipConfig, DeepCoroProcessor, exist_ok=True)

DeepCoroVideoConfig.register_for_auto_class()
DeepCoroClipConfig.register_for_auto_class()
DeepCoroVideoModel.register_for_auto_class("AutoModel")
DeepCoroClipModel.register_for_auto_class("AutoModel")
DeepCoroForSegmentClassification.register_for_auto_class("AutoModelForVideoClassification")
DeepCoroVideoProcessor.register_for_auto_class("AutoVideoProcessor")
DeepCoroProcessor.register_for_auto_class("AutoProcessor")

# transformers.pipeline tasks (coronary-study-analysis, -zero-shot-classification, -feature-extraction).
register_pipelines()

__all__ = [
    "DeepCoroClipConfig",
    "DeepCoroClipModel",
    "DeepCoroForSegmentClassification",
    "DeepCoroPreTrainedModel",
    "DeepCoroProcessor",
    "DeepCoroVideoConfig",
    "DeepCoroVideoModel",
    "DeepCoroVideoProcessor",
    "save_pipeline_folder",
]
