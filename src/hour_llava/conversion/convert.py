# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Build Hour-LLaVA checkpoints in this library's format from the authors' releases or from their parts.

Three starting points, one output layout (docs/design.md): native safetensors shards, an `HourLlavaConfig`, the
tokenizer with `<video>` and `<image>` tokens, processor files (with the image processor tiling as the source was
trained), and a model card. Writes go to a staging directory next to the
destination that is renamed into place at the end, so an interrupted run never leaves a checkpoint that looks valid.
"""

import fnmatch
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase, Qwen2Config

from ..modeling import HourLlavaConfig, HourLlavaForConditionalGeneration
from ..processing import IMAGE_TOKEN, VIDEO_TOKEN, HourLlavaProcessor
from .configs import (
    AUTHORS,
    config_from_authors,
    config_from_llava_onevision,
    config_from_siglip_and_qwen2,
    detect_format,
)
from .keys import (
    AUTHORS_RULES,
    LLAVA_ONEVISION_RULES,
    QWEN2_RULES,
    SIGLIP_IGNORED,
    SIGLIP_RULES,
    RenamedTensors,
    check_tensors_fit,
    drop_unused_vision_weights,
    rename_tensors,
)
from .sources import ConversionError, dtype_of, open_tensors, read_json, resolve_source, shape_of


logger = logging.getLogger(__name__)

# Parts a build from LLaVA-OneVision or from SigLIP + Qwen2 starts from scratch, initialised as the reference does.
MEMAUG_PREFIX = "model.memory_augmentation."
FRESH_FROM_PARTS = (MEMAUG_PREFIX, "model.multi_modal_projector.", "model.image_newline")
DEFAULT_MAX_SHARD_SIZE = "5GB"
# Stage 1: LLaVA-OneVision single-image data; stage 2 adds LLaVA-Video-178K; stage 3 adds VideoMarathon.
AUTHORS_STAGE_DATASETS = {
    "1": ["lmms-lab/LLaVA-OneVision-Data"],
    "2": ["lmms-lab/LLaVA-OneVision-Data", "lmms-lab/LLaVA-Video-178K"],
    "3": ["lmms-lab/LLaVA-OneVision-Data", "lmms-lab/LLaVA-Video-178K", "jylins/videomarathon"],
}


def authors_training_datasets(source: str) -> list[str]:
    """The Hub datasets a released stage was trained on (spec section 7), for the model card; all three if unknown."""
    stage = re.search(r"-s([123])/?$", source)
    return AUTHORS_STAGE_DATASETS[stage.group(1)] if stage else AUTHORS_STAGE_DATASETS["3"]


def load_tokenizer(directory: Path, source: str) -> PreTrainedTokenizerBase:
    """The source's tokenizer with the `<video>` and `<image>` placeholders added as special tokens (in that order,
    so a tokenizer that lacks both gets `image_token_id = video_token_id + 1`) when it lacks them."""
    try:
        # Every source's language model is a Qwen2; saying so spares AutoTokenizer parsing the source's config.json.
        tokenizer = AutoTokenizer.from_pretrained(directory, config=Qwen2Config())
    except (OSError, ValueError) as error:
        raise ConversionError(f"Could not load a tokenizer from {source}: {error}") from error
    for token in (VIDEO_TOKEN, IMAGE_TOKEN):
        if token not in tokenizer.get_vocab():
            tokenizer.add_tokens([token], special_tokens=True)
    return tokenizer


def load_generation_config(directory: Path, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """The source's generation config, defaulting to stop at `<|im_end|>` (ChatML) and pad with the pad token."""
    has_file = (directory / "generation_config.json").is_file()
    generation_config = GenerationConfig.from_pretrained(directory) if has_file else GenerationConfig()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if generation_config.eos_token_id is None and end_of_turn is not None:
        generation_config.eos_token_id = end_of_turn
    if generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return generation_config


def expected_state_shapes(config: HourLlavaConfig) -> dict[str, torch.Size]:
    """Key -> shape of every tensor the model saves, from a skeleton on the meta device (no memory, no init)."""
    with torch.device("meta"):
        skeleton = HourLlavaForConditionalGeneration(config)
    return {key: tensor.shape for key, tensor in skeleton.state_dict().items()}


def most_common_dtype(tensors: dict[str, Any]) -> torch.dtype:
    """The floating dtype that holds most of the parameters (the checkpoint's dtype when its config omits it)."""
    sizes: dict[torch.dtype, int] = {}
    for tensor in tensors.values():
        dtype = dtype_of(tensor)
        if dtype is not None and dtype.is_floating_point:
            sizes[dtype] = sizes.get(dtype, 0) + math.prod(shape_of(tensor))
    return max(sizes, key=sizes.get) if sizes else torch.float32


