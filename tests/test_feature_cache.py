"""The pooled-feature cache: file format, atomic writes, resume with verification, sharding."""

import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from training_helpers import instruction_sample, save_tiny_checkpoint, write_json, write_video

from hour_llava.processing import EncodedVideo, HourLlavaProcessor, HourLlavaVideoMetadata
from hour_llava.training import (
    StreamingVideoEncoder,
    extract_video_features,
    feature_cache_path,
    is_complete_cache_file,
    load_video_features,
    save_video_features,
    vision_fingerprint,
)
from hour_llava.training.feature_cache import shard_for_process


VIDEOS = {f"src/clip{i}.mp4": f"/videos/src/clip{i}.mp4" for i in range(5)} | {"bad/broken.mp4": "/videos/broken"}


class FakeEncoder:
    """Encodes `/videos/...clip{i}.mp4` to `i + 2` frames of the constant `i + 2`; 'broken' raises like a bad file."""

    def __init__(self):
        self.calls = []

    def __call__(self, path: str) -> EncodedVideo:
        self.calls.append(path)
        if "broken" in path:
            raise RuntimeError("moov atom not found")
        frames = int(path[-5]) + 2
        metadata = HourLlavaVideoMetadata(
            total_num_frames=frames, duration=frames - 0.5, frame_timestamps=[float(t) for t in range(frames)]
        )
        return EncodedVideo(torch.full((frames, 4, 8), float(frames)), metadata)


def test_round_trip_and_layout(tmp_path):
    path = feature_cache_path(tmp_path, "ego4d/a b.mp4")
    assert path == tmp_path / "ego4d" / "a b.mp4.safetensors"
    features = torch.randn(3, 16, 32)
    save_video_features(path, features, [0.0, 1.0, 2.5], 3.25, "ego4d/a b.mp4", "abc")
    cached = load_video_features(path)
    assert torch.equal(cached.pooled_features, features) and cached.num_frames == 3
    assert cached.metadata.timestamps == [0.0, 1.0, 2.5] and cached.metadata.duration == 3.25
    assert cached.header["video"] == "ego4d/a b.mp4" and cached.header["fingerprint"] == "abc"
    assert os.listdir(path.parent) == [path.name]  # the temp file is gone
    with pytest.raises(ValueError, match="T timestamps"):
        save_video_features(path, features, [0.0], 1.0, "x", "abc")


def test_verification_rejects_partial_and_foreign_files(tmp_path):
    path = tmp_path / "a.safetensors"
    save_video_features(path, torch.randn(2, 4, 8), [0, 1], 2.0, "a", "fp")
    assert is_complete_cache_file(path, "fp") and is_complete_cache_file(path)
    assert not is_complete_cache_file(path, "another-model")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-10])
    assert not is_complete_cache_file(truncated)
    with pytest.raises(ValueError, match="truncated.safetensors"):
        load_video_features(truncated)
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, foreign)
    assert not is_complete_cache_file(foreign)
    with pytest.raises(ValueError, match="not an Hour-LLaVA feature cache file"):
        load_video_features(foreign)


def test_extraction_writes_skips_and_resumes(tmp_path, caplog):
    encoder = FakeEncoder()
    report = extract_video_features(VIDEOS, tmp_path, encoder, "fp", show_progress=False)
    assert sorted(report.written) == sorted(k for k in VIDEOS if "broken" not in k)
    assert list(report.failed) == ["bad/broken.mp4"] and "moov atom" in report.failed["bad/broken.mp4"]
    assert "Skipping video 'bad/broken.mp4'" in caplog.text
    cached = load_video_features(feature_cache_path(tmp_path, "src/clip3.mp4"))
    assert cached.num_frames == 5 and cached.metadata.duration == 4.5 and torch.all(cached.pooled_features == 5.0)

    # an interrupted run: one file cut short, one stale temp file, one file missing
    feature_cache_path(tmp_path, "src/clip1.mp4").write_bytes(b"partial")
    stale = feature_cache_path(tmp_path, "src/clip2.mp4")
    stale.unlink()
    stale.with_name(f".{stale.name}.tmp-{dead_process_id()}-{socket.gethostname()}-x1y2").write_bytes(b"junk")
    untouched = feature_cache_path(tmp_path, "src/clip0.mp4")
    before = untouched.stat().st_mtime_ns
    encoder.calls.clear()
    report = extract_video_features(VIDEOS, tmp_path, encoder, "fp", show_progress=False)
    assert sorted(report.written) == ["src/clip1.mp4", "src/clip2.mp4"]
    assert sorted(report.skipped) == ["src/clip0.mp4", "src/clip3.mp4", "src/clip4.mp4"]
    assert sorted(encoder.calls) == ["/videos/broken", "/videos/src/clip1.mp4", "/videos/src/clip2.mp4"]
    assert untouched.stat().st_mtime_ns == before
    assert sorted(os.listdir(tmp_path / "src")) == [f"clip{i}.mp4.safetensors" for i in range(5)]

    report = extract_video_features(VIDEOS, tmp_path, encoder, "new-model", show_progress=False)
    assert len(report.written) == 5, "a cache from another vision tower is recomputed"


