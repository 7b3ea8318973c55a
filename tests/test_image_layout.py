"""The image token layout helpers (`modeling/image_layout.py`) against values worked out by hand from spec §4.2."""

import math

import pytest
import torch

from hour_llava.modeling.image_layout import (
    anyres_feature_grid,
    anyres_image_token_count,
    anyres_tile_grid,
    base_grid_position_ids,
    capped_feature_grid,
    kept_row_count,
    multi_image_position_ids,
    random_grid_indices,
    rows_closed_by_newlines,
    split_kept_indices,
    tile_memory_position_ids,
    uniform_anyres_image_token_count,
    uniform_grid_indices,
    unpadded_feature_grid,
)
from hour_llava.processing.image_processing_hour_llava import grid_pinpoints


PINPOINTS = grid_pinpoints()
G = 27  # SigLIP so400m/14 at 384: 27 x 27 patches per crop


@pytest.mark.parametrize(
    ("image_size", "tiles", "unpadded", "final"),
    [
        # square: one tile, nothing to strip
        ((384, 384), (1, 1), (27, 27), (27, 27)),
        # wide 500x900 on 2x3 tiles = 54x81 features: 81/900 * 500 = 45 rows of content, padding (54-45)//2 = 4 a
        # side, so 46 rows stay (floor-halved padding keeps one extra row); times = sqrt(46*81 / 6561) = 0.75
        ((500, 900), (2, 3), (46, 81), (46, 81)),
        ((900, 500), (3, 2), (81, 46), (81, 46)),
        # tiny 10x20: one tile; 27/20 * 10 = 13.5 -> int 13, padding 7 a side -> 13 rows
        ((10, 20), (1, 1), (13, 27), (13, 27)),
        # tall 2000x400 on 6x2 tiles = 162x54: 162/2000 * 400 = 32.4 -> 32 columns, padding 11 a side -> 32
        ((2000, 400), (6, 2), (162, 32), (162, 32)),
        # huge 5000x3000 on 6x4 tiles = 162x108: 162/5000 * 3000 = 97.2 -> 97, padding 5 a side -> 98 columns;
        # times = sqrt(162*98 / 6561) = 126/81 > 1.1, so 162 // times = 104 and 98 // times = 62 (the float quotient
        # is 62.99999..., floored as the reference floors it; exact arithmetic would give 63)
        ((5000, 3000), (6, 4), (162, 98), (104, 62)),
    ],
)
def test_anyres_feature_grid_hand_computed(image_size, tiles, unpadded, final):
    assert anyres_tile_grid(image_size, PINPOINTS, 384) == tiles
    assert unpadded_feature_grid(image_size, (tiles[0] * G, tiles[1] * G)) == unpadded
    assert anyres_feature_grid(image_size, PINPOINTS, 384, G, 9) == final


def test_unpad_truncates_where_transformers_rounds():
    """Image 47x423 on 1x2 tiles (27x54 features): 47 * (54 / 423) is 6 exactly but 5.999999999999999 in floats.

    The reference's `int()` keeps 5 content rows, padding (27 - 5) // 2 = 11 a side, so 5 rows stay; transformers'
    `unpad_image` rounds to 7 decimals first (6 rows, padding 10) and keeps 7, which the checkpoints never saw.
    """
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    assert anyres_tile_grid((47, 423), PINPOINTS, 384) == (1, 2)
    assert unpadded_feature_grid((47, 423), (27, 54)) == (5, 54)
    assert tuple(unpad_image(torch.zeros(1, 27, 54), (47, 423)).shape[1:]) == (7, 54)


def test_cap_leaves_grids_up_to_about_nine_tiles():
    assert capped_feature_grid(81, 81, G, 9) == (81, 81)  # times = 1
    assert capped_feature_grid(89, 89, G, 9) == (89, 89)  # times = 1.0988 <= 1.1
    # 90x90: times = 90/81 = 1.111 > 1.1; 90 // times is 81 exactly but 80.99999... in floats, floored to 80
    assert capped_feature_grid(90, 90, G, 9) == (80, 80)
    assert capped_feature_grid(100, 50, G, 9) == (100, 50)  # times = 0.87: a long thin grid is not shrunk


