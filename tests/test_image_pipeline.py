"""Images end to end: transformers' own `pipeline("image-text-to-text")` on a tiny Hour-LLaVA checkpoint, and the
processor's `<image>` counts against the tokens the model makes for the same images (eval and train mode)."""

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, pipeline
from transformers.pipelines import ImageTextToTextPipeline

from hour_llava import HourLlavaModel, HourLlavaProcessor
from hour_llava.pipelines import TASK as VIDEO_TASK
from hour_llava.pipelines import VideoTextToTextPipeline
from hour_llava.tiny import tiny_model
from remote_code import run_without_hour_llava
from torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)


MAX_NEW_TOKENS = 4
# With the default 0.02 a random tiny model answers every prompt with the same tokens, so no comparison could fail;
# larger weights make the answer depend on the image and the question.
INITIALIZER_RANGE = 0.3
GREEDY = {"max_new_tokens": MAX_NEW_TOKENS, "generate_kwargs": {"do_sample": False}}


def stripes(height: int, width: int, period: int) -> Image.Image:
    """Vertical stripes: images that differ in content, not only in colour."""
    row = [(255, 255, 255) if (x // period) % 2 else (20, 40, 200) for x in range(width)]
    image = Image.new("RGB", (width, height))
    image.putdata(row * height)
    return image


WIDE = stripes(40, 100, 5)
SQUARE = stripes(30, 30, 3)


def image_chat(*images, question="What is in the picture?"):
    content = [{"type": "image", "image": image} for image in images] + [{"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


@pytest.fixture(scope="module")
def model(tokenizer):
    text_config = {"initializer_range": INITIALIZER_RANGE}
    return tiny_model(tokenizer, text_config=text_config, initializer_range=INITIALIZER_RANGE)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer, model):
    """A tiny Hour-LLaVA saved with its processor, as `model.save_pretrained` + `processor.save_pretrained` do."""
    directory = tmp_path_factory.mktemp("image-pipeline") / "hour-llava-tiny"
    model.save_pretrained(directory)
    HourLlavaProcessor.from_model_config(model.config, tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def pipe(checkpoint):
    return pipeline("image-text-to-text", model=str(checkpoint), device="cpu")


def direct_sequence(pipe, messages) -> list[int]:
    """Prompt and greedy answer ids of the same chat through `processor.apply_chat_template` and `model.generate`,
    without the pipeline."""
    inputs = pipe.processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
    )
    with torch.no_grad():
        generated = pipe.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + MAX_NEW_TOKENS
    return generated[0].tolist()


def direct_answer(pipe, messages) -> str:
    return pipe.processor.tokenizer.decode(direct_sequence(pipe, messages)[-MAX_NEW_TOKENS:], skip_special_tokens=True)


def pipeline_sequence(pipe, messages) -> list[int]:
    [output] = pipe(text=messages, return_tensors=True, **GREEDY)
    return output["generated_token_ids"].tolist()


# ----------------------------------------------------------------------------------------------------------------------
# transformers' image-text-to-text pipeline
# ----------------------------------------------------------------------------------------------------------------------
def test_the_pipeline_is_transformers_own_with_our_processor(pipe):
    assert type(pipe) is ImageTextToTextPipeline
    assert isinstance(pipe.processor, HourLlavaProcessor) and pipe.processor.image_processor is not None


def test_a_chat_about_an_image_is_answered_as_generate_answers_it(pipe):
    [output] = pipe(text=image_chat(WIDE), **GREEDY)
    assert output["generated_text"][:-1] == image_chat(WIDE)
    answer = output["generated_text"][-1]
    assert answer["role"] == "assistant" and isinstance(answer["content"], str) and answer["content"]
    assert answer["content"] == direct_answer(pipe, image_chat(WIDE))
    wide = pipeline_sequence(pipe, image_chat(WIDE))
    assert wide == direct_sequence(pipe, image_chat(WIDE))
    square = pipeline_sequence(pipe, image_chat(SQUARE))
    assert wide[-MAX_NEW_TOKENS:] != square[-MAX_NEW_TOKENS:]  # the answer depends on the image


def test_several_images_and_text_only_chats(pipe):
    two_images = image_chat(WIDE, SQUARE, question="Are they the same?")
    assert pipeline_sequence(pipe, two_images) == direct_sequence(pipe, two_images)
    text_only = [{"role": "user", "content": [{"type": "text", "text": "Hello?"}]}]
    assert pipeline_sequence(pipe, text_only) == direct_sequence(pipe, text_only)
    outputs = pipe(text=[image_chat(WIDE), text_only], return_tensors=True, **GREEDY)
    assert [output[0]["generated_token_ids"].tolist() for output in outputs] == [
        direct_sequence(pipe, image_chat(WIDE)), direct_sequence(pipe, text_only)
    ]


def test_a_batch_of_chats_with_left_padding_answers_as_one_by_one(checkpoint, pipe):
    batched = pipeline("image-text-to-text", model=str(checkpoint), device="cpu")
    batched.processor.tokenizer.padding_side = "left"  # generation continues every row from its last token
    chats = [image_chat(WIDE), image_chat(SQUARE, SQUARE, question="Are these two the same, in a few words?")]
    outputs = batched(text=chats, batch_size=2, return_tensors=True, **GREEDY)
    for [output], chat in zip(outputs, chats):
        assert output["generated_token_ids"][-MAX_NEW_TOKENS:].tolist() == direct_sequence(pipe, chat)[-MAX_NEW_TOKENS:]


def test_an_image_and_a_prompt_without_a_chat(pipe, tmp_path):
    prompt = pipe.processor.apply_chat_template(image_chat(WIDE), add_generation_prompt=True)
    WIDE.save(tmp_path / "wide.png")
    for image in (WIDE, str(tmp_path / "wide.png")):
        [output] = pipe(images=image, text=prompt, return_full_text=False, **GREEDY)
        assert output["generated_text"] == direct_answer(pipe, image_chat(WIDE))


def test_our_video_pipeline_still_serves_the_same_checkpoint(checkpoint):
    video_pipe = pipeline(VIDEO_TASK, model=str(checkpoint), device="cpu")
    assert type(video_pipe) is VideoTextToTextPipeline
    assert AutoProcessor.from_pretrained(checkpoint).image_processor is not None


def test_the_pipeline_runs_the_checkpoint_as_remote_code(checkpoint, pipe, tmp_path):
    """Without the package: transformers loads the model, processor and image processor from the checkpoint."""
    WIDE.save(tmp_path / "wide.png")
    expected = direct_sequence(pipe, image_chat(WIDE))
    result = run_without_hour_llava(
        f"""
        from transformers import pipeline
        pipe = pipeline("image-text-to-text", model={str(checkpoint)!r}, device="cpu", trust_remote_code=True)
        assert type(pipe.processor.image_processor).__module__.startswith("transformers_modules")
        messages = [{{"role": "user", "content": [{{"type": "image", "path": "wide.png"}},
                                                 {{"type": "text", "text": "What is in the picture?"}}]}}]
        [output] = pipe(text=messages, max_new_tokens={MAX_NEW_TOKENS}, generate_kwargs={{"do_sample": False}},
                        return_tensors=True)
        print("answer", output["generated_token_ids"].tolist())
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"answer {expected}" in result.stdout


# ----------------------------------------------------------------------------------------------------------------------
# The processor's placeholder count is the number of tokens the model makes
# ----------------------------------------------------------------------------------------------------------------------
SAMPLES = {
    "text": ["<image>\nSmall?", "<image>\nWide?", "<image>\nBig?", "<image><image>\nTwo?", "Text only."],
    "images": [[stripes(20, 20, 2)], [WIDE], [stripes(200, 200, 7)], [SQUARE, stripes(10, 60, 4)], []],
}


def model_image_token_counts(model, inputs, monkeypatch) -> list[list[int]]:
    """Per sample with images, the tokens the model makes for each of its images (recorded where it places them)."""
    recorded = []
    image_spans = HourLlavaModel.image_spans

    def spy(row_mask, token_counts, sample):
        recorded.append(list(token_counts))
        return image_spans(row_mask, token_counts, sample)

    monkeypatch.setattr(HourLlavaModel, "image_spans", staticmethod(spy))
    model(**inputs)
    return recorded


def processor_image_token_counts(processor, inputs) -> list[list[int]]:
    counts = [int((row == processor.image_token_id).sum()) for row in inputs["input_ids"]]
    return [count for count in counts if count]


def test_eval_mode_makes_the_uniform_count_of_every_placeholder(model, tokenizer, monkeypatch):
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)
    inputs = processor(**SAMPLES, padding=True, return_tensors="pt")
    assert processor_image_token_counts(processor, inputs) == [36, 118, 172, 34]  # test_image_processing.py
    with torch.no_grad():
        made = model_image_token_counts(model.eval(), inputs, monkeypatch)
    assert made == [[36], [118], [172], [17, 17]]


def test_train_mode_makes_the_count_of_the_processor_draw(tokenizer, monkeypatch):
    model = tiny_model(tokenizer, spatial_sampling_type="random").train()
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)
    generator = torch.Generator().manual_seed(11)
    inputs = processor(**SAMPLES, image_forgetting="random", generator=generator, padding=True, return_tensors="pt")
    made = model_image_token_counts(model, inputs, monkeypatch)
    assert [sum(counts) for counts in made] == processor_image_token_counts(processor, inputs)
    assert [counts[0] for counts in made[:3]] != [36, 118, 172]  # the draw, not the uniform grid
    with pytest.raises(ValueError, match="image_kept_indices"):  # the model refuses to draw its own
        model(**{key: value for key, value in inputs.items() if not key.startswith("image_kept")})
