"""Upload a saved DeepCORO-CLIP model folder and its rendered model card to the Hugging Face Hub.

The same as `deepcoro push` (see `deepcoro push --help`), for checkouts where the console script is not installed:

    python hub_scripts/push_to_hub.py checkpoints/final_model my-org/deepcoro-clip-stenosis \\
        --eval-dir results/test --eval-dataset my-org/deepcoro-mini --license cc-by-nc-4.0
"""

import sys

from deepcoro_hf.cli import main


if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
