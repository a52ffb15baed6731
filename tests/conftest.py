"""Shared fixtures: tiny configurations so most tests run in milliseconds on two CPU cores."""

import os

import pytest
import torch

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_VIDEO = dict(
    num_frames=4, image_size=32, hidden_sizes=[8, 16], depths=[1, 1], num_heads=[1, 2], pool_kv_stride=[1, 4, 4]
)
TINY_TEXT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
    max_position_embeddings=64,
)


def tiny_clip_config(**overrides):
    from deepcoro_hf import DeepCoroClipConfig

    kwargs = dict(
        video_config=dict(TINY_VIDEO), text_config=dict(TINY_TEXT), projection_dim=16, mil_num_heads=2,
        mil_attention_hidden=8, max_videos=4,
    )
    kwargs.update(overrides)
    return DeepCoroClipConfig(**kwargs)


@pytest.fixture
def tiny_config():
    return tiny_clip_config()


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """A small phantom DeepCORO-mini folder shared by the data, training and inference tests (written once)."""
    from deepcoro_hf.phantoms import generate_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    generate_phantoms(root, num_studies=8, seed=3, image_size=64, frames=(16, 24))
    return root
