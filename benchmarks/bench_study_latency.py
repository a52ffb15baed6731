"""Latency of one 10-video study from DICOM files to the report, with a breakdown, through `deepcoro predict`'s code.

    python benchmarks/bench_study_latency.py [--model full|demo|PATH] [--size 512] [--frames 32 64] [--repeats 3]
           [--device cpu|cuda] [--jpeg-lossless]

- decode: reading the DICOM files and decoding the 16 sampled frames of each video (`dicom.read_dicom_video`, as the
  processor does it), measured on its own;
- preprocess: the rest of the pipeline's `preprocess` (resize, normalise, pad the study) = preprocess − decode;
- model: the pipeline's `forward` (the video tower on the 10 videos, pooling, heads);
- report: `postprocess` and the text report (`render_study`).

`--model full` is the paper-size architecture (MViT-v2-S, 16×224×224, the released `attention+cls_token` head) with
random weights — what matters for latency is the architecture; `demo` is the small phantom-trained model bundled with
the package. The paper reports 4.17 s per study on an RTX A6000 (PACS-AI deployment).
"""

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepcoro_hf import DeepCoroClipConfig, DeepCoroForSegmentClassification, DeepCoroVideoProcessor
from deepcoro_hf.demo import DEMO_MODEL
from deepcoro_hf.dicom import read_dicom_header, read_dicom_video
from deepcoro_hf.inference import load_pipeline, render_study
from deepcoro_hf.phantoms import generate_phantoms
from deepcoro_hf.pipeline_deepcoro import STUDY_ANALYSIS, save_pipeline_folder


def ten_video_study(work: Path, size: int, frames: tuple[int, int], jpeg_lossless: bool) -> list[Path]:
    """Phantom files until one study has 10 videos (studies have 2-10), returned in acquisition order."""
    seed = 0
    while True:
        root = work / f"phantoms_{seed}"
        generate_phantoms(root, num_studies=4, seed=seed, image_size=size, frames=frames,
                          rle_fraction=0.0 if jpeg_lossless else 0.15)
        for study in sorted((root / "dicom").glob("*/*")):
            files = sorted(study.glob("*.dcm"))
            if len(files) == 10:
                if jpeg_lossless:
                    for path in files:
                        encoded = path.with_suffix(".jpeg.dcm")
                        subprocess.run(["dcmcjpeg", "+e1", str(path), str(encoded)], check=True, capture_output=True)
                        encoded.replace(path)
                return files
        seed += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="full", help="full (paper-size, random weights), demo, or a model folder")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, nargs=2, default=(32, 64))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jpeg-lossless", action="store_true", help="re-encode the study to JPEG Lossless SV1")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_latency_"))
    files = ten_video_study(work, args.size, tuple(args.frames), args.jpeg_lossless)
    if args.model == "full":
        model_dir = work / "full_model"
        torch.manual_seed(0)
        save_pipeline_folder(DeepCoroForSegmentClassification(DeepCoroClipConfig()), DeepCoroVideoProcessor(), model_dir)
        model = str(model_dir)
    else:
        model = str(DEMO_MODEL) if args.model == "demo" else args.model
    pipe = load_pipeline(STUDY_ANALYSIS, model, args.device)
    task_types = dict(pipe.model.config.task_types)
    processor = pipe.video_processor
    study = {"videos": [str(p) for p in files], "study_id": "benchmark"}

    def decode_only() -> None:
        for path in files:
            total = read_dicom_header(path).num_frames
            indices = np.linspace(0, total - 1, processor.num_frames).astype(int)
            read_dicom_video(path, frame_indices=indices)

    timings: dict[str, list[float]] = {"decode": [], "preprocess": [], "model": [], "report": [], "total": []}
    for repeat in range(args.repeats + 1):  # the first pass warms up and is not counted
        start = time.perf_counter()
        decode_only()
        decode = time.perf_counter() - start
        start = time.perf_counter()
        inputs = pipe.preprocess(study)
        preprocess = time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = pipe.forward(inputs)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        forward = time.perf_counter() - start
        start = time.perf_counter()
        render_study(pipe.postprocess(outputs), task_types)
        report = time.perf_counter() - start
        if repeat:
            timings["decode"].append(decode)
            timings["preprocess"].append(preprocess - decode)
            timings["model"].append(forward)
            timings["report"].append(report)
            timings["total"].append(preprocess + forward + report)
    syntax = read_dicom_header(files[0]).transfer_syntax
    frames = [read_dicom_header(p).num_frames for p in files]
    print(f"10-video study: {args.size}x{args.size}, {min(frames)}-{max(frames)} frames, {syntax}; model {args.model} "
          f"on {args.device} ({torch.get_num_threads()} threads); median of {args.repeats}")
    for stage, values in timings.items():
        print(f"  {stage:10s} {statistics.median(values):8.3f} s")
    print("paper (RTX A6000, PACS-AI): 4.17 s per study")


if __name__ == "__main__":
    main()
