"""The model's image path (spec §4.2 / §4.2a) on a tiny model, against layouts and position ids worked out by hand.

The tiny vision tower here sees 20x20 crops in 4x4 patches, so every crop is a g x g = 5 x 5 grid of tokens (the
released checkpoints' 27 x 27): uniform forgetting keeps the `[::2, ::2]` sub-grid, rows and columns {0, 2, 4}, 9
tokens (196 for g = 27); random forgetting keeps ceil(25 / 4) = 7 (183). Tiles are 20-pixel crops on grids 1x1 ...
6x6, and a tile grid larger than about 9 tiles' worth of tokens (9 * 25) is shrunk.
"""

import pytest
import torch
from transformers import Qwen2ForCausalLM

from hour_llava.modeling.image_layout import (
    anyres_feature_grid,
    anyres_image_token_count,
    random_grid_indices,
    uniform_anyres_image_token_count,
)
from hour_llava.tiny import tiny_model as build_tiny_model


G = 5
CROP = 20
UNIFORM_5X5 = [0, 2, 4, 10, 12, 14, 20, 22, 24]  # rows and columns {0, 2, 4} of a 5x5 grid, raster order


@pytest.fixture
def model(tokenizer):
    return build_tiny_model(tokenizer, vision_config={"image_size": CROP})


def crops(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, CROP, CROP, generator=torch.Generator().manual_seed(seed))


def text_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


def image_ids(model, count: int) -> list[int]:
    return [model.config.image_token_id] * count


class MemAugCalls:
    """Records every MemAug call `(query, memory, query_position_ids, memory_position_ids)` and what it returned."""

    def __init__(self, model):
        self.calls = []
        memaug = model.model.memory_augmentation
        self.hook = memaug.register_forward_hook(
            lambda module, args, output: self.calls.append((*[a[0] for a in args], output.last_hidden_state[0]))
        )

    def __enter__(self):
        return self.calls

    def __exit__(self, *exc):
        self.hook.remove()


