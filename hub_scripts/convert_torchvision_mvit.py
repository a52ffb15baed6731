"""Turn torchvision's Kinetics-400 `mvit_v2_s` weight file into a Hugging Face checkpoint of the DeepCORO video tower.

The weight file is downloaded on a machine with network access
(https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth, torchvision's `MViT_V2_S_Weights.KINETICS400_V1`)
and given here as a local path:

    python hub_scripts/convert_torchvision_mvit.py mvit_v2_s-ae3be167.pth checkpoints/mvit-v2-s-kinetics400

The result loads with `AutoModel.from_pretrained(out_dir)` (or with `trust_remote_code=True` where deepcoro_hf is
not installed) and is the starting point of contrastive pretraining. The classifier head of the file is dropped.
"""

import argparse
import sys
from pathlib import Path

import torch

from deepcoro_hf import DeepCoroVideoConfig, DeepCoroVideoModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="torchvision mvit_v2_s state dict (.pth)")
    parser.add_argument("output_dir", type=Path, help="folder for the Hugging Face checkpoint")
    args = parser.parse_args(argv)

    # weights_only: a weight file is data, never code to unpickle.
    state_dict = torch.load(args.weights, map_location="cpu", weights_only=True)
    if isinstance(state_dict, dict) and "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    model = DeepCoroVideoModel.from_torchvision(state_dict, config=DeepCoroVideoConfig())
    model.save_pretrained(args.output_dir)
    dropped = sorted(k for k in state_dict if k.startswith("head."))
    print(f"wrote {args.output_dir} ({sum(p.numel() for p in model.parameters()):,} parameters; dropped {dropped})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
