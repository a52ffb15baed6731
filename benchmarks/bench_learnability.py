"""Can the learning recipe's video tower see an occlusion at all? Three predictors on the same phantom videos.

Default target: a right-coronary video shows a chronic total occlusion (CTO) somewhere in its tree: the vessel beyond
it never fills, so a large part of the tree is missing — the most conspicuous finding the phantoms draw. Same split,
same preprocessed clips (4 frames of 128 px, the recipe's processor settings at a smaller size), AUROC on held-out
patients (the validation and test splits):

1. vessel area, no training: pixels of thin dark structures (a black top-hat, scipy.ndimage) at the best frame;
2. a small CNN (four conv-BN-ReLU blocks) trained from scratch;
3. the recipe's small MViT tower in `DeepCoroForSegmentClassification` (one video per "study", one binary output)
   trained from scratch with the same optimiser and batch size, for more epochs (it is about twice as fast per epoch).

The gap between 2 and 3 is why the learning recipe stays at the level of segment prevalence: the information is in
the pixels and a convolutional network picks it up in one epoch, but a patchified transformer started from random
weights needs far more data or steps than 2 CPU cores give in minutes (the paper's tower starts from Kinetics-400).

Run: `python benchmarks/bench_learnability.py [--phantoms DIR] [--territory RCA|LCA] [--finding cto|stenosis_binary]
[--epochs 3] [--tower-epochs 10]` (3–6 minutes on 2 cores; the phantom set — 700 studies at 128 px, 8 frames — is
written first when DIR does not hold one). The left coronary tree and stenoses are harder: see the README.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score
from torch import nn

from deepcoro_hf import DeepCoroClipConfig, DeepCoroForSegmentClassification, DeepCoroVideoProcessor
from deepcoro_hf.phantoms import generate_phantoms
from deepcoro_hf.vocabulary import SEGMENT_BY_KEY, SEGMENT_KEYS

SIZE, FRAMES, BATCH = 128, 4, 16
RECIPE_TOWER = {  # examples/configs/recipe_pretrain.yaml at 128 px
    "num_frames": FRAMES, "image_size": SIZE, "hidden_sizes": [32, 64, 128], "depths": [1, 1, 1], "num_heads": [1, 2, 4],
    "patch_kernel_size": [3, 8, 8], "patch_stride": [2, 8, 8], "patch_padding": [1, 0, 0], "pool_kv_stride": [1, 4, 4],
    "pool_kernel_size": [1, 3, 3], "stochastic_depth_prob": 0.0,
}  # fmt: skip


def load_clips(root: Path, territory: str, finding: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Grey clips `[N, T, H, W]` of the territory's videos, whether the finding is in the territory, and the split."""
    videos, studies = pd.read_csv(root / "videos.csv"), pd.read_csv(root / "studies.csv").set_index("study_id")
    videos = videos[videos.territory == territory].reset_index(drop=True)
    columns = [f"{key}_{finding}" for key in SEGMENT_KEYS if SEGMENT_BY_KEY[key].territory == territory]
    labels = (studies.loc[videos.study_id, columns].fillna(0).sum(axis=1) > 0).to_numpy(np.float32)
    processor = DeepCoroVideoProcessor(num_frames=FRAMES, size={"height": SIZE, "width": SIZE})
    clips = [
        processor(videos=[str(root / p) for p in videos.video_path[i : i + 64]], return_tensors="pt")[
            "pixel_values_videos"
        ][:, :, 0]
        for i in range(0, len(videos), 64)
    ]
    return torch.cat(clips), labels, studies.loc[videos.study_id, "split"].to_numpy()


def vessel_area(clips: torch.Tensor) -> np.ndarray:
    """Largest count, over the frames, of pixels darker than their 9x9 grey closing by more than one unit."""
    area = np.zeros(len(clips))
    for i, clip in enumerate(clips.numpy()):
        for frame in clip:
            area[i] = max(area[i], (ndimage.grey_closing(frame, size=(9, 9)) - frame > 1.0).sum())
    return area


def small_cnn() -> nn.Module:
    def block(channels_in: int, channels_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.MaxPool2d(2),
        )  # fmt: skip

    return nn.Sequential(block(FRAMES, 16), block(16, 32), block(32, 64), block(64, 64), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(64, 1))  # fmt: skip


class RecipeTower(nn.Module):
    """The recipe's MViT tower and multi-instance head, one video per study, one binary output."""

    def __init__(self) -> None:
        super().__init__()
        config = DeepCoroClipConfig(
            video_config=RECIPE_TOWER, projection_dim=64, projection_dropout=0.0, mil_dropout=0.0,
            segments=[], tasks=["finding"], task_types={"finding": "binary"},
            text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        )  # fmt: skip
        self.model = DeepCoroForSegmentClassification(config)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        grey = clips[:, :, None].expand(-1, -1, 3, -1, -1)  # [B, T, 3, H, W], as the processor's RGB output
        return self.model(grey).logits[:, 0]


def train(model: nn.Module, clips, labels, train_index, test_index, epochs: int, seed: int) -> tuple[list, float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    aurocs, start = [], time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in np.array_split(rng.permutation(train_index), max(1, len(train_index) // BATCH)):
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(clips[batch])[:, 0], torch.from_numpy(labels[batch])
            )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            scores = torch.cat([model(clips[b])[:, 0] for b in np.array_split(test_index, len(test_index) // 64 + 1)])
        aurocs.append(roc_auc_score(labels[test_index], scores.numpy()))
    return aurocs, (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phantoms", type=Path, default=Path("runs/bench_learnability/phantoms"))
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the small CNN")
    parser.add_argument("--tower-epochs", type=int, default=10, help="epochs of the recipe's MViT tower")
    parser.add_argument("--territory", choices=("RCA", "LCA"), default="RCA")
    parser.add_argument(
        "--finding", choices=("cto", "stenosis_binary"), default="cto", help="stenosis_binary: >= 70 %%"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)  # the models' initial weights
    if not (args.phantoms / "studies.csv").is_file():
        generate_phantoms(args.phantoms, 700, seed=11, image_size=SIZE, frames=(8, 8), workers=2)
    clips, labels, split = load_clips(args.phantoms, args.territory, args.finding)
    # Held out: the validation and test patients together (nothing is tuned here), for enough positive videos.
    train_index, test_index = np.flatnonzero(split == "train"), np.flatnonzero(split != "train")
    print(f"{args.territory} videos: {len(train_index)} train ({labels[train_index].mean():.1%} with {args.finding}), "
          f"{len(test_index)} held out ({labels[test_index].mean():.1%})")  # fmt: skip
    area = vessel_area(clips[test_index])
    print(f"vessel area, no training:     held-out AUROC {roc_auc_score(labels[test_index], -area):.3f}")
    for name, model, epochs in (
        ("small CNN", small_cnn(), args.epochs),
        ("recipe MViT tower", RecipeTower(), args.tower_epochs),
    ):
        aurocs, seconds = train(model, clips, labels, train_index, test_index, epochs, args.seed)
        per_epoch = " ".join(f"{a:.3f}" for a in aurocs)
        print(f"{name + ',':<18} from scratch: held-out AUROC per epoch {per_epoch}  ({seconds:.0f} s / epoch)")


if __name__ == "__main__":
    main()
