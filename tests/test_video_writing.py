"""The PyAV writer behind the quickstart, the demo and the benchmarks; and the quickstart itself."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hour_llava.processing.video_decoding import decode_video
from hour_llava.video_writing import write_video


def test_written_video_decodes_to_its_frames(tmp_path):
    levels = [30, 90, 150, 210]
    frames = (np.full((4, 24, 40, 3), 1, dtype=np.uint8) * np.array(levels, dtype=np.uint8)[:, None, None, None])
    path = write_video(tmp_path / "levels.mp4", iter(frames), fps=1)
    decoded, metadata = decode_video(path, size=(24, 40), min_frames=0)
    assert decoded.shape == (4, 24, 40, 3)
    assert [float(t) for t in metadata.timestamps] == [0.0, 1.0, 2.0, 3.0]
    assert np.abs(decoded.mean(axis=(1, 2, 3)) - np.array(levels)).max() < 3
    assert [p.name for p in tmp_path.iterdir()] == ["levels.mp4"]  # no partial file left behind


def test_writing_no_frames_fails_and_leaves_no_video(tmp_path):
    with pytest.raises(ValueError, match="No frames were given to write .*empty.mp4"):
        write_video(tmp_path / "empty.mp4", iter([]))
    assert not (tmp_path / "empty.mp4").exists()


def test_quickstart_runs():
    script = Path(__file__).parents[1] / "examples" / "quickstart.py"
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "decoded frames: 180 at 1 FPS" in result.stdout
    assert "decayed video tokens the LLM sees: 225" in result.stdout
