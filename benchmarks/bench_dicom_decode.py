"""Decode throughput of `deepcoro_hf.dicom.read_dicom_video` against plain `pydicom` on the same files.

Writes two synthetic 12-bit XA cines of 32 frames of 512 x 512 (angiogram-like: smooth background, noise, drift)
to a temporary folder, one RLE Lossless (pydicom's encoder) and one JPEG Lossless SV1 (dcmtk's dcmcjpeg, skipped
when absent), then times, best of `--repeats`:

* baseline: `pydicom.dcmread(path).pixel_array` (all frames, raw 12-bit values, no 8-bit mapping);
* pydicom alone to uint8: `pixel_array`, `apply_voi_lut`, then the scaling formula on every pixel (same output as ours);
* ours, all frames: `read_dicom_video(path)` (decode + VOI/stored-range mapping to uint8 + metadata);
* ours, 16 frames: `read_dicom_video(path, frame_indices=linspace(0, 31, 16))`, what the video processor asks for;
* raw decoding with each available pydicom plugin (read_dicom_video leaves gdcm out when another plugin exists);
* the 8-bit mapping alone: lookup table vs the same formula evaluated in float on every pixel.

The machine's load changes the absolute figures; the ratios within one run are what to compare.

Run: `python benchmarks/bench_dicom_decode.py` (about 20 s on 2 cores).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing, as_pixel_options, get_decoder
from pydicom.uid import RLELossless, XRayAngiographicImageStorage, generate_uid

from deepcoro_hf.dicom import read_dicom_video

FRAMES, SIZE, BITS = 32, 512, 12


def synthetic_cine(path: Path) -> Dataset:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    background = 2000 + 900 * np.sin(x / 45.0) * np.cos(y / 60.0)
    frames = [np.clip(background + 25 * t + rng.normal(0, 30, background.shape), 0, 2**BITS - 1) for t in range(FRAMES)]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.SOPClassUID, ds.Modality = XRayAngiographicImageStorage, "XA"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameTime = 1000.0 / 15
    ds.WindowCenter, ds.WindowWidth = 2048, 3000
    ds.set_pixel_data(np.stack(frames).astype(np.uint16), photometric_interpretation="MONOCHROME2", bits_stored=BITS)
    ds.save_as(path, enforce_file_format=True)
    return ds


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def pixel_array_to_uint8(path: Path) -> np.ndarray:
    """What one would write with pydicom alone: decode everything, window, scale each pixel in float."""
    ds = pydicom.dcmread(path)
    windowed = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    return np.clip(np.rint(windowed * 255.0 / (2**BITS - 1)), 0, 255).astype(np.uint8)


def bench_file(label: str, path: Path, repeats: int) -> None:
    indices = np.linspace(0, FRAMES - 1, 16).astype(int)
    assert np.array_equal(read_dicom_video(path).frames, pixel_array_to_uint8(path))
    raw = best_time(lambda: pydicom.dcmread(path).pixel_array, repeats)
    naive = best_time(lambda: pixel_array_to_uint8(path), repeats)
    ours_all = best_time(lambda: read_dicom_video(path), repeats)
    ours_16 = best_time(lambda: read_dicom_video(path, frame_indices=indices), repeats)
    print(f"{label} ({path.stat().st_size / 2**20:.1f} MiB, {FRAMES} frames of {SIZE}x{SIZE}, {BITS}-bit)")
    print(f"  pydicom pixel_array (raw 12-bit), all frames     {FRAMES / raw:7.1f} frames/s  (baseline)")
    print(f"  pixel_array + apply_voi_lut + float scaling      {FRAMES / naive:7.1f} frames/s  {raw / naive:5.2f}x")
    print(f"  read_dicom_video -> uint8, all frames            {FRAMES / ours_all:7.1f} frames/s  "
          f"{raw / ours_all:5.2f}x")
    print(
        f"  read_dicom_video -> uint8, 16 of {FRAMES} frames        {16 / ours_16:7.1f} frames/s  "
        f"clip ready in {ours_16 * 1e3:.0f} ms vs {raw * 1e3:.0f} ms for raw pixel_array ({raw / ours_16:.2f}x)"
    )
    # read_dicom_video avoids gdcm when another plugin exists (gdcm can abort the process on corrupt data).
    ds = pydicom.dcmread(path)
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    for plugin in decoder.available_plugins:
        seconds = best_time(lambda: decoder.as_array(ds, decoding_plugin=plugin, **as_pixel_options(ds)), repeats)
        print(f"  raw decode with the {plugin} plugin{' ' * (20 - len(plugin))}{FRAMES / seconds:7.1f} frames/s")


def bench_mapping(path: Path, repeats: int) -> None:
    """The 8-bit mapping as the module does it (a 2**16 lookup table) vs the formula in float64 on every pixel."""
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array

    def per_pixel():
        windowed = apply_windowing(raw, ds)
        return np.clip(np.rint(windowed * 255.0 / (2**BITS - 1)), 0, 255).astype(np.uint8)

    def lookup_table():
        lut = np.clip(np.rint(apply_windowing(np.arange(2**16, dtype=np.uint16), ds) * 255.0 / (2**BITS - 1)), 0, 255)
        return np.take(lut.astype(np.uint8), raw)

    assert np.array_equal(per_pixel(), lookup_table())
    t_pixel, t_lut = best_time(per_pixel, repeats), best_time(lookup_table, repeats)
    print(
        f"8-bit mapping of {FRAMES} frames: float formula per pixel {t_pixel * 1e3:.0f} ms, "
        f"lookup table {t_lut * 1e3:.0f} ms ({t_pixel / t_lut:.1f}x faster)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.dcm"
        ds = synthetic_cine(plain)
        rle = Path(tmp) / "rle.dcm"
        ds.compress(RLELossless)
        ds.save_as(rle, enforce_file_format=True)
        bench_file("RLE Lossless", rle, args.repeats)
        if dcmcjpeg := shutil.which("dcmcjpeg"):
            jpeg = Path(tmp) / "jpeg_lossless.dcm"
            subprocess.run([dcmcjpeg, "+e1", str(plain), str(jpeg)], check=True)
            bench_file("JPEG Lossless SV1", jpeg, args.repeats)
        else:
            print("JPEG Lossless SV1: skipped (dcmtk's dcmcjpeg is not installed)")
        bench_mapping(plain, args.repeats)


if __name__ == "__main__":
    main()
