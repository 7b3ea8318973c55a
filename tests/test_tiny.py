"""The in-process tiny tokenizer and model that tests, the quickstart and the demo build on."""

import pytest
from transformers import AutoTokenizer

from hour_llava.tiny import IMAGE_TOKEN, VIDEO_TOKEN, tiny_config, tiny_tokenizer


def test_byte_level_tokenizer_round_trips_text_and_special_tokens(tokenizer):
    text = "<|im_start|>user\n<video>\nWhat colour? <image><image>Grün!<|im_end|>\n"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", VIDEO_TOKEN, IMAGE_TOKEN):
        assert ids.count(tokenizer.convert_tokens_to_ids(token)) == text.count(token)
    assert tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.parametrize("corpus", [None, ["a tiny corpus of words"] * 10])
def test_image_token_comes_right_after_the_video_token(corpus):
    """Converted tokenizers add `<image>` after `<video>`, so the config default `video_token_id + 1` holds."""
    tokenizer = tiny_tokenizer(corpus, vocab_size=300)
    video_id, image_id = tokenizer.convert_tokens_to_ids([VIDEO_TOKEN, IMAGE_TOKEN])
    assert image_id == video_id + 1 == len(tokenizer) - 1
    config = tiny_config(len(tokenizer), video_id)
    assert config.image_token_id == image_id and tiny_config(len(tokenizer), video_id, 5).image_token_id == 5


def test_corpus_trained_tokenizer_is_shorter_and_saves(tmp_path):
    corpus = ["What colour was the flash? red", "What colour was the flash? blue"] * 50
    trained = tiny_tokenizer(corpus, vocab_size=320)
    plain = tiny_tokenizer()
    sentence = "What colour was the flash?"
    assert len(trained(sentence)["input_ids"]) < len(plain(sentence)["input_ids"]) // 2
    trained.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = f"<|im_start|>user\n{VIDEO_TOKEN}{sentence} cyan<|im_end|>"
    assert reloaded(text)["input_ids"] == trained(text)["input_ids"]
    assert reloaded.decode(trained(text)["input_ids"]) == text


def test_conversion_takes_the_video_token_from_the_processor_not_the_test_fixtures():
    import subprocess
    import sys

    from hour_llava.processing import VIDEO_TOKEN as processor_video_token

    code = "import sys, hour_llava.conversion.convert as c; print('hour_llava.tiny' in sys.modules, c.VIDEO_TOKEN)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", processor_video_token] and VIDEO_TOKEN == processor_video_token
