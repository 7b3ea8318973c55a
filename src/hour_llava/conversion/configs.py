# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Config mapping: the authors' config.json, llava-hf's LLaVA-OneVision, SigLIP and Qwen2 -> `HourLlavaConfig`,
including how single images are tiled (the source's `image_grid_pinpoints` and `image_aspect_ratio`), which the
processor's image processor then follows."""

import logging
import re
from dataclasses import dataclass

from ..modeling import HourLlavaConfig
from ..modeling.configuration_hour_llava import SIGLIP_SO400M_VIDEO_TOWER
from .sources import ConversionError


logger = logging.getLogger(__name__)

AUTHORS = "hour_llava_authors"
LLAVA_ONEVISION = "llava_onevision"
SOURCE_FORMATS = (AUTHORS, LLAVA_ONEVISION)

# Qwen2 fields carried over from a source text config; generic fields (architectures, dtype, ids) are not.
QWEN2_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "tie_word_embeddings",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
    "attention_dropout",
    "bos_token_id",
    "eos_token_id",
)
SIGLIP_VISION_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_channels",
    "image_size",
    "patch_size",
    "hidden_act",
    "layer_norm_eps",
    "attention_dropout",
)

# What the authors' code supports (spec section 8); anything else was never trained and is refused.
AUTHORS_REQUIRED_SETTINGS = {
    "mm_projector_type": ("mlp2x_gelu",),
    "mm_resampler_type": ("memaug",),
    "mm_spatial_pool_mode": ("bilinear", None),
    "mm_newline_position": ("grid", None),
}


# The tile grids of every released checkpoint: 1x1 ... 6x6 tiles of the crop size, a single image's tile grid capped
# at 9 tiles' worth of tokens (`anyres_max_9`).
RELEASED_TILE_GRID = "(1x1),...,(6x6)"
RELEASED_MAX_TILES = 9
ANYRES_MAX = re.compile(r"anyres_max_(\d+)")
GRID_RANGE = re.compile(r"\((\d+)x(\d+)\),\.\.\.,\((\d+)x(\d+)\)")


@dataclass(frozen=True)
class ImageSettings:
    """How a checkpoint's single images are tiled: candidate resolutions `[height, width]` (transformers' order) and
    the tile cap `N` of `anyres_max_N`."""

    grid_pinpoints: list[list[int]]
    max_tiles: int = RELEASED_MAX_TILES

    def config_fields(self) -> dict:
        """The `HourLlavaConfig` fields that hold these settings."""
        return {"image_grid_pinpoints": self.grid_pinpoints, "vision_aspect_ratio": f"anyres_max_{self.max_tiles}"}


def expand_tile_grid(grid: str, crop_size: int, source: str) -> list[list[int]]:
    """`"(1x1),...,(6x6)"` -> `[[i * S, j * S] for i in 1..6 for j in 1..6]` (the authors' `train.py`), in their
    (width, height) order."""
    match = GRID_RANGE.fullmatch(grid.replace(" ", ""))
    if match is None:
        raise ConversionError(
            f"{source}/config.json has image_grid_pinpoints={grid!r}; expected a list of [width, height] pairs or a "
            f"tile range such as {RELEASED_TILE_GRID!r}."
        )
    first_i, first_j, last_i, last_j = (int(value) for value in match.groups())
    return [
        [i * crop_size, j * crop_size] for i in range(first_i, last_i + 1) for j in range(first_j, last_j + 1)
    ]


def grid_pinpoints_from_source(value, crop_size: int, source: str, width_first: bool) -> list[list[int]]:
    """A source's `image_grid_pinpoints` as `[height, width]` pairs, each a whole grid of `crop_size` tiles.

    The authors' pairs (list or tile-range string) are (width, height), as PIL sizes are, and are swapped; llava-hf's
    are already transformers' (height, width) (`width_first=False`).
    """
    if isinstance(value, str):
        value = expand_tile_grid(value, crop_size, source)
    if not isinstance(value, (list, tuple)) or not value:
        raise ConversionError(
            f"{source}/config.json has image_grid_pinpoints={value!r:.80}; expected a non-empty list of pairs."
        )
    pinpoints = []
    for pair in value:
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(side, int) and side > 0 and side % crop_size == 0 for side in pair)
        ):
            raise ConversionError(
                f"{source}/config.json has image_grid_pinpoints entry {pair!r}: every entry must be a pair of "
                f"positive multiples of the crop size {crop_size} (whole grids of tiles)."
            )
        pinpoints.append([pair[1], pair[0]] if width_first else [pair[0], pair[1]])
    return pinpoints


