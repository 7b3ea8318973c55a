"""The memory repository, forgetting and MemAug position ids, pinned to the reference spec's worked vectors (4.1a)."""

import numpy as np
import pytest
import torch

from hour_llava.modeling.memory import (
    assemble_video_memory,
    memaug_query_position_ids,
    random_spatial_indices,
    temporal_keep_indices,
    uniform_spatial_indices,
    upsample_frame_indices,
)
from hour_llava.tiny import tiny_model as build_tiny_model


SPEC_KEPT_FRAMES_T128 = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 45, 49, 53, 57, 61, 65, 69, 73, 77, 81, 86, 90, 94,
                         98, 102, 106, 110, 114, 118, 122, 127]
SPEC_UNIFORM_SPATIAL = [0, 2, 4, 6, 16, 18, 20, 22, 32, 34, 36, 38, 48, 50, 52, 54]


def spec_video_position_ids(kept_frames, spatial, stride=65):
    return [t * stride + s for t in kept_frames for s in [*spatial, 64]]


def test_uniform_spatial_forgetting_keeps_every_other_row_and_column():
    assert uniform_spatial_indices(8, 16).tolist() == SPEC_UNIFORM_SPATIAL


def test_temporal_forgetting_for_128_frames():
    assert temporal_keep_indices(128, 32).tolist() == SPEC_KEPT_FRAMES_T128


def test_upsampling_a_100_frame_video():
    indices = upsample_frame_indices(100, 128)
    assert len(indices) == 128
    assert indices[:12].tolist() == [0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 7, 8]
    assert indices[-1] == 99
    assert upsample_frame_indices(300, 128).tolist() == list(range(300))


def test_worked_vector_t128_uniform():
    hidden = 3
    frames = torch.zeros(128, 64, hidden)
    frames[..., 0] = torch.arange(128)[:, None]  # frame index
    frames[..., 1] = torch.arange(64)[None, :]  # token index
    newline = torch.tensor([-1.0, -1.0, 7.0])
    memory = assemble_video_memory(frames, newline, uniform_spatial_indices(8, 16), temporal_keep_indices(128, 32))

    assert memory.repository.shape == (8320, hidden)
    assert memory.repository_position_ids.tolist() == list(range(8320))
    assert memory.decayed.shape == (544, hidden)
    expected_ids = spec_video_position_ids(SPEC_KEPT_FRAMES_T128, SPEC_UNIFORM_SPATIAL)
    assert memory.decayed_position_ids.tolist() == expected_ids
    # every decayed token is the memory token with the same id (the ids really index the memory)
    torch.testing.assert_close(memory.decayed, memory.repository[memory.decayed_position_ids])
    assert memory.repository[64].tolist() == newline.tolist() and memory.repository[65 + 64].tolist() == newline.tolist()

    query_ids = memaug_query_position_ids(5, memory.decayed_position_ids, 8320, 3)
    assert query_ids.tolist() == [0, 1, 2, 3, 4] + [5 + i for i in expected_ids] + [5 + 8320, 5 + 8321, 5 + 8322]


def test_random_spatial_forgetting_is_sorted_distinct_and_seeded():
    first = random_spatial_indices(10, 8, 16, torch.Generator().manual_seed(3))
    again = random_spatial_indices(10, 8, 16, torch.Generator().manual_seed(3))
    other = random_spatial_indices(10, 8, 16, torch.Generator().manual_seed(4))
    assert first.shape == (10, 16)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert all(row.unique().numel() == 16 for row in first)
    assert torch.equal(first, first.sort(dim=1).values)
    assert first.min() >= 0 and first.max() < 64


class CaptureMemAugInputs:
    """Forward pre-hook on MemAug recording the position ids it is called with."""

    def __init__(self, module):
        self.calls = []
        module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        query, memory, query_position_ids, memory_position_ids = args
        self.calls.append((query.shape, memory.shape, query_position_ids[0].tolist(), memory_position_ids[0].tolist()))


def reference_geometry_model(tokenizer, **overrides):
    """A tiny model with the released checkpoints' forgetting geometry: 8x8 pooled grid, 16 kept, 128-frame minimum."""
    return build_tiny_model(tokenizer, video_pool_size=8, spatial_keep_tokens=16, min_video_frames=128, **overrides)


def video_prompt(tokenizer, num_video_tokens, before="Watch:", after=" What happens?"):
    text = f"{before}{'<video>' * num_video_tokens}{after}"
    return tokenizer(text, return_tensors="pt")


@pytest.mark.parametrize("mode", ["reference", "aligned"])
def test_model_feeds_memaug_the_spec_position_ids(tokenizer, mode):
    model = reference_geometry_model(tokenizer, memory_position_mode=mode)
    assert model.config.num_video_tokens(128) == 544
    capture = CaptureMemAugInputs(model.model.memory_augmentation)
    inputs = video_prompt(tokenizer, 544)
    num_before, num_after = len(tokenizer("Watch:")["input_ids"]), len(tokenizer(" What happens?")["input_ids"])
    with torch.no_grad():
        model(**inputs, pixel_values_videos=torch.randn(128, 3, 32, 32))

    (query_shape, memory_shape, query_ids, memory_ids), = capture.calls
    assert memory_shape == (1, 8320, 64)
    assert query_shape == (1, num_before + 544 + num_after, 64)
    video_ids = spec_video_position_ids(SPEC_KEPT_FRAMES_T128, SPEC_UNIFORM_SPATIAL)
    assert query_ids == (list(range(num_before)) + [num_before + i for i in video_ids]
                         + [num_before + 8320 + j for j in range(num_after)])
    offset = num_before if mode == "aligned" else 0  # "reference": keys carry no text offset
    assert memory_ids == [offset + i for i in range(8320)]


def test_model_upsamples_a_100_frame_video_to_128(tokenizer):
    model = reference_geometry_model(tokenizer)
    pixels = torch.randn(100, 3, 32, 32)
    with torch.no_grad():
        pooled = model.model.get_video_features(pixels).pooler_output
        memory = model.model.build_video_memory(pooled)
    assert memory.repository.shape[0] == 128 * 65
    frames = memory.repository.view(128, 65, -1)
    # np.linspace(0, 99, 128, dtype=int) starts 0, 0, 1, 2, 3, 3: frames 0/1 and 4/5 are duplicates
    torch.testing.assert_close(frames[0], frames[1])
    torch.testing.assert_close(frames[4], frames[5])
    assert not torch.allclose(frames[1], frames[2])
    torch.testing.assert_close(frames[-1, :64], pooled[99])
    assert memory.decayed.shape[0] == model.config.num_video_tokens(100) == 544


@pytest.mark.parametrize(
    ("num_frames", "expected_tokens"),
    [(1, 544), (128, 544), (131, 544), (132, 561), (2047, 511 * 17), (2048, 8704), (3600, 8704)],
)
def test_decayed_token_count(tokenizer, num_frames, expected_tokens):
    config = reference_geometry_model(tokenizer).config
    assert config.num_video_tokens(num_frames) == expected_tokens
    kept = temporal_keep_indices(max(num_frames, 128), config.num_kept_frames(num_frames))
    assert len(kept) * 17 == expected_tokens
    assert np.all(np.diff(kept) > 0)