def llm_inputs(model, **inputs) -> torch.Tensor:
    """The `inputs_embeds` the language model receives in one forward pass (no grad)."""
    captured = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(kwargs["inputs_embeds"]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        hook.remove()
    return captured[0]


def crop_tokens(model, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.get_image_features(pixels).pooler_output


# ----------------------------------------------------------------------------------------------------------------------
# One small image: a single 1x1 tile
# ----------------------------------------------------------------------------------------------------------------------
def test_small_image_memory_query_and_position_ids(tokenizer, model):
    """A 10x10 image: every pinpoint reaches its full 100 pixels, the 20x20 one (1x1 tile) wastes least, so two crops
    (base + one tile). Its 5x5 tile grid needs no unpadding (square) and no cap (25 < 9 * 25).

    Tile ids are arange(25), the newline 25; the base grid samples them at linspace(0, 4, 5) = 0..4 both ways, so
    the base ids are arange(25) as well. Memory: base 25, then 5 rows of 5 each closed by 25.
    Query: base [::2, ::2] (9), then tile rows 0, 2, 4, each closed by a newline: 9 + 9 + 3 = 21 tokens.
    """
    before, after = text_ids(tokenizer, "Look: "), text_ids(tokenizer, " what?")
    ids = before + image_ids(model, 21) + after
    pixels = crops(2)
    inputs = {"input_ids": torch.tensor([ids]), "pixel_values": pixels, "image_sizes": torch.tensor([[10, 10]])}
    with MemAugCalls(model) as calls:
        embeds = llm_inputs(model, **inputs)
    [(query, memory, query_ids, memory_ids, output)] = calls

    rows = lambda r: list(range(5 * r, 5 * r + 5)) + [25]  # noqa: E731
    assert memory_ids.tolist() == list(range(25)) + rows(0) + rows(1) + rows(2) + rows(3) + rows(4)
    image_query = UNIFORM_5X5 + [0, 2, 4, 25, 10, 12, 14, 25, 20, 22, 24, 25]
    n0, n1 = len(before), len(after)
    # text before counts from 0; the image shifts past it; text after continues one past the largest image id (25)
    expected = list(range(n0)) + [i + n0 for i in image_query] + [n0 + 26 + j for j in range(n1)]
    assert query_ids.tolist() == expected

    # the tokens themselves: base crop tokens, tile tokens and the newline embedding at those places
    tokens = crop_tokens(model, pixels)
    newline = model.model.image_newline.detach()
    tile_rows = [torch.cat([tokens[1, 5 * r : 5 * r + 5], newline[None]]) for r in range(5)]
    torch.testing.assert_close(memory, torch.cat([tokens[0], *tile_rows]))
    kept_tiles = torch.stack([tile_rows[r][c] for r in (0, 2, 4) for c in (0, 2, 4, 5)])  # column 5: the newline
    image_rows = torch.cat([tokens[0, UNIFORM_5X5], kept_tiles])
    torch.testing.assert_close(query[n0 : n0 + 21], image_rows)
    text = model.get_input_embeddings()(torch.tensor(ids)).detach()
    torch.testing.assert_close(query[:n0], text[:n0])
    torch.testing.assert_close(query[n0 + 21 :], text[n0 + 21 :])
    # the language model gets MemAug's image rows at the placeholders, the plain text elsewhere
    torch.testing.assert_close(embeds[0, n0 : n0 + 21], output[n0 : n0 + 21])
    torch.testing.assert_close(embeds[0, :n0], text[:n0])


# ----------------------------------------------------------------------------------------------------------------------
# One wide image on several tiles: unpadding removes rows
# ----------------------------------------------------------------------------------------------------------------------
WIDE = (24, 60)  # (height, width)
# Pinpoints reaching all 24 * 60 = 1440 pixels need width >= 60 and height >= 24 (3 columns, 2 rows of 20-pixel
# tiles); 40x60 wastes least: 2x3 tiles, 7 crops, a 10x15 tile-feature grid. Unpad: 60/24 = 2.5 > 15/10, so the
# content is int(24 * 15/60) = 6 rows, padding (10 - 6) // 2 = 2 a side: rows 2..7 stay, 6x15. No cap:
# sqrt(90 / 225) < 1.1. Base ids: rows linspace(0, 5, 5) = 0, 1.25, 2.5, 3.75, 5 -> 0, 1, 2, 4, 5 (2.5 rounds to
# even), columns linspace(0, 14, 5) = 0, 3.5, 7, 10.5, 14 -> 0, 4, 7, 10, 14.
WIDE_BASE_IDS = [r * 15 + c for r in (0, 1, 2, 4, 5) for c in (0, 4, 7, 10, 14)]
WIDE_TOKENS = 9 + 3 * 8 + 3  # base 9; tile rows 0, 2, 4 of 6 with 8 of 15 columns each; 3 newlines


def wide_inputs(tokenizer, model, count: int = WIDE_TOKENS) -> dict:
    ids = text_ids(tokenizer, "Wide: ") + image_ids(model, count) + text_ids(tokenizer, " which side?")
    return {"input_ids": torch.tensor([ids]), "pixel_values": crops(7, seed=3), "image_sizes": torch.tensor([WIDE])}


def test_wide_image_tiles_are_laid_out_and_unpadded(tokenizer, model):
    assert anyres_feature_grid(WIDE, model.config.image_grid_pinpoints, CROP, G, 9) == (6, 15)
    inputs = wide_inputs(tokenizer, model)
    with MemAugCalls(model) as calls:
        llm_inputs(model, **inputs)
    [(query, memory, query_ids, memory_ids, _)] = calls
    n0 = len(text_ids(tokenizer, "Wide: "))

    tile_ids = [i for r in range(6) for i in [*range(15 * r, 15 * r + 15), 90]]  # newline id 6 * 15 = 90
    assert memory_ids.tolist() == WIDE_BASE_IDS + tile_ids
    base_query = [WIDE_BASE_IDS[i] for i in UNIFORM_5X5]
    assert base_query == [0, 7, 14, 30, 37, 44, 75, 82, 89]
    tile_query = [i for r in (0, 2, 4) for i in [*range(15 * r, 15 * r + 15, 2), 90]]
    assert query_ids[n0 : n0 + WIDE_TOKENS].tolist() == [i + n0 for i in base_query + tile_query]
    assert query_ids[n0 + WIDE_TOKENS] == n0 + 91  # the text after the image

    # memory row r, column c is tile-feature row 2 + r: tile (row (2 + r) // 5, column c // 5) of the 2x3 tiles,
    # token ((2 + r) % 5) * 5 + c % 5 of that crop (crop 0 is the base)
    tokens = crop_tokens(model, inputs["pixel_values"])
    for r, c in [(0, 0), (0, 14), (2, 7), (3, 5), (5, 14)]:
        row = 2 + r
        expected = tokens[1 + (row // 5) * 3 + c // 5, (row % 5) * 5 + c % 5]
        torch.testing.assert_close(memory[25 + r * 16 + c], expected)
    torch.testing.assert_close(memory[:25], tokens[0])


def test_given_kept_indices_place_one_newline_per_kept_row(tokenizer, model):
    """Kept tile tokens 1, 2 (row 0), 31 (row 2) and 89 (row 5), none in rows 1, 3, 4: three newlines."""
    base_run, tile_run = [0, 3, 6, 12, 18, 21, 24], [1, 2, 31, 89]
    count = len(base_run) + len(tile_run) + 3
    inputs = wide_inputs(tokenizer, model, count) | {
        "image_kept_indices": torch.tensor(base_run + tile_run),
        "image_kept_lengths": torch.tensor([[len(base_run), len(tile_run)]]),
    }
    with MemAugCalls(model) as calls:
        llm_inputs(model, **inputs)
    n0 = len(text_ids(tokenizer, "Wide: "))
    image_query = [WIDE_BASE_IDS[i] for i in base_run] + [1, 2, 90, 31, 90, 89, 90]
    assert calls[0][2][n0 : n0 + count].tolist() == [i + n0 for i in image_query]
    assert anyres_image_token_count(len(base_run), torch.tensor(tile_run), 15) == count


def test_a_large_grid_is_capped_bilinearly(tokenizer, model):
    """A 200x200 image takes the largest grid, 6x6 tiles: a 30x30 tile grid, square so nothing unpadded.
    times = sqrt(900 / 225) = 2 > 1.1, so it shrinks to 15x15; bilinear with align_corners=False at exactly half
    size samples between two feature rows and columns: each token is the mean of a 2x2 block."""
    assert anyres_feature_grid((200, 200), model.config.image_grid_pinpoints, CROP, G, 9) == (15, 15)
    count = uniform_anyres_image_token_count(15, 15, G)
    assert count == 9 + 8 * 8 + 8
    pixels = crops(37, seed=4)
    ids = image_ids(model, count) + text_ids(tokenizer, " big?")
    with MemAugCalls(model) as calls:
        llm_inputs(model, input_ids=torch.tensor([ids]), pixel_values=pixels, image_sizes=torch.tensor([[200, 200]]))
    [(_, memory, _, memory_ids, _)] = calls
    assert memory_ids[25:41].tolist() == list(range(15)) + [225]  # the first row of 15, then the newline id 15 * 15
    assert memory.shape[0] == 25 + 15 * 16

    tokens = crop_tokens(model, pixels)

    def feature(row: int, col: int) -> torch.Tensor:  # the 30x30 grid of the 6x6 tiles
        return tokens[1 + (row // 5) * 6 + col // 5, (row % 5) * 5 + col % 5]

    for r, c in [(0, 0), (3, 11), (14, 14), (7, 2)]:
        block = torch.stack([feature(2 * r + dr, 2 * c + dc) for dr in (0, 1) for dc in (0, 1)]).mean(0)
        torch.testing.assert_close(memory[25 + r * 16 + c], block)


# ----------------------------------------------------------------------------------------------------------------------
# Two images in one sample
# ----------------------------------------------------------------------------------------------------------------------
def test_two_images_memory_query_and_position_ids(tokenizer, model):
    """Two images (one padded crop each, P = 25 tokens): memory `[img0 25 ; newline ; img1 25 ; newline]` with ids
    `i * 25 + s` and every newline 2 * 25 = 50. Each image's query: its 9 uniform tokens and a newline (50). The text
    segments and images interleave, each next one starting one past the largest id so far."""
    t0, t1, t2 = (text_ids(tokenizer, t) for t in ("A ", " and B ", " same?"))
    ids = t0 + image_ids(model, 10) + t1 + image_ids(model, 10) + t2
    pixels = crops(2, seed=5)
    inputs = {
        "input_ids": torch.tensor([ids]),
        "pixel_values": pixels,
        "image_sizes": torch.tensor([[30, 40], [50, 20]]),
        "batch_num_images": torch.tensor([2]),
    }
    with MemAugCalls(model) as calls:
        embeds = llm_inputs(model, **inputs)
    [(query, memory, query_ids, memory_ids, output)] = calls
    assert memory_ids.tolist() == list(range(25)) + [50] + list(range(25, 50)) + [50]

    n0, n1, n2 = len(t0), len(t1), len(t2)
    first = [i + n0 for i in UNIFORM_5X5 + [50]]  # image 0 shifted past the first text
    t1_start = n0 + 51  # one past the largest id, the newline's n0 + 50
    second_offset = t1_start + n1
    second = [i + 25 + second_offset for i in UNIFORM_5X5] + [50 + second_offset]
    t2_start = second_offset + 51
    expected = [*range(n0), *first, *range(t1_start, t1_start + n1), *second, *range(t2_start, t2_start + n2)]
    assert query_ids.tolist() == expected

    tokens = crop_tokens(model, pixels)
    newline = model.model.image_newline.detach()[None]
    torch.testing.assert_close(memory, torch.cat([tokens[0], newline, tokens[1], newline]))
    # each image's refined rows land on its own placeholders
    second_start = n0 + 10 + n1
    torch.testing.assert_close(embeds[0, n0 : n0 + 10], output[n0 : n0 + 10])
    torch.testing.assert_close(embeds[0, second_start : second_start + 10], output[second_start : second_start + 10])
    torch.testing.assert_close(query[second_start : second_start + 9], tokens[1, UNIFORM_5X5])


def two_square_images(ids: list[int]) -> dict:
    """One sample of two 20x20 images (one crop each) with the token ids `ids`."""
    return {
        "input_ids": torch.tensor([ids]),
        "pixel_values": crops(2),
        "image_sizes": torch.tensor([[20, 20], [20, 20]]),
        "batch_num_images": torch.tensor([2]),
    }


def test_two_adjacent_images_are_split_by_their_token_counts(tokenizer, model):
    """`<image><image>` expands to one run of 20 placeholders; the first 10 are image 0's, an empty text between."""
    ids = text_ids(tokenizer, "A ") + image_ids(model, 20) + text_ids(tokenizer, "?")
    inputs = two_square_images(ids)
    with MemAugCalls(model) as calls:
        llm_inputs(model, **inputs)
    n0 = 2
    query_ids = calls[0][2].tolist()
    assert query_ids[n0 + 9] == n0 + 50 and query_ids[n0 + 10] == n0 + 51 + 25  # second image right after the first


# ----------------------------------------------------------------------------------------------------------------------
# Token counts: what the processor expands `<image>` to is what the model produces
# ----------------------------------------------------------------------------------------------------------------------
SIZES = [(10, 10), (24, 60), (60, 24), (47, 133), (200, 200), (7, 300), (150, 41)]


@pytest.mark.parametrize("size", SIZES)
def test_uniform_token_count_is_the_image_layout_count(tokenizer, model, size):
    height, width = anyres_feature_grid(size, model.config.image_grid_pinpoints, CROP, G, 9)
    count = uniform_anyres_image_token_count(height, width, G)
    num_crops = anyres_crop_count(model, size)
    ids = text_ids(tokenizer, "Q: ") + image_ids(model, count)
    inputs = {"input_ids": torch.tensor([ids]), "pixel_values": crops(num_crops), "image_sizes": torch.tensor([size])}
    with MemAugCalls(model) as calls:
        llm_inputs(model, **inputs)
    assert len(calls[0][0]) == 3 + count
    with pytest.raises(ValueError, match=f"sample 0 has {count + 1} image placeholder tokens, .* yield {count} image"):
        llm_inputs(model, **(inputs | {"input_ids": torch.tensor([ids + [model.config.image_token_id]])}))


def anyres_crop_count(model, size) -> int:
    from hour_llava.modeling.image_layout import anyres_tile_grid

    rows, cols = anyres_tile_grid(size, model.config.image_grid_pinpoints, CROP)
    return 1 + rows * cols


@pytest.mark.parametrize("size", SIZES)
def test_random_token_count_in_training_is_the_image_layout_count(tokenizer, model, size):
    """Training with random forgetting: the processor's draw (given here as it draws it) fixes the count."""
    generator = torch.Generator().manual_seed(sum(size))
    height, width = anyres_feature_grid(size, model.config.image_grid_pinpoints, CROP, G, 9)
    base_run = random_grid_indices(G, G, generator=generator)
    tile_run = random_grid_indices(height, width, generator=generator)
    assert len(base_run) == 7  # ceil(25 / 4), as 183 = ceil(729 / 4)
    count = anyres_image_token_count(len(base_run), tile_run, width)
    ids = text_ids(tokenizer, "Q: ") + image_ids(model, count) + text_ids(tokenizer, " A")
    inputs = {
        "input_ids": torch.tensor([ids]),
        "pixel_values": crops(anyres_crop_count(model, size)),
        "image_sizes": torch.tensor([size]),
        "image_kept_indices": torch.cat([base_run, tile_run]),
        "image_kept_lengths": torch.tensor([[len(base_run), len(tile_run)]]),
    }
    model.train()
    with MemAugCalls(model) as calls:
        model(**inputs)
    assert len(calls[0][2]) == 3 + count + 2


def test_training_with_random_forgetting_needs_the_processors_draw(tokenizer, model):
    inputs = wide_inputs(tokenizer, model)
    model.train()
    with pytest.raises(ValueError, match="image_kept_indices .* image_forgetting='random'"):
        model(**inputs)
    model.config.spatial_sampling_type = "uniform"
    model(**inputs)  # uniform forgetting in training needs no draw


def test_multi_image_random_keeps_the_given_tokens(tokenizer, model):
    kept = [[1, 5, 9, 13, 17, 21, 24], [0, 3, 4, 10, 11, 12, 20]]
    ids = image_ids(model, 8) + text_ids(tokenizer, " vs ") + image_ids(model, 8)
    inputs = two_square_images(ids) | {
        "image_kept_indices": torch.tensor(kept[0] + kept[1]),
        "image_kept_lengths": torch.tensor([[7, 0], [7, 0]]),
    }
    with MemAugCalls(model) as calls:
        llm_inputs(model, **inputs)
    query_ids = calls[0][2].tolist()
    assert query_ids[:8] == kept[0] + [50]  # empty first text: the image starts at 0
    offset = 51 + 4  # one past the newline, then the 4 tokens of " vs "
    assert query_ids[12:] == [25 + i + offset for i in kept[1]] + [50 + offset]


# ----------------------------------------------------------------------------------------------------------------------
# Bad inputs, named
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_num_crops": torch.tensor([5])}, r"\[5\] crops .* does not split the 7 crops"),
        ({"image_num_crops": torch.tensor([5, 2])}, r"image_num_crops=\[5, 2\] gives 2 images, image_sizes 1"),
        ({"pixel_values": crops(5)}, r"\[7\] crops .* does not split the 5 crops of pixel_values"),
        ({"pixel_values": crops(5), "image_num_crops": torch.tensor([5])},
         r"size \(24, 60\) \(height, width\) is tiled 2x3 .* 1 \+ 6 crops, but it has 5"),
        ({"batch_num_images": torch.tensor([2])}, r"batch_num_images=\[2\] .* sum to the 1 images"),
        ({"image_sizes": None}, "pixel_values need image_sizes"),
        ({"image_kept_indices": torch.tensor([1, 3]), "image_kept_lengths": torch.tensor([[2, 0]])},
         r"image_kept_indices for a 6x15 tile grid must be non-empty, strictly ascending .* got \[\]"),
        ({"image_kept_indices": torch.tensor([3, 2, 90]), "image_kept_lengths": torch.tensor([[2, 1]])},
         r"for a base crop .* got \[3, 2\]"),
        ({"image_kept_indices": torch.tensor([3, 90]), "image_kept_lengths": torch.tensor([[1, 1]])},
         r"6x15 tile grid .* \(0..89\), got \[90\]"),
        ({"image_kept_indices": torch.tensor([3, 4]), "image_kept_lengths": torch.tensor([[1, 2]])},
         "image_kept_lengths sum to 3 but image_kept_indices holds 2"),
    ],
)
def test_bad_image_inputs_are_named(tokenizer, model, changes, message):
    inputs = wide_inputs(tokenizer, model) | changes
    with pytest.raises(ValueError, match=message):
        llm_inputs(model, **inputs)


def test_an_image_of_a_multi_image_sample_must_be_one_crop(tokenizer, model):
    ids = image_ids(model, 10) + image_ids(model, 10)
    inputs = {
        "input_ids": torch.tensor([ids]),
        "pixel_values": crops(3),
        "image_sizes": torch.tensor([[20, 40], [20, 20]]),
        "image_num_crops": torch.tensor([2, 1]),
        "batch_num_images": torch.tensor([2]),
    }
    with pytest.raises(ValueError, match=r"Images 0..1 share a sample, .* image_num_crops gives them \[2, 1\]"):
        llm_inputs(model, **inputs)


def test_aligned_memory_ids_take_each_images_query_shift(tokenizer, model):
    """`memory_position_mode="aligned"`: a key's id is the id its token has in the query (per image shift)."""
    model.config.memory_position_mode = "aligned"
    t0, t1 = text_ids(tokenizer, "A "), text_ids(tokenizer, " and B ")
    ids = t0 + image_ids(model, 10) + t1 + image_ids(model, 10)
    inputs = two_square_images(ids)
    with MemAugCalls(model) as calls:
        llm_inputs(model, **inputs)
    _, _, query_ids, memory_ids, _ = calls[0]
    first, second = len(t0), len(t0) + 51 + len(t1)  # the two images' shifts
    assert memory_ids.tolist() == [i + first for i in [*range(25), 50]] + [i + second for i in [*range(25, 50), 50]]
    assert query_ids[len(t0) : len(t0) + 10].tolist() == [memory_ids[i].item() for i in UNIFORM_5X5 + [25]]


def test_a_sample_with_a_video_and_an_image_is_refused(tokenizer, model):
    config = model.config
    ids = image_ids(model, 21) + [config.video_token_id] * config.num_video_tokens(4)
    inputs = {
        "input_ids": torch.tensor([ids]),
        "pixel_values": crops(2),
        "image_sizes": torch.tensor([[10, 10]]),
        "pixel_values_videos": torch.randn(4, 3, CROP, CROP),
    }
    with pytest.raises(ValueError, match=r"Samples \[0\] hold both video and image placeholder tokens"):
        llm_inputs(model, **inputs)


def test_image_placeholders_without_images_are_refused(tokenizer, model):
    inputs = wide_inputs(tokenizer, model)
    batch = {
        "input_ids": torch.cat([inputs["input_ids"], inputs["input_ids"]]),
        "pixel_values": inputs["pixel_values"],
        "image_sizes": inputs["image_sizes"],
        "batch_num_images": torch.tensor([1, 0]),
    }
    with pytest.raises(ValueError, match=r"Sample 1 has 0 images \(batch_num_images\) but image placeholder"):
        llm_inputs(model, **batch)


# ----------------------------------------------------------------------------------------------------------------------
# Training: gradients, mixed batches, text-only samples
# ----------------------------------------------------------------------------------------------------------------------
def with_labels(inputs: dict) -> dict:
    labels = inputs["input_ids"].clone()
    labels[inputs["input_ids"] >= inputs["input_ids"].new_tensor(256)] = -100  # no loss on placeholders
    if "attention_mask" in inputs:
        labels[inputs["attention_mask"] == 0] = -100
    return inputs | {"labels": labels}


def test_gradients_reach_memaug_projector_newline_and_tower_from_an_image_batch(tokenizer, model):
    model.config.spatial_sampling_type = "uniform"
    model.train()
    model(**with_labels(wide_inputs(tokenizer, model))).loss.backward()
    parts = {
        "memaug": model.model.memory_augmentation,
        "projector": model.model.multi_modal_projector,
        "vision": model.model.vision_tower.encoder,
    }
    for name, module in parts.items():
        grads = [p.grad for p in module.parameters()]
        assert grads and all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert model.model.image_newline.grad.abs().sum() > 0


def mixed_batch(tokenizer, model) -> dict:
    """A video sample, a single wide image, two images, and a text-only sample, right-padded."""
    config = model.config
    video = text_ids(tokenizer, "V: ") + [config.video_token_id] * config.num_video_tokens(6) + text_ids(tokenizer, "?")
    single = text_ids(tokenizer, "I: ") + image_ids(model, WIDE_TOKENS) + text_ids(tokenizer, "?")
    double = image_ids(model, 10) + text_ids(tokenizer, " or ") + image_ids(model, 10) + text_ids(tokenizer, "?")
    text = text_ids(tokenizer, "Only words, nothing to see.")
    samples = [video, single, double, text]
    length = max(map(len, samples))
    input_ids = torch.full((4, length), tokenizer.pad_token_id)
    attention_mask = torch.zeros(4, length, dtype=torch.long)
    for row, ids in enumerate(samples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values_videos": torch.randn(6, 3, CROP, CROP),
        "video_num_frames": torch.tensor([6]),
        "pixel_values": torch.cat([crops(7, seed=3), crops(2, seed=6)]),
        "image_sizes": torch.tensor([WIDE, [30, 40], [50, 20]]),
        "image_num_crops": torch.tensor([7, 1, 1]),
        "batch_num_images": torch.tensor([0, 1, 2, 0]),
    }


@pytest.mark.parametrize("media", ["all", "images and text", "text only"])
def test_every_trainable_parameter_gets_a_gradient_in_every_mix(tokenizer, model, media):
    """DDP and ZeRO need every rank to use every parameter in every step, whatever mix the batch holds."""
    model.config.spatial_sampling_type = "uniform"
    batch = mixed_batch(tokenizer, model)
    if media != "all":  # drop the video sample
        batch = {k: v[1:] if k in ("input_ids", "attention_mask", "batch_num_images") else v for k, v in batch.items()}
        del batch["pixel_values_videos"], batch["video_num_frames"]
    if media == "text only":
        batch = {"input_ids": batch["input_ids"][-1:], "attention_mask": batch["attention_mask"][-1:]}
    model.train()
    model(**with_labels(batch)).loss.backward()
    assert [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_mixed_batch_rows_match_each_sample_alone(tokenizer, model):
    """Batching changes nothing: each sample's logits equal its own forward pass's (padding aside)."""
    batch = mixed_batch(tokenizer, model)
    with torch.no_grad():
        together = model(**batch).logits
        lengths = batch["attention_mask"].sum(-1).tolist()
        alone = [
            model(input_ids=batch["input_ids"][1:2, : lengths[1]], pixel_values=batch["pixel_values"][:7],
                  image_sizes=batch["image_sizes"][:1]).logits,
            model(input_ids=batch["input_ids"][2:3, : lengths[2]], pixel_values=batch["pixel_values"][7:],
                  image_sizes=batch["image_sizes"][1:], batch_num_images=torch.tensor([2])).logits,
            model(input_ids=batch["input_ids"][3:4, : lengths[3]]).logits,
        ]
    for row, logits in zip((1, 2, 3), alone):
        torch.testing.assert_close(together[row, : lengths[row]], logits[0], atol=1e-5, rtol=1e-5)


def plain_language_model(model) -> Qwen2ForCausalLM:
    lm = Qwen2ForCausalLM(model.config.text_config)
    lm.model.load_state_dict(model.model.language_model.state_dict())
    lm.lm_head.load_state_dict(model.lm_head.state_dict())
    return lm.eval()


@pytest.mark.parametrize("training", [False, True])
def test_text_only_logits_equal_the_plain_language_models(tokenizer, model, training):
    """Next to images (in the same batch, or with the idle-module dummy pass in training) a text-only sample's
    logits are exactly the bare Qwen2 model's."""
    model.config.spatial_sampling_type = "uniform"
    batch = mixed_batch(tokenizer, model)
    text_row = batch["input_ids"][3:4]
    lm = plain_language_model(model)
    model.train(training)
    with torch.set_grad_enabled(training):  # training with gradients: the idle-module dummy pass runs
        expected = lm(input_ids=text_row, attention_mask=batch["attention_mask"][3:4]).logits.detach()
        in_batch = model(**batch).logits[3:4].detach()
        alone = model(input_ids=text_row, attention_mask=batch["attention_mask"][3:4]).logits.detach()
    assert torch.equal(alone, expected)
    length = int(batch["attention_mask"][3].sum())
    torch.testing.assert_close(in_batch[:, :length], expected[:, :length], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Generation: images reach the first step only
# ----------------------------------------------------------------------------------------------------------------------
def test_generation_reads_the_images_at_prefill_only(tokenizer, model):
    inputs = wide_inputs(tokenizer, model)
    calls = []
    original = model.model.insert_image_tokens
    model.model.insert_image_tokens = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    try:
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    finally:
        del model.model.insert_image_tokens
    assert len(calls) == 1 and output.shape[1] == inputs["input_ids"].shape[1] + 4
    # the cached decode steps continue what a full forward pass predicts
    with torch.no_grad():
        first = model(**inputs).logits[0, -1].argmax()
    assert output[0, inputs["input_ids"].shape[1]] == first


def test_prepare_inputs_for_generation_passes_image_inputs_at_prefill_only(tokenizer, model):
    inputs = wide_inputs(tokenizer, model) | {
        "image_num_crops": torch.tensor([7]),
        "batch_num_images": torch.tensor([1]),
        "image_kept_indices": torch.arange(3),
        "image_kept_lengths": torch.tensor([[2, 1]]),
    }
    keys = ("pixel_values", "image_sizes", "image_num_crops", "batch_num_images", "image_kept_indices")
    first = model.prepare_inputs_for_generation(**inputs, is_first_iteration=True, use_cache=True)
    assert all(first.get(key) is not None for key in keys)
    later = model.prepare_inputs_for_generation(**inputs, is_first_iteration=False, use_cache=True)
    assert [key for key in (*keys, "image_kept_lengths") if later.get(key) is not None] == []


# ----------------------------------------------------------------------------------------------------------------------
# Logits against a line-by-line transcription of the reference's image branch (spec §4.2; ARCH L546-598, L653-747)
# ----------------------------------------------------------------------------------------------------------------------
def reference_sampling(features, ids, random: bool):
    """`q_vision_sampling`: features (B, H, W, C), ids (B, H, W); random draws `torch.rand(B, H*W)` (global RNG)."""
    batch, height, width, channels = features.shape
    if not random:
        return features[:, ::2, ::2].reshape(batch, -1, channels), ids[:, ::2, ::2].reshape(batch, -1)
    scores = torch.rand(batch, height * width)
    kept = scores.topk(-(-height * width // 4), dim=1, largest=False).indices.sort(dim=1).values
    flat = features.reshape(batch, height * width, channels)
    return flat.gather(1, kept[..., None].expand(-1, -1, channels)), ids.reshape(batch, -1).gather(1, kept)


def reference_grid_newlines(features, ids, row_starts, newline_id, newline):
    """`add_grid_image_newline`, as written: a newline before each row start that closes a non-empty run, one more
    at the end."""
    feature_parts, id_parts, start = [], [], 0
    for position in row_starts:
        found = (ids >= position).nonzero(as_tuple=True)[0]
        if len(found) == 0:
            continue
        insert = found[0].item()
        if ids[start:insert].shape[0] == 0:
            continue
        feature_parts += [features[start:insert], newline[None]]
        id_parts += [ids[start:insert], torch.tensor([newline_id])]
        start = insert
    return (
        torch.cat(feature_parts + [features[start:], newline[None]]),
        torch.cat(id_parts + [ids[start:], torch.tensor([newline_id])]),
    )


def reference_unpad(tensor, original_size):
    """`unpad_image` on (C, H, W) with the PIL size (width, height)."""
    original_width, original_height = original_size
    current_height, current_width = tensor.shape[1:]
    if original_width / original_height > current_width / current_height:
        new_height = int(original_height * (current_width / original_width))
        padding = (current_height - new_height) // 2
        return tensor[:, padding : current_height - padding, :]
    new_width = int(original_width * (current_height / original_height))
    padding = (current_width - new_width) // 2
    return tensor[:, :, padding : current_width - padding]


def reference_single_image(model, feature, size_hw, random):
    """ARCH's anyres branch for one image: (1 + n, P, D) projected crops -> (q, q_ids, kv, kv_ids)."""
    from transformers.image_processing_utils import select_best_resolution

    g, newline = G, model.model.image_newline.detach()
    base = feature[0].view(g, g, -1)
    best_height, best_width = select_best_resolution(size_hw, model.config.image_grid_pinpoints)
    tiles = feature[1:].view(best_height // CROP, best_width // CROP, g, g, -1)
    tiles = tiles.permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)
    tiles = reference_unpad(tiles, (size_hw[1], size_hw[0]))
    channels, height, width = tiles.shape
    times = (height * width / (9 * g**2)) ** 0.5
    if times > 1.1:
        shrunk = [int(height // times), int(width // times)]
        tiles = torch.nn.functional.interpolate(tiles[None], shrunk, mode="bilinear")[0]
    unpad = tiles.permute(1, 2, 0)
    uh, uw = unpad.shape[:2]
    unpad_ids = torch.arange(uh * uw).reshape(uh, uw)
    rows = torch.linspace(0, uh - 1, steps=g).round().long()
    cols = torch.linspace(0, uw - 1, steps=g).round().long()
    base_ids = unpad_ids[rows, :][:, cols]
    q_base, q_base_ids = reference_sampling(base[None], base_ids[None], random)
    q_unpad, q_unpad_ids = reference_sampling(unpad[None], unpad_ids[None], random)
    row_starts, newline_id = unpad_ids[1:, 0], unpad_ids.max() + 1
    kv_unpad_ids = torch.cat([unpad_ids, torch.full((uh, 1), int(newline_id))], dim=1)
    kv_unpad = torch.cat([unpad, newline[None, None].expand(uh, 1, -1)], dim=1)
    q_unpad, q_unpad_ids = reference_grid_newlines(q_unpad[0], q_unpad_ids[0], row_starts, int(newline_id), newline)
    kv = torch.cat([base.flatten(0, 1), kv_unpad.flatten(0, 1)])
    kv_ids = torch.cat([base_ids.reshape(-1), kv_unpad_ids.reshape(-1)])
    return [torch.cat([q_base[0], q_unpad])], [torch.cat([q_base_ids[0], q_unpad_ids])], kv, kv_ids


def reference_multi_image(model, feature, random):
    """ARCH's multi-image branch: (N, P, D) -> per-image (q, q_ids), and the shared (kv, kv_ids)."""
    num_images, newline = feature.shape[0], model.model.image_newline.detach()
    kv = feature.reshape(num_images, G, G, -1)
    kv_ids = torch.arange(num_images * G * G).reshape(num_images, G, G)
    q, q_ids = reference_sampling(kv, kv_ids, random)
    newline_id = num_images * G * G
    q = torch.cat([q, newline[None, None].expand(num_images, 1, -1)], dim=1)
    q_ids = torch.cat([q_ids, torch.full((num_images, 1), newline_id)], dim=1)
    kv = torch.cat([kv.flatten(1, 2), newline[None, None].expand(num_images, 1, -1)], dim=1).flatten(0, 1)
    kv_ids = torch.cat([kv_ids.flatten(1, 2), torch.full((num_images, 1), newline_id)], dim=1).flatten(0, 1)
    return list(q), list(q_ids), kv, kv_ids


def reference_logits(model, input_ids, q, q_ids, kv, kv_ids):
    """The query loop (text segments and images, ids past the running maximum), MemAug, the LLM."""
    image_token_id = model.config.image_token_id
    ids = torch.tensor(input_ids)
    embeds = model.get_input_embeddings()(ids).detach()
    positions = (ids == image_token_id).nonzero().flatten().tolist()
    counts = [len(x) for x in q]
    starts = [positions[sum(counts[:i])] for i in range(len(q))]
    ends = [s + c for s, c in zip(starts, counts)]
    segments = [embeds[b:e] for b, e in zip([0, *ends], [*starts, len(ids)])]  # text before, between and after
    query, query_ids, rows, max_id = [], [], [], -1
    for i, segment in enumerate(segments):
        query.append(segment)
        query_ids.append(torch.arange(segment.shape[0]) + max_id + 1)
        max_id = int(torch.cat(query_ids).max()) if sum(len(x) for x in query_ids) else max_id
        if i < len(q):
            shifted = q_ids[i] + max_id + 1
            start = sum(x.shape[0] for x in query)
            rows.append((start, start + len(shifted)))
            query.append(q[i])
            query_ids.append(shifted)
            max_id = int(torch.cat(query_ids).max())
    with torch.no_grad():
        out = model.model.memory_augmentation(
            torch.cat(query)[None], kv[None], torch.cat(query_ids)[None], kv_ids[None]
        ).last_hidden_state[0]
        for (row_start, row_end), image_start, image_end in zip(rows, starts, ends):
            embeds[image_start:image_end] = out[row_start:row_end]
        hidden = model.model.language_model(inputs_embeds=embeds[None]).last_hidden_state
        return model.lm_head(hidden)[0]


@pytest.mark.parametrize("random", [False, True])
@pytest.mark.parametrize("size", [(24, 60), (150, 41), (200, 200)])
def test_single_image_logits_follow_the_reference_code(tokenizer, model, size, random):
    pixels = crops(anyres_crop_count(model, size), seed=7)
    features = crop_tokens(model, pixels)
    torch.manual_seed(11)  # the reference draws from the global RNG: base first, then the tiles
    q, q_ids, kv, kv_ids = reference_single_image(model, features, size, random)
    before, after = text_ids(tokenizer, "Describe "), text_ids(tokenizer, " please.")
    input_ids = before + image_ids(model, len(q[0])) + after
    expected = reference_logits(model, input_ids, q, q_ids, kv, kv_ids)
    inputs = {"input_ids": torch.tensor([input_ids]), "pixel_values": pixels, "image_sizes": torch.tensor([size])}
    if random:  # the processor's draw: the same two `torch.rand(1, N)` draws from the same seed
        generator = torch.Generator().manual_seed(11)
        height, width = anyres_feature_grid(size, model.config.image_grid_pinpoints, CROP, G, 9)
        runs = [random_grid_indices(G, G, generator=generator), random_grid_indices(height, width, generator=generator)]
        inputs |= {"image_kept_indices": torch.cat(runs), "image_kept_lengths": torch.tensor([[len(r) for r in runs]])}
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("random", [False, True])
def test_multi_image_logits_follow_the_reference_code(tokenizer, model, random):
    pixels = crops(3, seed=8)
    features = crop_tokens(model, pixels)
    torch.manual_seed(12)  # the reference draws `torch.rand(N, P)` at once
    q, q_ids, kv, kv_ids = reference_multi_image(model, features, random)
    count = len(q[0])
    input_ids = (
        text_ids(tokenizer, "First ") + image_ids(model, count) + text_ids(tokenizer, ", then ")
        + image_ids(model, count) + image_ids(model, count) + text_ids(tokenizer, ". Same?")
    )
    expected = reference_logits(model, input_ids, q, q_ids, kv, kv_ids)
    inputs = {
        "input_ids": torch.tensor([input_ids]),
        "pixel_values": pixels,
        "image_sizes": torch.tensor([[30, 40], [50, 20], [20, 20]]),
        "batch_num_images": torch.tensor([3]),
    }
    if random:  # one `torch.rand(1, P)` per image from the same seed is the same stream as `torch.rand(3, P)`
        generator = torch.Generator().manual_seed(12)
        runs = [random_grid_indices(G, G, generator=generator) for _ in range(3)]
        lengths = torch.tensor([[len(run), 0] for run in runs])
        inputs |= {"image_kept_indices": torch.cat(runs), "image_kept_lengths": lengths}
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_num_return_sequences_repeats_each_samples_images(tokenizer, model):
    """Two samples (a tiled image with a random draw, then two images) generating two sequences each: every copy
    of a sample answers as that sample does alone."""
    model.config.spatial_sampling_type = "uniform"
    single = wide_inputs(tokenizer, model, count=7 + 4 + 3) | {
        "image_kept_indices": torch.tensor([0, 3, 6, 12, 18, 21, 24, 1, 2, 31, 89]),
        "image_kept_lengths": torch.tensor([[7, 4]]),
    }
    double_ids = image_ids(model, 10) + text_ids(tokenizer, " or ") + image_ids(model, 10)
    length = max(single["input_ids"].shape[1], len(double_ids))
    input_ids = torch.full((2, length), tokenizer.pad_token_id)
    attention_mask = torch.zeros(2, length, dtype=torch.long)
    for row, ids in enumerate([single["input_ids"][0].tolist(), double_ids]):  # left-padded for generation
        input_ids[row, length - len(ids) :] = torch.tensor(ids)
        attention_mask[row, length - len(ids) :] = 1
    double_kept = torch.tensor([0, 2, 4, 10, 12, 14, 20, 22, 24] * 2)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": torch.cat([single["pixel_values"], crops(2, seed=9)]),
        "image_sizes": torch.tensor([WIDE, [30, 40], [50, 20]]),
        "image_num_crops": torch.tensor([7, 1, 1]),
        "batch_num_images": torch.tensor([1, 2]),
        "image_kept_indices": torch.cat([single["image_kept_indices"], double_kept]),
        "image_kept_lengths": torch.tensor([[7, 4], [9, 0], [9, 0]]),
    }
    settings = {"max_new_tokens": 3, "do_sample": False, "num_beams": 2, "num_return_sequences": 2}
    with torch.no_grad():
        together = model.generate(**batch, **settings)
        alone = model.generate(**single, **settings)
    assert together.shape[0] == 4
    assert torch.equal(together[:2, length:], alone[:, single["input_ids"].shape[1] :])