def assemble_model(
    config: HourLlavaConfig,
    renamed: RenamedTensors,
    source: str,
    fresh_prefixes: tuple[str, ...] = (),
    dtype: torch.dtype | None = None,
) -> HourLlavaForConditionalGeneration:
    """Check the renamed tensors against the config, then load them; parts under `fresh_prefixes` start fresh.

    Fresh parts get `post_init`'s initialisation (Linear N(0, 0.02) with zero bias, LayerNorm 1/0), which is how the
    reference initialises MemAug at stage 1.
    """
    if config.tie_word_embeddings and "lm_head.weight" in renamed.tensors:
        renamed.drop("lm_head.weight")  # tied to embed_tokens; the 3B's copy (if saved) carries no information
    optional = ("lm_head.weight",) if config.tie_word_embeddings else ()
    check_tensors_fit(renamed, expected_state_shapes(config), source, fresh_prefixes, optional)
    dtype = dtype or getattr(config, "dtype", None) or most_common_dtype(renamed.tensors)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return HourLlavaForConditionalGeneration.from_pretrained(
        None, config=config, state_dict=renamed.tensors, dtype=dtype
    ).eval()


def fit_vocabulary(model: HourLlavaForConditionalGeneration, tokenizer: PreTrainedTokenizerBase) -> None:
    """Grow the embeddings (mean-initialised rows) when the tokenizer, with `<video>`, outgrows them."""
    if len(tokenizer) > model.config.text_config.vocab_size:
        old_size = model.config.text_config.vocab_size
        logger.info("Resizing the embeddings from %d to %d tokens.", old_size, len(tokenizer))
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)


# What a save of ours writes into a checkpoint folder (model, processor, tokenizer, card, remote code): `--overwrite`
# replaces a folder only if it holds nothing else.
CHECKPOINT_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "README.md",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
)


def remote_code_file_names() -> set[str]:
    """The module names `save_pretrained` copies next to a checkpoint for `trust_remote_code` (and the pipeline's)."""
    package = Path(__file__).resolve().parents[1]
    folders = (package / "modeling", package / "processing")
    return {path.name for folder in folders for path in folder.glob("*.py")} | {"pipelines.py", "video_cache.py"}


@contextmanager
def atomic_directory(
    destination: str | os.PathLike, overwrite: bool = False, sources: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Yield a staging directory next to `destination`; rename it into place only if the block succeeds.

    The directory gets the permissions the user's umask gives a new folder (`mkdtemp` makes it private).
    """
    destination = Path(destination).expanduser().absolute()
    check_destination(destination, overwrite, sources)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        yield staging
        staging.chmod(0o777 & ~current_umask())
        if destination.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
            destination.rename(retired / destination.name)
            staging.rename(destination)
            shutil.rmtree(retired)
        else:
            staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_destination(destination: Path, overwrite: bool, sources: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse to write over anything but an earlier checkpoint of ours (or an empty folder), and never over the
    current folder, the home folder, a source or a folder holding a source, whatever they contain."""
    if not destination.exists() and not destination.is_symlink():
        return
    if not overwrite:
        raise FileExistsError(f"{destination} already exists; pass overwrite=True (--overwrite) to replace it.")
    resolved = destination.resolve()
    protected = {Path.cwd().resolve(): "the current folder", Path.home().resolve(): "your home folder"}
    if resolved in protected or resolved == Path(resolved.anchor):
        reason = protected.get(resolved, "the file system root")
        raise FileExistsError(f"Refusing to overwrite {destination}: it is {reason}. Pick a new output folder.")
    for source in sources:
        source = Path(source).expanduser().resolve()
        if resolved == source or resolved in source.parents:
            raise FileExistsError(
                f"Refusing to overwrite {destination}: it is or holds the source {source}. Pick a new output folder."
            )
    if not resolved.is_dir():
        raise FileExistsError(f"Refusing to overwrite {destination}: it is a file, not a checkpoint folder.")
    foreign = files_not_of_a_checkpoint(resolved)
    if foreign:
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(
            f"Refusing to overwrite {destination}: it is not an earlier Hour-LLaVA checkpoint; it holds {listed}, "
            "which a conversion does not write. Remove them or pick a new output folder."
        )


def files_not_of_a_checkpoint(directory: Path) -> list[str]:
    """What in `directory` a conversion did not write: every entry if its config is not an Hour-LLaVA one, else the
    entries that no save of ours writes. Empty for an empty folder (replacing it loses nothing)."""
    entries = sorted(directory.iterdir())
    if not entries:
        return []
    try:
        is_ours = json.loads((directory / "config.json").read_text()).get("model_type") == "hour_llava"
    except (OSError, ValueError, AttributeError):
        is_ours = False
    if not is_ours:
        return [entry.name + ("/" if entry.is_dir() else "") for entry in entries]
    code = remote_code_file_names()

    def written_by_us(entry: Path) -> bool:
        if not entry.is_file():
            return False
        return entry.name in code or any(fnmatch.fnmatchcase(entry.name, p) for p in CHECKPOINT_FILE_PATTERNS)

    return [entry.name + ("/" if entry.is_dir() else "") for entry in entries if not written_by_us(entry)]


def write_checkpoint(
    model: HourLlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    destination: str | os.PathLike,
    base_model: str | list[str] | None = None,
    datasets: list[str] | None = None,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    sources: Iterable[str | os.PathLike] = (),
) -> Path:
    """Save model, processor (with the tokenizer, and the image processor tiling on the config's
    `image_grid_pinpoints`) and model card atomically into `destination`.

    With `overwrite`, `destination` may only be an earlier checkpoint of ours, never one of the `sources` (local
    folders the checkpoint was made from) or a folder holding one (see `check_destination`).

    Model and processor also load with `trust_remote_code=True`; the pipeline's code is added by
    `hour_llava.hub.push_to_hub` (a checkpoint that carries it needs `trust_remote_code=True` even where hour_llava is
    installed, see docs/inference.md).
    """
    from ..hub import write_model_card

    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)
    with atomic_directory(destination, overwrite, sources) as staging:
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        processor.save_pretrained(staging)
        write_model_card(staging, str(destination), base_model=base_model, datasets=datasets)
    return Path(destination)


