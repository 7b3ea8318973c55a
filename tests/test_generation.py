"""generate() with videos: static cache, beam search / num_return_sequences expansion, the generation hooks."""

import inspect

import pytest
import torch

from hour_llava.tiny import VIDEO_TOKEN, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer, seed=1)


def video_prompt(tokenizer, model, num_frames: int, before: str, after: str) -> list[int]:
    video = [tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)] * model.config.num_video_tokens(num_frames)
    return tokenizer.encode(before) + video + tokenizer.encode(after)


def left_padded_batch(tokenizer, rows: list[list[int]]) -> dict:
    """Left-padded `input_ids`/`attention_mask`, and a MemAug query mask that also leaves out the first text token."""
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id)
    attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, length - len(row) :] = torch.tensor(row)
        attention_mask[i, length - len(row) :] = 1
    memaug_query_mask = attention_mask.clone()
    memaug_query_mask[:, -1] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "memaug_query_mask": memaug_query_mask}


def two_videos(frames: tuple[int, int] = (5, 3)) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(n, 3, 32, 32, generator=generator) + 3 * i for i, n in enumerate(frames)]


# ----------------------------------------------------------------------------------------------------------------------
# Static cache
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_query_mask", [True, False])
def test_static_cache_with_videos_gives_the_dynamic_cache_tokens(tokenizer, model, with_query_mask):
    """A static cache hands the model per-layer 4D masks; MemAug's query must still leave the padding out."""
    videos = two_videos()
    rows = [
        video_prompt(tokenizer, model, 5, "first question", "is it red?"),
        video_prompt(tokenizer, model, 3, "q", "and the second one, a longer question?"),
    ]
    inputs = left_padded_batch(tokenizer, rows)
    if not with_query_mask:
        del inputs["memaug_query_mask"]
    inputs.update(pixel_values_videos=torch.cat(videos), video_num_frames=torch.tensor([5, 3]))
    options = {"max_new_tokens": 6, "do_sample": False}
    dynamic = model.generate(**inputs, **options)
    static = model.generate(**inputs, **options, cache_implementation="static")
    assert torch.equal(static, dynamic)


def test_static_cache_prefill_sees_the_same_memaug_query(tokenizer, model):
    """The refined video rows at prefill are equal: compared on the embeddings, not only on the tokens."""
    videos = two_videos()
    rows = [video_prompt(tokenizer, model, 5, "a", "b?"), video_prompt(tokenizer, model, 3, "longer text", "c?")]
    inputs = left_padded_batch(tokenizer, rows)
    del inputs["memaug_query_mask"]  # padding is known only from the attention mask
    inputs.update(pixel_values_videos=torch.cat(videos), video_num_frames=torch.tensor([5, 3]))
    captured = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(kwargs["inputs_embeds"]), with_kwargs=True
    )
    try:
        model.generate(**inputs, max_new_tokens=1, do_sample=False)
        model.generate(**inputs, max_new_tokens=1, do_sample=False, cache_implementation="static")
    finally:
        hook.remove()
    dynamic_prefill, static_prefill = captured[0], captured[-1]
    torch.testing.assert_close(static_prefill, dynamic_prefill)


# ----------------------------------------------------------------------------------------------------------------------
# Beam search and num_return_sequences: each sample keeps its own video
# ----------------------------------------------------------------------------------------------------------------------
def video_input_forms(model, videos: list[torch.Tensor]) -> dict[str, dict]:
    """Every accepted way of passing the batch's videos; the 5D forms need equal lengths."""
    same_length = [video[:3] for video in videos]
    with torch.no_grad():
        pooled = [model.model.get_video_features(video).last_hidden_state for video in videos]
    return {
        "flat + counts": {
            "pixel_values_videos": torch.cat(videos),
            "video_num_frames": torch.tensor([len(v) for v in videos]),
        },
        "5D": {"pixel_values_videos": torch.stack(same_length)},
        "5D + counts": {"pixel_values_videos": torch.stack(same_length), "video_num_frames": torch.tensor([3, 3])},
        "pooled + counts": {
            "pooled_video_features": torch.cat(pooled),
            "video_num_frames": torch.tensor([len(v) for v in videos]),
        },
    }


def per_video(kwargs: dict) -> list[torch.Tensor]:
    """Split whatever form the expanded kwargs hold into one tensor per video, in order."""
    frames = kwargs.get("pixel_values_videos")
    frames = kwargs.get("pooled_video_features") if frames is None else frames
    if frames.dim() == 5:
        return list(frames)
    counts = kwargs.get("video_num_frames")
    return list(frames.split([int(n) for n in counts])) if counts is not None else [frames]