def dead_process_id() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_running_process_keeps_its_temporary_file(tmp_path):
    """Two extractions into one cache: the one starting later must not delete the other's file in progress."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        target = feature_cache_path(tmp_path, "src/clip1.mp4")
        target.parent.mkdir(parents=True)
        in_progress = target.with_name(f".{target.name}.tmp-{other.pid}-{socket.gethostname()}-ab12")
        in_progress.write_bytes(b"being written")
        on_other_host = target.with_name(f".{target.name}.tmp-{dead_process_id()}-other-host-cd34")
        on_other_host.write_bytes(b"being written elsewhere")
        report = extract_video_features({"src/clip1.mp4": "/videos/src/clip1.mp4"}, tmp_path, FakeEncoder(), "fp")
        assert report.written == ["src/clip1.mp4"] and is_complete_cache_file(target, "fp")
        assert in_progress.read_bytes() == b"being written" and on_other_host.exists()
    finally:
        other.kill()
        other.wait()


def test_non_finite_features_are_never_written_and_damaged_files_are_named(tmp_path):
    features = torch.randn(2, 4, 8)
    features[1, 2, 3] = float("nan")
    path = tmp_path / "a.mp4.safetensors"
    with pytest.raises(ValueError, match="'a.mp4' hold NaN or infinite values"):
        save_video_features(path, features, [0, 1], 2.0, "a.mp4", "fp")
    assert not path.exists() and os.listdir(tmp_path) == []

    class NanEncoder(FakeEncoder):
        def __call__(self, path):
            encoded = super().__call__(path)
            encoded.pooled_features[0, 0, 0] = float("inf")
            return encoded

    report = extract_video_features({"src/clip1.mp4": "/videos/src/clip1.mp4"}, tmp_path, NanEncoder(), "fp")
    assert "NaN or infinite" in report.failed["src/clip1.mp4"] and not report.written

    save_video_features(path, torch.ones(2, 4, 8), [0, 1], 2.0, "a.mp4", "fp")
    whole = path.read_bytes()
    for position in (-4, -264):  # one flipped bit in the features, then in the timestamps: finite, and it parses
        data = bytearray(whole)
        data[position] ^= 0x01
        path.write_bytes(bytes(data))
        assert is_complete_cache_file(path, "fp")  # the header alone cannot tell
        with pytest.raises(ValueError, match="a.mp4.safetensors' is damaged"):
            load_video_features(path)


def test_extraction_can_raise(tmp_path):
    with pytest.raises(RuntimeError, match="'bad/broken.mp4'"):
        extract_video_features(VIDEOS, tmp_path, FakeEncoder(), "fp", on_error="raise", show_progress=False)


def test_shards_are_disjoint_and_cover_everything():
    keys = [f"v{i}" for i in range(11)] + ["v3"]
    shards = [shard_for_process(keys, rank, 3) for rank in range(3)]
    assert sorted(sum(shards, [])) == sorted(set(keys))
    assert [len(shard) for shard in shards] == [4, 4, 3]
    with pytest.raises(ValueError, match="process_index=3"):
        shard_for_process(keys, 3, 3)


def test_streaming_encoder_returns_pooled_features_before_the_projector(tmp_path, tokenizer, tiny_model):
    video = write_video(tmp_path / "clip.mp4", seconds=20)
    processor = HourLlavaProcessor.from_model_config(tiny_model.config, tokenizer)
    encoded = StreamingVideoEncoder(processor, tiny_model, vision_chunk_size=3)(str(video))
    decoded = processor.video_processor(str(video), return_metadata=True)
    with torch.no_grad():
        expected = tiny_model.model.get_video_features(decoded["pixel_values_videos"]).last_hidden_state
    config = tiny_model.config
    assert encoded.pooled_features.shape == (len(expected), config.video_pool_size**2, config.vision_config.hidden_size)
    torch.testing.assert_close(encoded.pooled_features, expected)
    assert encoded.metadata.timestamps == decoded["video_metadata"][0].timestamps
    assert encoded.metadata.duration == decoded["video_metadata"][0].duration
    fingerprint = vision_fingerprint(tiny_model)
    assert fingerprint == vision_fingerprint(tiny_model.model)
    with torch.no_grad():
        tiny_model.model.vision_tower.encoder.layers[0].mlp.fc1.weight[0, 0] += 1
    assert vision_fingerprint(tiny_model) != fingerprint
    assert vision_fingerprint(tiny_model, {"fps": 2}) != vision_fingerprint(tiny_model)


# ----------------------------------------------------------------------------------------------------------------
# `hour-llava extract-features`, killed halfway and resumed
# ----------------------------------------------------------------------------------------------------------------
def run_cli(*args, timeout=120, wait=True):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "hour_llava.cli", "extract-features", *args]
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"the extraction exited early:\n{process.stdout.read()}")
        time.sleep(0.05)
    pytest.fail("timed out")


def test_extract_features_resumes_after_being_killed(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "model")
    videos = tmp_path / "videos"
    for index in range(6):
        write_video(videos / "src" / f"clip{index}.mp4", seconds=2 + index % 2, seed=index)
    # clip3 is a named pipe: opening it blocks, so the run is stuck after clip0-2 (keys are done in sorted order)
    blocking = videos / "src" / "clip3.mp4"
    blocking.unlink()
    os.mkfifo(blocking)
    samples = [instruction_sample(f"s{i}", f"clip{i}.mp4", [("q", "a")]) for i in range(6)]
    data = write_json(tmp_path / "data.json", samples)
    cache = tmp_path / "cache"
    arguments = ["--model", str(checkpoint), "--output-dir", str(cache), "--data-files", str(data)]
    arguments += ["--video-root", str(videos)]

    process = run_cli(*arguments, wait=False)
    done = [feature_cache_path(cache, f"src/clip{i}.mp4") for i in range(3)]
    try:
        wait_for(lambda: all(path.exists() for path in done), timeout=90, process=process)
        time.sleep(0.3)
    finally:
        process.kill()
        process.wait()
    assert sorted(path.name for path in (cache / "src").iterdir() if not path.name.startswith(".")) == [
        path.name for path in done
    ]
    finished = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in done}

    blocking.unlink()
    write_video(blocking, seconds=3, seed=3)
    result = run_cli(*arguments)
    assert result.returncode == 0, result.stderr
    assert "wrote 3, kept 3 complete file(s), 0 video(s) failed" in result.stdout
    assert sorted(os.listdir(cache / "src")) == [f"clip{i}.mp4.safetensors" for i in range(6)]
    assert all(is_complete_cache_file(feature_cache_path(cache, f"src/clip{i}.mp4")) for i in range(6))
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in done} == finished  # not recomputed


def test_extract_features_fails_when_there_is_nothing_to_do_or_everything_failed(tmp_path, capsys):
    from hour_llava.cli import main

    checkpoint = save_tiny_checkpoint(tmp_path / "model")
    base = ["extract-features", "--model", str(checkpoint), "--output-dir", str(tmp_path / "cache")]
    assert main([*base, "--video-root", str(tmp_path / "vidoes")]) == 1  # a typo
    assert "--video-root" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*base, "--video-root", str(tmp_path / "empty")]) == 1
    assert "holds no videos" in capsys.readouterr().err

    (tmp_path / "videos" / "src").mkdir(parents=True)
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "videos" / "src" / name).write_bytes(os.urandom(2048))
    assert main([*base, "--video-root", str(tmp_path / "videos")]) == 1
    captured = capsys.readouterr()
    assert "every one of the 2 video(s) of shard 1 failed" in captured.err
    assert "failed: src/a.mp4" in captured.out and "failed: src/b.mp4" in captured.out

    write_video(tmp_path / "videos" / "src" / "c.mp4", seconds=2)
    assert main([*base, "--video-root", str(tmp_path / "videos")]) == 0  # some failed, one written: the skip policy
    assert "wrote 1" in capsys.readouterr().out

    assert main([*base[:2], "not a repo!", *base[3:], "--video-root", str(tmp_path / "videos")]) == 1
    error = capsys.readouterr().err
    assert "not a Hub id" in error and len(error.strip().splitlines()) == 1
