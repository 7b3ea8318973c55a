"""Shared fixtures: tiny models and tokenizers built in-process, never downloaded."""

import os

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tokenizer():
    from hour_llava.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture
def tiny_model(tokenizer):
    """A fresh tiny `HourLlavaForConditionalGeneration` (eval mode), safe to modify in the test."""
    from hour_llava.tiny import tiny_model as build

    return build(tokenizer)