def reference_newline_insertion(kept_ids: torch.Tensor, height: int, width: int) -> list[int]:
    """The reference's `add_grid_image_newline` on ids, written out: -1 marks a newline."""
    out, start = [], 0
    for row_start in range(width, height * width, width):
        at_or_after = (kept_ids >= row_start).nonzero()
        if len(at_or_after) == 0:
            continue
        insert = int(at_or_after[0])
        if insert == start:
            continue
        out += kept_ids[start:insert].tolist() + [-1]
        start = insert
    return out + kept_ids[start:].tolist() + [-1]


@pytest.mark.parametrize(("height", "width"), [(27, 27), (46, 81), (13, 27), (3, 5), (1, 4), (104, 62)])
def test_one_newline_per_non_empty_row(height, width):
    generator = torch.Generator().manual_seed(height * 1000 + width)
    draws = [uniform_grid_indices(height, width)]
    draws += [random_grid_indices(height, width, generator=generator) for _ in range(20)]
    draws.append(torch.tensor([width * (height - 1)]))  # only the last row
    draws.append(torch.tensor([0]))  # only the first row
    for kept in draws:
        reference = reference_newline_insertion(kept, height, width)
        assert reference.count(-1) == kept_row_count(kept, width)
        assert len(reference) == anyres_image_token_count(0, kept, width)
        closed = rows_closed_by_newlines(kept, width, newline_id=height * width)
        assert [-1 if i == height * width else i for i in closed.tolist()] == reference


def test_rows_closed_by_newlines_hand_computed():
    # width 3: 0, 2 in row 0; 5 in row 1; nothing in row 2; 9, 10 in row 3 -> a newline (99) after 2, 5 and 10
    assert rows_closed_by_newlines(torch.tensor([0, 2, 5, 9, 10]), 3, 99).tolist() == [0, 2, 99, 5, 99, 9, 10, 99]
    assert rows_closed_by_newlines(torch.tensor([7]), 3, 12).tolist() == [7, 12]


def test_base_grid_position_ids_hand_computed():
    # a 6x15 tile grid seen by a 5x5 base: rows linspace(0, 5, 5) = 0, 1.25, 2.5, 3.75, 5 -> 0, 1, 2, 4, 5 (2.5 to
    # even); columns linspace(0, 14, 5) = 0, 3.5, 7, 10.5, 14 -> 0, 4, 7, 10, 14 (3.5 -> 4, 10.5 -> 10)
    ids = base_grid_position_ids(5, 6, 15).view(5, 5)
    assert ids[:, 0].tolist() == [0, 15, 30, 60, 75] and ids[0].tolist() == [0, 4, 7, 10, 14]
    # the same grid size: identity
    assert base_grid_position_ids(27, 27, 27).tolist() == list(range(729))
    # 27 over a 46x81 grid: row 26 is 45, column 26 is 80, the last tile id
    assert int(base_grid_position_ids(27, 46, 81)[-1]) == 46 * 81 - 1


def test_tile_memory_position_ids_hand_computed():
    assert tile_memory_position_ids(2, 3).tolist() == [0, 1, 2, 6, 3, 4, 5, 6]


def test_multi_image_position_ids_hand_computed():
    # image 1 of 3, 2x2 grids (P = 4): tokens 4..7, every newline 3 * 4 = 12
    memory_ids, query_ids = multi_image_position_ids(1, 3, 2, torch.tensor([0, 3]))
    assert memory_ids.tolist() == [4, 5, 6, 7, 12] and query_ids.tolist() == [4, 7, 12]


