"""Turn an original DeepCORO-CLIP research checkpoint (.pt) into a Hugging Face folder of this package.

The file comes from the research code (HeartWise-AI/DeepCORO_CLIP): a CLIP checkpoint (`video_encoder`,
`text_encoder`, `train/temperature`) becomes a `DeepCoroClipModel`, a fine-tuned probe (`linear_probing`) a
`DeepCoroForSegmentClassification`. For the released stenosis model, with BiomedBERT's tokenizer saved locally:

    python hub_scripts/convert_original_checkpoint.py best_model_epoch_11.pt checkpoints/deepcoro-stenosis \
        --tokenizer biomedbert-tokenizer

Same options and report as `deepcoro convert`; the conversion itself is `deepcoro_hf.conversion`.
"""

import argparse
import logging
import sys

from deepcoro_hf.conversion import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
