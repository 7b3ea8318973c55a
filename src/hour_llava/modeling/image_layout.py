# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Where an image's tokens go, as small pure functions (sizes in, sizes or indices out), pinned to spec §4.2.

A single image is cut into `1 + rows * cols` crops by the image processor (`anyres_max_9`): a base crop of the whole
image and a grid of tiles. The model lays the tiles' `g x g` feature grids side by side, strips the feature rows or
columns that only saw the processor's black padding (*unpadding*), and shrinks a grid larger than `max_tiles` tiles'
worth of tokens. Spatial forgetting then keeps a quarter of the tokens, and every row that still holds a kept token
ends with a newline token. These functions give the sizes and counts of that layout, so that the placeholder
expansion and the model agree on them without running the vision tower.

Sizes are `(height, width)`, as everywhere in transformers; the reference's PIL sizes are `(width, height)`.
"""

import math

import torch
from transformers.image_processing_utils import select_best_resolution


def anyres_tile_grid(
    image_size: tuple[int, int], grid_pinpoints: list[list[int]], tile_size: int
) -> tuple[int, int]:
    """`(rows, cols)` of tiles the processor cut an image of `image_size` into.

    The best resolution is chosen exactly as the processor chose it (transformers' `select_best_resolution`, which is
    the reference's with both sizes transposed: the ranking and the first-wins tie-break are the same).
    """
    best_height, best_width = select_best_resolution(tuple(image_size), grid_pinpoints)
    return best_height // tile_size, best_width // tile_size


def unpadded_feature_grid(image_size: tuple[int, int], feature_grid: tuple[int, int]) -> tuple[int, int]:
    """`(height, width)` of a tile-feature grid once the rows or columns that saw only padding are removed.

    The reference's `unpad_image`, in feature units: the image's extent is truncated with `int()` and the padding
    halved with floor division, so an odd remainder keeps one more row (or column) than the image covers. Written
    here rather than taken from transformers, whose `unpad_image` rounds to 7 decimals before truncating and so
    differs from the checkpoints' training in rare sizes.
    """
    image_height, image_width = image_size
    grid_height, grid_width = feature_grid
    if image_width / image_height > grid_width / grid_height:
        content_height = int(image_height * (grid_width / image_width))
        padding = (grid_height - content_height) // 2
        return grid_height - 2 * padding, grid_width
    content_width = int(image_width * (grid_height / image_height))
    padding = (grid_width - content_width) // 2
    return grid_height, grid_width - 2 * padding


def capped_feature_grid(height: int, width: int, grid_size: int, max_tiles: int) -> tuple[int, int]:
    """`(height, width)` after the `anyres_max_<max_tiles>` cap: a grid with more than about `max_tiles` tiles' worth
    of tokens is bilinearly shrunk to `(int(height // times), int(width // times))`.

    `times = sqrt(height * width / (max_tiles * grid_size**2))`; the reference shrinks only when `times > 1.1`.
    """
    times = math.sqrt(height * width / (max_tiles * grid_size**2))
    if times > 1.1:
        return int(height // times), int(width // times)
    return height, width


def anyres_feature_grid(
    image_size: tuple[int, int],
    grid_pinpoints: list[list[int]],
    tile_size: int,
    grid_size: int,
    max_tiles: int,
) -> tuple[int, int]:
    """`(height, width)` of the token grid a single image's tiles become in the model (tiles, unpad, cap)."""
    rows, cols = anyres_tile_grid(image_size, grid_pinpoints, tile_size)
    height, width = unpadded_feature_grid(image_size, (rows * grid_size, cols * grid_size))
    return capped_feature_grid(height, width, grid_size, max_tiles)


def uniform_grid_indices(height: int, width: int) -> torch.Tensor:
    """Raster indices of the `[::2, ::2]` sub-grid of a `height x width` grid (uniform spatial forgetting)."""
    rows = torch.arange(0, height, 2)
    cols = torch.arange(0, width, 2)
    return (rows[:, None] * width + cols[None, :]).flatten()


def random_grid_indices(
    height: int, width: int, ratio: float = 0.25, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`ceil(height * width * ratio)` random raster indices of a `height x width` grid, ascending.

    Drawn on the CPU from `generator` (or torch's default CPU generator) like the reference's
    `torch.rand(1, N).topk(k, largest=False)` followed by a sort, so a seed fixes the draw on every device.
    """
    num_tokens = height * width
    scores = torch.rand(1, num_tokens, generator=generator)
    return scores.topk(math.ceil(num_tokens * ratio), dim=1, largest=False).indices[0].sort().values


def kept_row_count(kept_indices: torch.Tensor, width: int) -> int:
    """How many rows of a grid `width` wide hold at least one kept token: the newlines the query gets.

    The reference (`add_grid_image_newline`) closes every non-empty run of kept tokens before a row start with a
    newline, then appends one more after the last run, which makes exactly one newline per non-empty row.
    """
    return int(torch.unique(torch.div(kept_indices, width, rounding_mode="floor")).numel())


def anyres_image_token_count(
    num_base_kept: int, tile_kept_indices: torch.Tensor, tile_grid_width: int
) -> int:
    """Tokens a single tiled image puts in the language model: the base crop's kept tokens (no newlines), then the
    tiles' kept tokens with one newline per non-empty row."""
    return num_base_kept + tile_kept_indices.numel() + kept_row_count(tile_kept_indices, tile_grid_width)


def uniform_anyres_image_token_count(height: int, width: int, grid_size: int) -> int:
    """`anyres_image_token_count` under uniform forgetting, in closed form: it depends on the grid sizes only.

    Base `ceil(g/2)**2` (196 for g=27), tiles `ceil(h/2) * ceil(w/2)`, newlines `ceil(h/2)` (the even rows).
    """
    half = -(-grid_size // 2)
    kept_rows, kept_cols = -(-height // 2), -(-width // 2)
    return half * half + kept_rows * kept_cols + kept_rows


# ----------------------------------------------------------------------------------------------------------------------
# MemAug position ids of an image's memory (keys) and decayed tokens (query), spec §4.2 / §4.2a
# ----------------------------------------------------------------------------------------------------------------------
def base_grid_position_ids(grid_size: int, height: int, width: int) -> torch.Tensor:
    """`(grid_size**2,)` ids of the base crop's tokens: the tile grid's own ids, sampled nearest-neighbour.

    The reference gives the base crop no ids of its own: its `g x g` grid reuses the `height x width` tile grid's
    raster ids at rows `linspace(0, height - 1, g).round()` and columns `linspace(0, width - 1, g).round()` (float32,
    round half to even), so a base token and the tile tokens over the same spot share a RoPE position.
    """
    rows = torch.linspace(0, height - 1, grid_size, dtype=torch.float32).round().long()
    cols = torch.linspace(0, width - 1, grid_size, dtype=torch.float32).round().long()
    return (rows[:, None] * width + cols[None, :]).flatten()


def tile_memory_position_ids(height: int, width: int) -> torch.Tensor:
    """`(height * (width + 1),)` ids of the tile grid in the memory: each row's raster ids, then its newline.

    Every newline has the same id, `height * width` (one past the last token), which is also the index of the
    newline when it is appended after the `height * width` flattened tile tokens.
    """
    ids = torch.arange(height * width).view(height, width)
    newlines = torch.full((height, 1), height * width)
    return torch.cat([ids, newlines], dim=1).flatten()


def rows_closed_by_newlines(kept_indices: torch.Tensor, width: int, newline_id: int) -> torch.Tensor:
    """Ascending kept raster indices of a grid `width` wide, with `newline_id` after the last one of every row
    that keeps any (the reference's `add_grid_image_newline`: exactly one newline per non-empty kept row)."""
    rows = torch.div(kept_indices, width, rounding_mode="floor")
    row_ends = torch.ones_like(rows, dtype=torch.bool)
    row_ends[:-1] = rows[1:] != rows[:-1]
    newline_counts = row_ends.long()
    positions = torch.arange(kept_indices.numel()) + torch.cumsum(newline_counts, 0) - newline_counts
    closed = torch.full((kept_indices.numel() + int(row_ends.sum()),), newline_id, dtype=torch.long)
    closed[positions] = kept_indices.long()
    return closed


def multi_image_position_ids(
    image_index: int, num_images: int, grid_size: int, kept_indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(memory_ids, query_ids)` of image `image_index` of a sample with `num_images` images (one crop each).

    Its `P = grid_size**2` tokens have the ids `image_index * P + s` and its newline, in the memory and in the query,
    the id `num_images * P` that every newline of the sample shares; the query keeps `kept_indices`.
    """
    tokens = grid_size * grid_size
    newline = torch.tensor([num_images * tokens])
    memory_ids = torch.cat([torch.arange(tokens) + image_index * tokens, newline])
    query_ids = torch.cat([kept_indices.long() + image_index * tokens, newline])
    return memory_ids, query_ids


def split_kept_indices(
    kept_indices: torch.Tensor, kept_lengths: torch.Tensor, num_images: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The processor's `image_kept_indices` `(sum_kept,)` cut by `image_kept_lengths` `(num_images, 2)` into one
    `(base_run, tile_run)` pair per image (the tile run is empty for an image of a multi-image sample)."""
    kept_lengths = torch.as_tensor(kept_lengths).reshape(-1, 2) if kept_lengths is not None else None
    if kept_lengths is None or kept_lengths.shape[0] != num_images or bool((kept_lengths < 0).any()):
        raise ValueError(
            f"image_kept_lengths must be a (num_images, 2) tensor of run lengths for the {num_images} images, got "
            f"{None if kept_lengths is None else kept_lengths.tolist()}."
        )
    if int(kept_lengths.sum()) != kept_indices.numel():
        raise ValueError(
            f"image_kept_lengths sum to {int(kept_lengths.sum())} but image_kept_indices holds "
            f"{kept_indices.numel()} indices."
        )
    runs = kept_indices.reshape(-1).long().cpu().split(kept_lengths.flatten().tolist())
    return list(zip(runs[0::2], runs[1::2]))