def test_split_kept_indices_per_image_and_refusals():
    runs = split_kept_indices(torch.tensor([1, 2, 0, 5, 7, 3]), torch.tensor([[2, 2], [2, 0]]), 2)
    assert [(b.tolist(), t.tolist()) for b, t in runs] == [([1, 2], [0, 5]), ([7, 3], [])]
    with pytest.raises(ValueError, match="image_kept_lengths sum to 3 but image_kept_indices holds 6"):
        split_kept_indices(torch.tensor([1, 2, 0, 5, 7, 3]), torch.tensor([[2, 1]]), 1)
    with pytest.raises(ValueError, match=r"\(num_images, 2\) tensor of run lengths for the 2 images"):
        split_kept_indices(torch.tensor([1, 2]), torch.tensor([[2, 0]]), 2)
    with pytest.raises(ValueError, match="for the 1 images, got None"):
        split_kept_indices(torch.tensor([1, 2]), None, 1)


def test_kept_row_count_hand_computed():
    # width 5: ids 0,1 in row 0; 7 in row 1; 13,14 in row 2; nothing in rows 3-4
    assert kept_row_count(torch.tensor([0, 1, 7, 13, 14]), 5) == 3
    assert kept_row_count(torch.tensor([0, 20, 24]), 5) == 2  # rows 0 and 4, rows 1-3 empty


def test_uniform_indices_and_closed_form_count():
    assert uniform_grid_indices(3, 5).tolist() == [0, 2, 4, 10, 12, 14]
    assert uniform_grid_indices(27, 27).numel() == 196
    assert uniform_anyres_image_token_count(27, 27, G) == 196 + 14 * 14 + 14  # one tile, square image: 406
    assert uniform_anyres_image_token_count(46, 81, G) == 196 + 23 * 41 + 23  # the 500x900 image: 1162
    for height, width in [(1, 1), (2, 9), (13, 27), (46, 81), (104, 62), (162, 32)]:
        kept = uniform_grid_indices(height, width)
        assert uniform_anyres_image_token_count(height, width, G) == anyres_image_token_count(196, kept, width)


def test_random_indices_match_the_reference_draw():
    """`ceil(N/4)` smallest of `torch.rand(1, N)`, sorted: the same draw as the reference from the same seed."""
    torch.manual_seed(3)
    scores = torch.rand(1, 46 * 81)
    expected = scores.topk(math.ceil(46 * 81 / 4), dim=1, largest=False).indices[0].sort().values
    kept = random_grid_indices(46, 81, generator=torch.Generator().manual_seed(3))
    assert torch.equal(kept, expected)
    assert kept.numel() == 932 and kept.unique().numel() == 932
    assert random_grid_indices(27, 27).numel() == 183  # ceil(729 / 4)


def reference_tile_features(image_size, rows, cols, max_tiles=9):
    """The reference's `multi_image_resize` on a `(C, rows*g, cols*g)` feature map: slicing, then interpolation."""
    height, width = image_size
    features = torch.zeros(1, rows * G, cols * G)
    grid_h, grid_w = features.shape[1:]
    if width / height > grid_w / grid_h:
        padding = (grid_h - int(height * (grid_w / width))) // 2
        features = features[:, padding : grid_h - padding, :]
    else:
        padding = (grid_w - int(width * (grid_h / height))) // 2
        features = features[:, :, padding : grid_w - padding]
    h, w = features.shape[1:]
    times = math.sqrt(h * w / (max_tiles * G**2))
    if times > 1.1:
        shape = [int(h // times), int(w // times)]
        features = torch.nn.functional.interpolate(features[None], shape, mode="bilinear")[0]
    return tuple(features.shape[1:])


def test_feature_grid_matches_the_reference_tensor_ops_for_a_sweep_of_sizes():
    for height in range(7, 4000, 97):
        for width in range(5, 4000, 89):
            rows, cols = anyres_tile_grid((height, width), PINPOINTS, 384)
            expected = reference_tile_features((height, width), rows, cols)
            assert anyres_feature_grid((height, width), PINPOINTS, 384, G, 9) == expected, (height, width)
