# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Tiny Hour-LLaVA models built in-process, with no download: for tests, the quickstart and the offline demo.

The tokenizer is a real byte-level `Qwen2Tokenizer` (the class the released checkpoints use) with ChatML special
tokens and `<video>` and `<image>` placeholders; optionally its merges are trained on a corpus so short texts stay
short.
"""

import json
from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer

from .modeling import HourLlavaConfig, HourLlavaForConditionalGeneration
from .processing import IMAGE_TOKEN, VIDEO_TOKEN


CHATML_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def tiny_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 512) -> Qwen2Tokenizer:
    """A byte-level BPE `Qwen2Tokenizer` with `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `<video>` and `<image>`
    (right after `<video>`, so `image_token_id = video_token_id + 1` as in converted checkpoints).

    As in Qwen2-Instruct tokenizers, `<|im_end|>` is the end-of-sequence token (so generation and TRL stop at the end
    of an assistant turn) and `<|endoftext|>` pads.

    Without `corpus` the vocabulary is the 256 byte symbols (one token per byte). With it, BPE merges are trained on
    the corpus up to `vocab_size` tokens.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    merges: list[tuple[str, str]] = []
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    if corpus is not None:
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
        bpe.train_from_iterator(corpus, trainer)
        trained = json.loads(bpe.model.__getstate__())
        vocab = trained["vocab"]
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    for token in (*CHATML_SPECIAL_TOKENS, VIDEO_TOKEN, IMAGE_TOKEN):
        vocab.setdefault(token, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, model_max_length=32768, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [token for token in CHATML_SPECIAL_TOKENS[1:]]})
    tokenizer.add_tokens([VIDEO_TOKEN, IMAGE_TOKEN], special_tokens=True)
    return tokenizer


def tiny_config(
    vocab_size: int, video_token_id: int, image_token_id: int | None = None, **overrides
) -> HourLlavaConfig:
    """An `HourLlavaConfig` small enough to train on two CPU cores.

    Vision: 32x32 frames, 4x4 patches (an 8x8 grid), pooled to 4x4; forgetting keeps 4 of 16 tokens per frame and
    one frame in four; short videos are upsampled to 16 frames. Images: 32x32 crops of 8x8 tokens, tiled on grids
    of 1x1 ... 6x6 crops. `image_token_id` defaults to `video_token_id + 1`. Every field can be overridden.
    """
    text_config = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": vocab_size,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": False,
    }
    vision_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 4,
        "vision_use_head": False,
    }
    text_config.update(overrides.pop("text_config", {}))
    vision_config.update(overrides.pop("vision_config", {}))
    values = {
        "video_pool_size": 4,
        "spatial_keep_tokens": 4,
        "min_video_frames": 16,
        "memaug_depth": 2,
        "vision_chunk_size": 16,
        **overrides,
    }
    return HourLlavaConfig(
        text_config=text_config,
        vision_config=vision_config,
        video_token_id=video_token_id,
        image_token_id=image_token_id,
        **values,
    )


def tiny_model(tokenizer: Qwen2Tokenizer | None = None, seed: int = 0, **overrides) -> HourLlavaForConditionalGeneration:
    """A randomly initialised tiny `HourLlavaForConditionalGeneration` matching `tokenizer` (default: `tiny_tokenizer()`)."""
    import torch

    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    config = tiny_config(
        len(tokenizer),
        tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        **overrides,
    )
    config.text_config.pad_token_id = tokenizer.pad_token_id
    config.text_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = HourLlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    return model.eval()


__all__ = ["IMAGE_TOKEN", "VIDEO_TOKEN", "tiny_config", "tiny_model", "tiny_tokenizer"]
