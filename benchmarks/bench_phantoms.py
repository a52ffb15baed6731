"""Throughput of the phantom writer on one core: videos/s of 512x512x32 studies, rendering plus DICOM writing.

    python benchmarks/bench_phantoms.py [--studies 12] [--size 512] [--frames 32] [--rle-fraction 0.15]

Prints, for the same videos in the same process:
  - render only (`render_video`),
  - DICOM writing only of the rendered pixels (pydicom; the RLE share uses pylibjpeg-rle) - the I/O baseline,
  - end to end (`generate_phantoms`, what `deepcoro phantoms` runs), for the default RLE mix and with no RLE,
and the end-to-end time as a ratio of the writing-only baseline. Rates are per second of this process's CPU time
(one thread), so other load on the machine does not count; wall-clock rates are printed beside them.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, set before numpy loads its thread pools

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from deepcoro_hf.phantoms import RLE_FRACTION, generate_phantoms, make_studies, render_video, write_video_dicom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--rle-fraction", type=float, default=RLE_FRACTION)
    args = parser.parse_args()
    frames = (args.frames, args.frames)

    studies = make_studies(args.studies, args.seed, args.size, frames, args.rle_fraction)
    videos = [(study, video) for study in studies for video in study.videos]
    rle = sum(video.transfer_syntax.endswith(".5") for _, video in videos)
    print(f"{len(videos)} videos of {args.size}x{args.size}x{args.frames} in {len(studies)} studies ({rle} RLE)")
    render_video(videos[0][1], np.random.default_rng(0))  # warm-up (imports, caches)

    render_s = write_s = np.zeros(2)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (study, video) in enumerate(videos):
            start = clocks()
            pixels = render_video(video, np.random.default_rng(video.noise_seed))
            middle = clocks()
            write_video_dicom(Path(tmp) / f"{i}.dcm", study, video, pixels)
            render_s = render_s + middle - start
            write_s = write_s + clocks() - middle

    def end_to_end(rle_fraction: float) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as tmp:
            start = clocks()
            manifest = generate_phantoms(tmp, args.studies, args.seed, args.size, frames, rle_fraction)
            return clocks() - start, manifest.num_videos

    mixed_s, mixed_n = end_to_end(args.rle_fraction)
    plain_s, plain_n = end_to_end(0.0)
    n = len(videos)

    def rate(seconds: np.ndarray, count: int) -> str:
        cpu, wall = seconds
        return (
            f"{count / cpu:6.2f} videos/s ({1000 * cpu / count:6.1f} ms/video CPU; wall {count / wall:5.2f} videos/s)"
        )

    print(f"render only             : {rate(render_s, n)}")
    print(f"DICOM write only        : {rate(write_s, n)}  <- baseline")
    print(
        f"end to end, {args.rle_fraction:4.0%} RLE   : {rate(mixed_s, mixed_n)}"
        f"  = {mixed_s[0] / write_s[0]:4.2f}x write-only"
    )
    print(f"end to end, no RLE      : {rate(plain_s, plain_n)}")


def clocks() -> np.ndarray:
    """(CPU seconds of this process, wall-clock seconds)."""
    return np.array([time.process_time(), time.perf_counter()])


if __name__ == "__main__":
    main()