def max_tiles_from_aspect_ratio(value, source: str, field: str = "image_aspect_ratio") -> int:
    """`N` of `anyres_max_N` (the model shrinks a single image's tile grid past `N` tiles' worth of tokens). `pad`
    (one padded crop per single image) and the other settings (which the authors' code treats as a plain resize)
    were never trained by the released checkpoints and are refused by name; a missing setting means the released
    `anyres_max_9`."""
    if value is None:
        logger.info("%s has no %s; using the released checkpoints' anyres_max_9.", source, field)
        return RELEASED_MAX_TILES
    match = ANYRES_MAX.fullmatch(str(value))
    if match is None:
        detail = (
            "'pad' turns a single image into one padded crop, which this library's image processor and model do not "
            "do (they tile it)"
            if value == "pad"
            else "the authors' code acts only on anyres_max_N (tiles) and pad"
        )
        raise ConversionError(
            f"{source}/config.json has {field}={value!r}: {detail}. Hour-LLaVA supports anyres_max_N "
            "(the released checkpoints use anyres_max_9)."
        )
    max_tiles = int(match.group(1))
    if max_tiles < 1:
        raise ConversionError(f"{source}/config.json has {field}={value!r}: the tile cap must be at least 1.")
    return max_tiles


def image_settings_from_source(
    config: dict, crop_size: int, source: str, width_first: bool = True, aspect_ratio_field: str = "image_aspect_ratio"
) -> ImageSettings:
    """The tiling a source checkpoint was trained with; without `image_grid_pinpoints`, the released 1x1 ... 6x6."""
    value = config.get("image_grid_pinpoints")
    if value is None:
        logger.info("%s has no image_grid_pinpoints; using the released tile grids %s.", source, RELEASED_TILE_GRID)
        value = RELEASED_TILE_GRID
    pinpoints = grid_pinpoints_from_source(value, crop_size, source, width_first=width_first)
    max_tiles = max_tiles_from_aspect_ratio(config.get(aspect_ratio_field), source, aspect_ratio_field)
    return ImageSettings(pinpoints, max_tiles)


def detect_format(config: dict, source: str) -> str:
    """`AUTHORS` for the authors' Qwen2-plus-`mm_*` config, `LLAVA_ONEVISION` for llava-hf's, else an error."""
    model_type = config.get("model_type")
    if model_type == HourLlavaConfig.model_type:
        raise ConversionError(
            f"{source} is already an Hour-LLaVA checkpoint in this library's format (model_type hour_llava)."
        )
    if "mm_vision_tower" in config or "mm_resampler_type" in config:
        return AUTHORS
    if model_type == "llava_onevision":
        return LLAVA_ONEVISION
    raise ConversionError(
        f"{source}/config.json (model_type {model_type!r}) is neither the authors' Hour-LLaVA format (a Qwen2 config "
        "with mm_* fields) nor llava-hf's LLaVA-OneVision; for separate SigLIP and Qwen2 checkpoints use "
        "`build_from_siglip_and_qwen2`."
    )


def text_config_from_qwen2(config: dict) -> dict:
    """A Qwen2 text config dict from a Qwen2 (or Qwen2-based) config.json, rope settings in the 5.x form."""
    text = {key: config[key] for key in QWEN2_FIELDS if key in config}
    text["model_type"] = "qwen2"
    # The authors' model sets `rope_scaling = None` on construction, so only the base frequency carries over.
    text["rope_parameters"] = config.get("rope_parameters") or {
        "rope_type": "default",
        "rope_theta": float(config.get("rope_theta", 10000.0)),
    }
    return text


def siglip_vision_config(config: dict, num_layers: int | None = None) -> dict:
    """A headless SigLIP vision config dict from a SigLIP vision config (or a full SigLIP config's vision part)."""
    if config.get("model_type") == "siglip" or "vision_config" in config and "text_config" in config:
        config = config.get("vision_config") or {}
    vision = {key: config[key] for key in SIGLIP_VISION_FIELDS if key in config}
    if num_layers is not None:
        vision["num_hidden_layers"] = num_layers
    return {**vision, "model_type": "siglip_vision_model", "vision_use_head": False}


def source_dtype(config: dict) -> str | None:
    return config.get("dtype") or config.get("torch_dtype")


