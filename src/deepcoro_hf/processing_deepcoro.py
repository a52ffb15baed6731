"""DeepCORO-CLIP processor: the video processor and the report tokenizer behind one call."""

from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .video_processing_deepcoro import DeepCoroVideoProcessor


class DeepCoroProcessor(ProcessorMixin):
    r"""
    Pairs [`DeepCoroVideoProcessor`] with the text tower's tokenizer (BiomedBERT's WordPiece for the released
    models), so that one call prepares videos or studies and their reports for [`DeepCoroClipModel`].

    `__call__` is written out rather than inherited: `ProcessorMixin.__call__` routes keyword arguments for
    multimodal chat models (placeholder tokens, images, audio) and knows nothing of `studies=`.

    Args:
        video_processor (`DeepCoroVideoProcessor`, *optional*): defaults to `DeepCoroVideoProcessor()`.
        tokenizer (`PreTrainedTokenizerBase`): tokenizer of the text tower.
    """

    def __init__(self, video_processor=None, tokenizer=None, **kwargs):
        if tokenizer is None:
            raise ValueError(
                "DeepCoroProcessor needs the text tower's tokenizer, e.g. AutoTokenizer.from_pretrained("
                "'microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext')"
            )
        video_processor = DeepCoroVideoProcessor() if video_processor is None else video_processor
        super().__init__(video_processor, tokenizer, **kwargs)

    def __call__(
        self,
        videos=None,
        studies=None,
        text: str | list[str] | None = None,
        *,
        padding: bool | str = True,
        truncation: bool = True,
        max_length: int = 512,
        return_tensors: str | None = None,
        **video_kwargs,
    ) -> BatchFeature:
        """Process `videos` or `studies` (see [`DeepCoroVideoProcessor.preprocess`], which gets `video_kwargs`) and
        tokenise `text` (the reports), and return both in one `BatchFeature`.

        Reports are truncated to `max_length` tokens (512, BiomedBERT's limit and the original's setting). They are
        padded to the longest report of the batch by default rather than to `max_length` as in the original: the
        attention mask hides the padding from the text tower, so its output is the same for less work; pass
        `padding="max_length"` for fixed-length batches.
        """
        if videos is None and studies is None and text is None:
            raise ValueError("nothing to process: pass videos=, studies= and/or text=")
        data = {}
        if videos is not None or studies is not None:
            data.update(self.video_processor(videos, studies=studies, return_tensors=return_tensors, **video_kwargs))
        if text is not None:
            data.update(
                self.tokenizer(
                    text, padding=padding, truncation=truncation, max_length=max_length, return_tensors=return_tensors
                )
            )
        # Already converted by each part; non-tensor entries (video_metadata, skipped) stay as they are.
        return BatchFeature(data)


__all__ = ["DeepCoroProcessor"]