def local_folders(*sources: str | os.PathLike) -> list[Path]:
    """The sources that are local folders (Hub ids are not; their resolved download folders are)."""
    return [Path(source).expanduser() for source in sources if Path(source).expanduser().is_dir()]


def convert_checkpoint(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    datasets: list[str] | None = None,
    **config_overrides,
) -> Path:
    """Convert an authors' checkpoint (`jylins/hourllava-*`) or build one from a llava-hf LLaVA-OneVision checkpoint.

    The format is read from the source's config.json. From LLaVA-OneVision, MemAug starts fresh (stage 1's start).
    `config_overrides` set `HourLlavaConfig` fields (e.g. `spatial_sampling_type="uniform"`).
    """
    check_destination(Path(destination).expanduser().absolute(), overwrite, local_folders(source))
    source_name = str(source)
    directory = resolve_source(source, revision)
    source_config = read_json(directory / "config.json")
    source_format = detect_format(source_config, source_name)
    tokenizer = load_tokenizer(directory, source_name)
    token_ids = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN), tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    with open_tensors(directory) as tensors:
        if source_format == AUTHORS:
            config = config_from_authors(source_config, *token_ids, source_name, **config_overrides)
            renamed, fresh = rename_tensors(tensors, AUTHORS_RULES), ()
            drop_unused_vision_weights(renamed)  # their 26 layers are the tower; extra layers are refused
        else:
            config = config_from_llava_onevision(source_config, *token_ids, source_name, **config_overrides)
            renamed, fresh = rename_tensors(tensors, LLAVA_ONEVISION_RULES), (MEMAUG_PREFIX,)
            drop_unused_vision_weights(renamed, config.vision_config.num_hidden_layers)
        model = assemble_model(config, renamed, source_name, fresh, dtype)
    fit_vocabulary(model, tokenizer)
    model.generation_config = load_generation_config(directory, tokenizer)
    base_model = None if Path(source).expanduser().is_dir() else source_name
    if datasets is None and source_format == AUTHORS:
        datasets = authors_training_datasets(source_name)
    sources = local_folders(source, directory)
    return write_checkpoint(model, tokenizer, destination, base_model, datasets, max_shard_size, overwrite, sources)


def build_from_siglip_and_qwen2(
    siglip: str | os.PathLike,
    qwen2: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    **config_overrides,
) -> Path:
    """A fresh Hour-LLaVA from a SigLIP checkpoint (vision model minus its last layer and head) and a Qwen2 LM.

    Projector, newline and MemAug start from `post_init`'s initialisation; the tokenizer comes from `qwen2`.
    """
    check_destination(Path(destination).expanduser().absolute(), overwrite, local_folders(siglip, qwen2))
    siglip_dir, qwen2_dir = resolve_source(siglip, revision), resolve_source(qwen2, revision)
    tokenizer = load_tokenizer(qwen2_dir, str(qwen2))
    config = config_from_siglip_and_qwen2(
        read_json(siglip_dir / "config.json"),
        read_json(qwen2_dir / "config.json"),
        tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        f"{siglip} + {qwen2}",
        **config_overrides,
    )
    siglip_files, lm_files = open_tensors(siglip_dir, "Opening SigLIP"), open_tensors(qwen2_dir, "Opening Qwen2")
    with siglip_files as siglip_tensors, lm_files as lm_tensors:
        renamed = rename_tensors(siglip_tensors, SIGLIP_RULES, SIGLIP_IGNORED)
        drop_unused_vision_weights(renamed, config.vision_config.num_hidden_layers)
        rename_tensors(lm_tensors, QWEN2_RULES, into=renamed)
        model = assemble_model(config, renamed, f"{siglip} + {qwen2}", FRESH_FROM_PARTS, dtype)
    fit_vocabulary(model, tokenizer)
    model.generation_config = load_generation_config(qwen2_dir, tokenizer)
    base_models = [str(name) for name in (siglip, qwen2) if not Path(name).expanduser().is_dir()]
    sources = local_folders(siglip, qwen2, siglip_dir, qwen2_dir)
    return write_checkpoint(
        model, tokenizer, destination, base_models or None, None, max_shard_size, overwrite, sources
    )


__all__ = [
    "ConversionError",
    "atomic_directory",
    "build_from_siglip_and_qwen2",
    "convert_checkpoint",
]
