"""Video tower throughput and peak memory: DeepCORO's MViT-v2 against torchvision's `mvit_v2_s`, same weights and input.

    python benchmarks/bench_video_tower.py [--batch 2] [--iters 3]

Prints clips/s and peak resident memory of each variant, as ratios to torchvision fp32 measured in the same run,
and the cosine similarity between bf16-autocast and fp32 video embeddings (mean of the output tokens).
Timings are interleaved (one forward of each variant per round) so machine load drifts hit every variant alike.
Peak memory is measured per variant in a fresh subprocess holding only that variant's model: the highest resident
set size sampled every 2 ms during one forward, minus the resident size just before it.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time

import torch
from torchvision.models.video import mvit_v2_s

from deepcoro_hf import DeepCoroVideoModel

VARIANTS = ("torchvision fp32", "deepcoro fp32", "deepcoro bf16-autocast", "torchvision bf16-autocast")


def build(seed: int = 0) -> tuple[torch.nn.Module, DeepCoroVideoModel]:
    torch.manual_seed(seed)
    reference = mvit_v2_s().eval()
    return reference, DeepCoroVideoModel.from_torchvision(reference).eval()


def forward(variant: str, reference: torch.nn.Module, ours: DeepCoroVideoModel, clips: torch.Tensor) -> torch.Tensor:
    """Output tokens [B, 393, 768] of one variant; clips are [B, T, C, H, W]."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.endswith("bf16-autocast"))
    with torch.inference_mode(), autocast:
        if variant.startswith("torchvision"):
            tokens = {}
            hook = reference.norm.register_forward_hook(lambda m, a, out: tokens.setdefault("t", out))
            reference(clips.transpose(1, 2))
            hook.remove()
            return tokens["t"].float()
        return ours(clips).last_hidden_state.float()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_worker(variant: str, batch: int) -> None:
    reference, ours = build()
    if variant.startswith("torchvision"):
        ours = None
    else:
        reference = None
    gc.collect()
    clips = torch.randn(batch, 16, 3, 224, 224)
    baseline, peak, running = _rss_bytes(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    forward(variant, reference, ours, clips)
    running[0] = False
    sampler.join()
    print(json.dumps({"peak_mb": (max(peak[0], _rss_bytes()) - baseline) / 2**20}))


def has_native_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2, help="clips per forward")
    parser.add_argument("--iters", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, metavar="VARIANT",
                        help=f"subset of {VARIANTS} (torchvision fp32 is always run: it is the baseline)")
    parser.add_argument("--_memory-worker", dest="memory_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        peak_memory_worker(args.memory_worker, args.batch)
        return

    variants = ["torchvision fp32"] + [v for v in args.variants if v != "torchvision fp32"]
    reference, ours = build()
    clips = torch.randn(args.batch, 16, 3, 224, 224)
    outputs = {v: forward(v, reference, ours, clips) for v in variants}  # warm-up, and the outputs to compare
    seconds = {v: 0.0 for v in variants}
    for _ in range(args.iters):
        for variant in variants:
            start = time.perf_counter()
            forward(variant, reference, ours, clips)
            seconds[variant] += time.perf_counter() - start

    memory = {}
    if not args.skip_memory:
        for variant in variants:
            result = subprocess.run(
                [sys.executable, __file__, "--batch", str(args.batch), "--_memory-worker", variant],
                check=True, capture_output=True, text=True,
            )
            memory[variant] = json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]

    base = "torchvision fp32"
    clips_per_s = {v: args.batch * args.iters / seconds[v] for v in variants}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}x16x224x224, "
          f"{args.iters} rounds, native bf16 on this CPU: {has_native_bf16()}")
    print(f"{'variant':28s} {'clips/s':>8s} {'x tv fp32':>9s} {'peak MB':>9s} {'x tv fp32':>9s}")
    for variant in variants:
        mem = memory.get(variant)
        mem_cols = f"{mem:9.0f} {mem / memory[base]:9.2f}" if mem is not None else f"{'-':>9s} {'-':>9s}"
        print(f"{variant:28s} {clips_per_s[variant]:8.3f} {clips_per_s[variant] / clips_per_s[base]:9.2f} {mem_cols}")
    if "deepcoro fp32" in outputs:
        fp32 = outputs["deepcoro fp32"]
        print(f"max |deepcoro fp32 - torchvision fp32| over all tokens: {(fp32 - outputs[base]).abs().max().item():.2e}")
        if "deepcoro bf16-autocast" in outputs:
            bf16 = outputs["deepcoro bf16-autocast"]
            cosine = torch.nn.functional.cosine_similarity(fp32.mean(1), bf16.mean(1)).min().item()
            print(f"cosine(bf16, fp32) of video embeddings (token mean), worst clip: {cosine:.5f}")


if __name__ == "__main__":
    main()
