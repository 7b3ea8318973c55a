"""One torch thread for tests of tiny models: import `one_torch_thread` into a test module to apply it there.

Tiny models are made of operations too small to share between threads, and two OpenMP threads on a busy two-core
machine stall each other (a tiny forward pass measured 17x slower with two threads than with one while other jobs
ran). Subprocesses started by tests get `OMP_NUM_THREADS=1` from `single_thread_env` for the same reason.
"""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def single_thread_env(**extra: str) -> dict[str, str]:
    """The current environment for a child Python process with this test's import path and one OpenMP thread."""
    import sys

    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", **extra}
