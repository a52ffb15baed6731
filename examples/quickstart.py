"""Quick start: build a DeepCORO-CLIP study classifier, save it as a Hub-style folder (weights, config, code), load it
back through `AutoModelForVideoClassification` with remote code, and grade a study of angiography clips.

The weights here are randomly initialised (no network, no gated paper weights), so the numbers only show the shapes
and the flow: 18 segments × {stenosis %, P(stenosis >= 70 %), calcification, CTO, thrombus}, and which video the
study-level attention looked at.

    python examples/quickstart.py [--output-dir runs/quickstart]
"""

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForVideoClassification

from deepcoro_hf import DeepCoroClipConfig, DeepCoroForSegmentClassification
from deepcoro_hf.vocabulary import SEGMENT_BY_KEY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/quickstart"))
    args = parser.parse_args()

    torch.manual_seed(0)
    # A small video tower (8 frames of 64×64, three stages) keeps the example to seconds on a laptop CPU; the default
    # DeepCoroClipConfig() is the paper's full-size model.
    config = DeepCoroClipConfig(
        video_config=dict(num_frames=8, image_size=64, hidden_sizes=[32, 64, 128], depths=[1, 2, 1], num_heads=[1, 2, 4],
                          pool_kv_stride=[1, 4, 4]),
        text_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
        projection_dim=64, mil_attention_hidden=32,
    )
    model = DeepCoroForSegmentClassification(config).eval()
    model.save_pretrained(args.output_dir)
    print(f"saved {sorted(p.name for p in args.output_dir.iterdir())} to {args.output_dir}")

    reloaded = AutoModelForVideoClassification.from_pretrained(args.output_dir, trust_remote_code=True).eval()
    study = torch.randn(1, 3, 8, 3, 64, 64)  # one study, three videos (normalised pixels)
    video_mask = torch.tensor([[True, True, True]])
    with torch.no_grad():
        output = reloaded(study, video_mask)
    logits = output.logits[0]
    tasks = config.tasks
    print(f"{'segment':42s} {'stenosis %':>10s} {'P(>=70%)':>9s} {'calcif':>7s} {'CTO':>6s} {'thromb':>7s}")
    for i, key in enumerate(config.segments):
        values = dict(zip(tasks, logits[i].tolist()))
        probs = {t: torch.sigmoid(torch.tensor(v)).item() for t, v in values.items() if t != "stenosis"}
        print(f"{SEGMENT_BY_KEY[key].name:42s} {values['stenosis']:10.1f} {probs['stenosis_binary']:9.2f} "
              f"{probs['calcif_binary']:7.2f} {probs['cto']:6.2f} {probs['thrombus']:7.2f}")
    print("across-video attention per video:", [round(w, 3) for w in output.cls_attention_weights[0].tolist()])


if __name__ == "__main__":
    main()
