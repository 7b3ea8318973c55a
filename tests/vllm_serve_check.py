"""Run in the vLLM environment: `vllm serve` an Hour-LLaVA checkpoint on 127.0.0.1 and talk to it like a client.

Usage: `python tests/vllm_serve_check.py CHECKPOINT VIDEO CORRUPT_VIDEO`. Starts the OpenAI-compatible server, asks a
question about VIDEO (a local file, sent as a `video_url`), then about CORRUPT_VIDEO, then about VIDEO again, and
prints one JSON line with each answer's HTTP status and text. The server is stopped in every case; every wait is
bounded.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from hour_llava.vllm.server import VllmServer, video_chat


REQUEST_TIMEOUT_S = 300
QUESTION = "What happens in the video?"


def post_json(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def ask(server: VllmServer, model: str, video: str) -> dict:
    payload = video_chat(model, Path(video).resolve().as_uri(), QUESTION, max_tokens=8)
    status, body = post_json(f"{server.base_url}/v1/chat/completions", payload)
    if status != 200:
        return {"status": status, "error": body.get("error", body)}
    return {
        "status": status,
        "text": body["choices"][0]["message"]["content"],
        "completion_tokens": body["usage"]["completion_tokens"],
        "prompt_tokens": body["usage"]["prompt_tokens"],
    }


def main(checkpoint: str, video: str, corrupt_video: str) -> None:
    media_root = os.path.commonpath([Path(video).resolve().parent, Path(corrupt_video).resolve().parent])
    arguments = [
        "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager",
        "--gpu-memory-utilization", "0.15",  # on a CPU: the share of the machine's memory for the KV cache
        "--limit-mm-per-prompt", json.dumps({"video": {"count": 1, "num_frames": 64}}),
        "--allowed-local-media-path", media_root,
    ]  # fmt: skip
    with VllmServer(checkpoint, *arguments) as server:
        report = {
            "video": ask(server, checkpoint, video),
            "corrupt": ask(server, checkpoint, corrupt_video),
            "after_corrupt": ask(server, checkpoint, video),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