def config_from_authors(
    config: dict, video_token_id: int, image_token_id: int, source: str, **overrides
) -> HourLlavaConfig:
    """Map the authors' config.json (spec section 8) to an `HourLlavaConfig`.

    The vision tower comes from an optional `vision_config` object in the source config (tiny test checkpoints
    write one) and is otherwise SigLIP so400m/14@384 with 26 layers, the tower of every released checkpoint.
    """
    for field, allowed in AUTHORS_REQUIRED_SETTINGS.items():
        if config.get(field) not in allowed:
            raise ConversionError(
                f"{source}/config.json has {field}={config.get(field)!r}; Hour-LLaVA conversion supports "
                f"{[value for value in allowed if value is not None]}."
            )
    vision = siglip_vision_config(config["vision_config"]) if "vision_config" in config else {
        **SIGLIP_SO400M_VIDEO_TOWER,
        "model_type": "siglip_vision_model",
    }
    mm_hidden_size = config.get("mm_hidden_size")
    if mm_hidden_size is not None and mm_hidden_size != vision["hidden_size"]:
        raise ConversionError(
            f"{source}/config.json has mm_hidden_size={mm_hidden_size}, but the vision tower has hidden_size "
            f"{vision['hidden_size']}; add a `vision_config` object describing the tower to config.json."
        )
    crop_size = vision.get("image_size", SIGLIP_SO400M_VIDEO_TOWER["image_size"])
    images = image_settings_from_source(config, crop_size, source)
    values = {
        "memaug_depth": config.get("memaug_depth", 4),
        "spatial_sampling_type": config.get("spatial_sampling_type") or "random",
        "dtype": source_dtype(config),
        **images.config_fields(),
        **overrides,
    }
    return HourLlavaConfig(
        text_config=text_config_from_qwen2(config),
        vision_config=vision,
        video_token_id=video_token_id,
        image_token_id=image_token_id,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        **values,
    )


def kept_vision_layers(num_layers: int, feature_layer: int | list[int], source: str) -> int:
    """Encoder layers needed to produce hidden state `feature_layer` (`-1`: the last layer's, `-2`: the one before)."""
    if isinstance(feature_layer, list):
        raise ConversionError(f"{source}: vision_feature_layer={feature_layer}; Hour-LLaVA uses a single layer.")
    kept = feature_layer if feature_layer >= 0 else num_layers + 1 + feature_layer
    if not 1 <= kept <= num_layers:
        raise ConversionError(f"{source}: vision_feature_layer={feature_layer} with {num_layers} vision layers.")
    return kept


def config_from_llava_onevision(
    config: dict, video_token_id: int, image_token_id: int, source: str, **overrides
) -> HourLlavaConfig:
    """Map llava-hf's LLaVA-OneVision config; MemAug gets the reference's shape (text heads, depth 4)."""
    strategy = config.get("vision_feature_select_strategy", "full")
    if strategy != "full":
        raise ConversionError(f"{source}: vision_feature_select_strategy={strategy!r}; SigLIP towers use 'full'.")
    vision_source = config.get("vision_config") or {}
    num_layers = vision_source.get("num_hidden_layers", SIGLIP_SO400M_VIDEO_TOWER["num_hidden_layers"])
    kept = kept_vision_layers(num_layers, config.get("vision_feature_layer", -1), source)
    vision = {**SIGLIP_SO400M_VIDEO_TOWER, **siglip_vision_config(vision_source, num_layers=kept)}
    text_source = config.get("text_config") or {}
    images = image_settings_from_source(
        config, vision["image_size"], source, width_first=False, aspect_ratio_field="vision_aspect_ratio"
    )
    values = {
        "projector_hidden_act": config.get("projector_hidden_act", "gelu"),
        "dtype": source_dtype(config) or source_dtype(text_source),
        **images.config_fields(),
        **overrides,
    }
    tie = bool(config.get("tie_word_embeddings") or text_source.get("tie_word_embeddings"))
    return HourLlavaConfig(
        text_config=text_config_from_qwen2(text_source),
        vision_config=vision,
        video_token_id=video_token_id,
        image_token_id=image_token_id,
        tie_word_embeddings=tie,
        **values,
    )


def config_from_siglip_and_qwen2(
    siglip: dict, qwen2: dict, video_token_id: int, image_token_id: int, source: str, **overrides
) -> HourLlavaConfig:
    """SigLIP minus its last encoder layer and head (26 layers for so400m) in front of a Qwen2 causal LM."""
    vision = siglip_vision_config(siglip)
    num_layers = vision.get("num_hidden_layers", 12)
    if num_layers < 2:
        raise ConversionError(
            f"{source}: a SigLIP with {num_layers} layer(s) has no layer left after dropping the last one."
        )
    vision["num_hidden_layers"] = num_layers - 1
    values = {"dtype": source_dtype(qwen2) or source_dtype(siglip), **overrides}
    return HourLlavaConfig(
        text_config=text_config_from_qwen2(qwen2),
        vision_config=vision,
        video_token_id=video_token_id,
        image_token_id=image_token_id,
        tie_word_embeddings=bool(qwen2.get("tie_word_embeddings", False)),
        **values,
    )


__all__ = [
    "AUTHORS",
    "ImageSettings",
    "LLAVA_ONEVISION",
    "SOURCE_FORMATS",
    "config_from_authors",
    "config_from_llava_onevision",
    "config_from_siglip_and_qwen2",
    "detect_format",
    "image_settings_from_source",
]
