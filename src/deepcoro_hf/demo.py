"""`deepcoro demo`: the whole flow offline — a DICOM study in, a per-segment report out.

It writes two synthetic studies as XA DICOM (`deepcoro phantoms`), then runs `deepcoro predict` on the first one with
a model that is available offline: by default the small phantom-trained model shipped in the package
(`deepcoro_hf/assets/phantom_model`, made by `examples/learning_recipe.py --export-demo-model`), or any saved model
folder or Hub id given with `--model` (e.g. `heartwise/deepcoro-clip` for users with access to the paper's weights).
The phantom's ground truth is printed next to the report, so the output can be checked.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from .vocabulary import SEGMENT_BY_KEY, SEGMENT_KEYS, label_column

DEMO_MODEL = Path(__file__).resolve().parent / "assets" / "phantom_model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", type=Path, default=Path("runs/demo"), help="phantoms and the report go here")
    parser.add_argument("--model", default=str(DEMO_MODEL),
                        help="segment classifier folder or Hub id (default: the bundled phantom-trained model)")
    parser.add_argument("--seed", type=int, default=1, help="phantom seed")


def _ground_truth(studies_csv: Path, study_uid: str) -> str:
    studies = pd.read_csv(studies_csv, dtype={"study_id": str}).set_index("study_id")
    row = studies.loc[study_uid]
    findings = []
    for key in SEGMENT_KEYS:
        stenosis = row.get(label_column(key, "stenosis"))
        if stenosis is None or (isinstance(stenosis, float) and math.isnan(stenosis)):
            continue
        parts = [f"{stenosis:.0f}%"] if stenosis > 0 else []
        parts += [name for task, name in (("cto", "CTO"), ("thrombus", "thrombus"), ("calcif_binary", "calcification"))
                  if row.get(label_column(key, task)) == 1]
        if parts:
            findings.append(f"{SEGMENT_BY_KEY[key].name}: {', '.join(parts)}")
    return "; ".join(findings) or "no lesion"


def run(args: argparse.Namespace) -> int:
    from .cli import main as deepcoro

    phantoms = args.output_dir / "phantoms"
    if not (phantoms / "studies.csv").is_file():
        if deepcoro(["phantoms", str(phantoms), "--studies", "2", "--seed", str(args.seed), "--size", "256",
                     "--frames", "16..32"]) != 0:
            return 1
    videos = pd.read_csv(phantoms / "videos.csv", dtype={"study_id": str})
    study_uid = videos["study_id"].iloc[0]
    study_dir = phantoms / Path(videos["video_path"].iloc[0]).parent
    report = args.output_dir / "report.json"
    print(f"study {study_dir} ({len(list(study_dir.glob('*.dcm')))} DICOM videos) with model {args.model}")
    status = deepcoro(["predict", str(study_dir), "--model", str(args.model), "--output", str(report)])
    print(f"phantom ground truth: {_ground_truth(phantoms / 'studies.csv', study_uid)}")
    print(f"report written to {report}")
    return status
