# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""The old name of `examples/sft_hour_llava.py`, which trains on videos, images and text, not only VideoMarathon.

Runs it with the same arguments (`python examples/sft_videomarathon.py ...`, `accelerate launch ...`); imported,
it offers the same `main` and `make_parser`.
"""

import runpy
from pathlib import Path


globals().update(
    runpy.run_path(
        str(Path(__file__).with_name("sft_hour_llava.py")),
        run_name="__main__" if __name__ == "__main__" else "sft_hour_llava",
    )
)
