"""Run in the vLLM environment (`.ci/vllm-env.sh`): greedy generation with `vllm.LLM` for a list of requests.

Usage: `python tests/vllm_generate.py requests.json results.json`. `requests.json` holds `model`, `max_tokens`,
`requests` (each a `prompt` with one `<video>` and a `video` path) and `bad_requests` (the same, each expected to be
refused). `results.json` gets, per request, the prompt token ids vLLM built (video placeholder expanded) and the
generated token ids, and per bad request the error message. All requests go to one `generate` call, so they are
batched together. vLLM runs the engine in a spawned process, hence the `__main__` guard.
"""

import json
import sys

# On this CPU-only machine, vLLM reserves this share of the machine's memory for the KV cache.
CPU_MEMORY_SHARE = 0.15
# Profiling normally feeds an hour of video (3600 frames); the tiny test model needs no more than a minute of it.
PROFILE_FRAMES = 64


def main(requests_path: str, results_path: str) -> None:
    from vllm import LLM, SamplingParams

    spec = json.loads(open(requests_path).read())
    llm = LLM(
        model=spec["model"],
        dtype="float32",
        max_model_len=4096,
        gpu_memory_utilization=CPU_MEMORY_SHARE,
        enforce_eager=True,
        limit_mm_per_prompt={"video": {"count": 1, "num_frames": PROFILE_FRAMES}},
        seed=0,
    )
    prompts = [{"prompt": r["prompt"], "multi_modal_data": {"video": r["video"]}} for r in spec["requests"]]
    outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=spec["max_tokens"]))
    results = {
        "answers": [
            {"prompt_token_ids": list(output.prompt_token_ids), "token_ids": list(output.outputs[0].token_ids)}
            for output in outputs
        ],
        "errors": [refusal(llm, request) for request in spec.get("bad_requests", [])],
    }
    with open(results_path, "w") as file:
        json.dump(results, file)


def refusal(llm, request: dict) -> str | None:
    """The error message `generate` raises for `request`, or None when it is (wrongly) answered."""
    from vllm import SamplingParams

    try:
        llm.generate([{"prompt": request["prompt"], "multi_modal_data": {"video": request["video"]}}],
                     SamplingParams(max_tokens=1))
    except Exception as error:  # noqa: BLE001 (the message is what the test checks)
        return f"{type(error).__name__}: {error}"
    return None


if __name__ == "__main__":
    main(*sys.argv[1:3])