@pytest.mark.parametrize("form", ["flat + counts", "5D", "5D + counts", "pooled + counts"])
def test_expansion_puts_each_video_next_to_its_own_sample(tokenizer, model, form):
    kwargs = video_input_forms(model, two_videos())[form]
    expected_videos = per_video(kwargs)
    input_ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    expand = 3
    expanded_ids, expanded = model._expand_inputs_for_generation(
        expand_size=expand, input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **dict(kwargs)
    )
    rows = per_video(expanded)
    assert len(rows) == len(expanded_ids) == 2 * expand
    for row, video in enumerate(rows):
        sample = row // expand
        assert torch.equal(expanded_ids[row], input_ids[sample])
        assert torch.equal(video, expected_videos[sample]), f"row {row} holds another sample's video"


def test_expansion_of_a_single_video_without_counts(model):
    video = two_videos()[0]
    _, expanded = model._expand_inputs_for_generation(
        expand_size=2, input_ids=torch.tensor([[1, 2]]), pixel_values_videos=video
    )
    assert torch.equal(expanded["pixel_values_videos"], torch.cat([video, video]))


@pytest.mark.parametrize("form", ["flat + counts", "5D", "5D + counts", "pooled + counts"])
def test_beam_search_prefill_receives_each_samples_video(tokenizer, model, form):
    """Through `generate` itself: what the prefill forward gets, row by row, for beams and returned sequences."""
    videos = two_videos()
    forms = video_input_forms(model, videos)
    num_frames = [3, 3] if form.startswith("5D") else [5, 3]
    rows = [video_prompt(tokenizer, model, n, "what", "?") for n in num_frames]
    inputs = {**left_padded_batch(tokenizer, rows), **forms[form]}
    expected_videos = per_video(forms[form])
    captured = []
    hook = model.model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(dict(kwargs)), with_kwargs=True
    )
    try:
        output = model.generate(
            **inputs, num_beams=2, num_return_sequences=2, max_new_tokens=3, do_sample=False, early_stopping=True
        )
    finally:
        hook.remove()
    assert output.shape[0] == 4
    prefill_videos = per_video(captured[0])
    assert len(prefill_videos) == 4
    for row, video in enumerate(prefill_videos):
        assert torch.equal(video, expected_videos[row // 2]), f"beam row {row} holds another sample's video"
    assert all(
        captured_step.get("pixel_values_videos") is None and captured_step.get("pooled_video_features") is None
        for captured_step in captured[1:]
    )


def test_beam_search_answers_match_one_sample_at_a_time(tokenizer, model):
    """Each sample's best beam in a batch equals its beam search alone (its own video, not its neighbour's)."""
    videos = two_videos((4, 4))
    rows = [video_prompt(tokenizer, model, 4, "same words", "?")] * 2
    options = {"num_beams": 3, "max_new_tokens": 4, "do_sample": False}
    batch = model.generate(
        **left_padded_batch(tokenizer, rows), pixel_values_videos=torch.stack(videos), **options
    )
    for i, video in enumerate(videos):
        alone = model.generate(**left_padded_batch(tokenizer, rows[:1]), pixel_values_videos=video[None], **options)
        assert torch.equal(batch[i, -4:], alone[0, -4:])


# ----------------------------------------------------------------------------------------------------------------------
# What transformers' generation tests look for
# ----------------------------------------------------------------------------------------------------------------------
def test_prepare_inputs_for_generation_declares_inputs_embeds(model):
    parameters = inspect.signature(model.prepare_inputs_for_generation).parameters
    assert "inputs_embeds" in parameters and "attention_mask" in parameters and "cache" in parameters


def test_generation_from_inputs_embeds_with_a_video(tokenizer, model):
    row = video_prompt(tokenizer, model, 4, "describe", "it")
    input_ids = torch.tensor([row])
    video = two_videos((4, 4))[0]
    from_ids = model.generate(input_ids=input_ids, pixel_values_videos=video, max_new_tokens=4, do_sample=False)
    embeds = model.get_input_embeddings()(input_ids)
    from_embeds = model.generate(inputs_embeds=embeds, pixel_values_videos=video, max_new_tokens=4, do_sample=False)
    assert torch.equal(from_embeds[0], from_ids[0, -4:])
