"""DICOM → model-ready tensor: our path against the original research pipeline, on the same phantom files.

    python benchmarks/bench_data_pipeline.py [--studies 4] [--size 512] [--frames 16 64] [--repeats 2] [--jpeg-lossless]

Paths timed (one thread each, interleaved per file so machine load hits all alike), every one ending in a clip of
16 frames × 3 × 224 × 224 normalised with the released model's scalar mean/std:

- raw decode (floor): `pydicom.dcmread(path).pixel_array`, every frame, nothing else.
- ours: `DeepCoroVideoProcessor()(videos=[path])` — reads the DICOM, decodes only the 16 sampled frames, maps to
  8 bits, resizes and normalises.
- original, from DICOM: the original's conversion (pixel_array → 8 bits → GRAY2BGR → OpenCV `VideoWriter` MJPG AVI)
  followed by its reader (OpenCV decode of every frame → BGR→RGB → float32 → linspace 16 → Resize(224, antialias)
  → scalar normalise). The original did not map >8-bit data to 8 bits; here it is shifted to 8 bits so the AVI is
  valid (a negligible cost).
- original, steady state: the reader alone on the already converted AVI.

The phantom files are those `deepcoro phantoms` writes by default (16-64 frames, 8-12 bit, 15 % RLE). With
`--jpeg-lossless` they are first re-encoded to JPEG Lossless SV1 — what most cath labs write — with dcmtk's
`dcmcjpeg`, which makes decoding, not file handling, the dominant cost.

OpenCV is a dev-only dependency (`pip install opencv-python-headless`).
"""

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
import torch
import torchvision.transforms.functional as TF

from deepcoro_hf.phantoms import generate_phantoms
from deepcoro_hf.video_processing_deepcoro import DeepCoroVideoProcessor

MEAN, STD = 122.0901, 28.7908


def original_convert(dicom_path: Path, avi_path: Path) -> None:
    """DICOM → 8-bit MJPG AVI, frame by frame through OpenCV, as the original `process_dicom_video` does."""
    ds = pydicom.dcmread(dicom_path)
    frames = ds.pixel_array
    if frames.dtype != np.uint8:
        frames = (frames >> max(int(ds.BitsStored) - 8, 0)).astype(np.uint8)
    fps = float(ds.get("RecommendedDisplayFrameRate", 30) or 30)
    writer = cv2.VideoWriter(str(avi_path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def original_read(avi_path: Path, num_frames: int = 16, size: int = 224) -> torch.Tensor:
    """The original loader: decode every frame, float32, linspace sampling, bilinear antialias resize, normalise."""
    capture = cv2.VideoCapture(str(avi_path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    video = torch.from_numpy(np.stack(frames).astype(np.float32)).permute(0, 3, 1, 2)
    if len(video) < num_frames:
        video = torch.cat([video, video[-1:].expand(num_frames - len(video), -1, -1, -1)])
    else:
        video = video[torch.linspace(0, len(video) - 1, num_frames).long()]
    video = TF.resize(video, [size, size], antialias=True)
    return ((video - MEAN) / STD).permute(0, 2, 3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, nargs=2, default=(16, 64), metavar=("MIN", "MAX"))
    parser.add_argument("--jpeg-lossless", action="store_true", help="re-encode the files to JPEG Lossless SV1 first")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    generate_phantoms(
        work / "mini", num_studies=args.studies, seed=0, image_size=args.size, frames=tuple(args.frames),
        rle_fraction=0.0 if args.jpeg_lossless else 0.15,  # dcmcjpeg takes uncompressed input
    )
    files = sorted((work / "mini").rglob("*.dcm"))
    if args.jpeg_lossless:
        for path in files:
            # +e1: JPEG lossless, selection value 1 (Process 14 SV1).
            encoded = path.with_suffix(".jpeg.dcm")
            subprocess.run(["dcmcjpeg", "+e1", str(path), str(encoded)], check=True, capture_output=True)
            encoded.replace(path)
    processor = DeepCoroVideoProcessor()
    seconds = {"raw decode": 0.0, "ours": 0.0, "original from DICOM": 0.0, "original steady state": 0.0}
    for repeat in range(args.repeats + 1):  # the first pass warms caches and imports and is not counted
        for index, path in enumerate(files):
            avi = work / f"{index}.avi"
            timings = {}
            start = time.perf_counter()
            pydicom.dcmread(path).pixel_array
            timings["raw decode"] = time.perf_counter() - start
            start = time.perf_counter()
            ours = processor(videos=[str(path)], return_tensors="pt")["pixel_values_videos"]
            timings["ours"] = time.perf_counter() - start
            start = time.perf_counter()
            original_convert(path, avi)
            converted = time.perf_counter() - start
            start = time.perf_counter()
            theirs = original_read(avi)
            timings["original steady state"] = time.perf_counter() - start
            timings["original from DICOM"] = converted + timings["original steady state"]
            assert ours.shape == (1, 16, 3, 224, 224) and theirs.shape == (16, 224, 224, 3)
            if repeat:
                for key, value in timings.items():
                    seconds[key] += value
    n = len(files) * args.repeats
    rate = {key: n / value for key, value in seconds.items()}
    syntaxes = {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID.name for p in files}
    frames = [int(pydicom.dcmread(p, stop_before_pixels=True).NumberOfFrames) for p in files]
    print(f"{len(files)} phantom videos of {min(frames)}-{max(frames)} (mean {np.mean(frames):.0f}) frames of "
          f"{args.size}x{args.size} ({', '.join(sorted(syntaxes))}), {args.repeats} passes, 1 thread")
    print(f"{'path':24s} {'videos/s':>9s} {'ours is x faster':>17s}")
    for key in seconds:
        print(f"{key:24s} {rate[key]:9.1f} {rate['ours'] / rate[key]:17.2f}")
    print(f"ours / raw decode time: {seconds['ours'] / seconds['raw decode']:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
