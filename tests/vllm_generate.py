"""Run in the vLLM environment (`.ci/vllm-env.sh`): greedy generation with `vllm.LLM` for a list of requests.

Usage: `python tests/vllm_generate.py requests.json results.json`. `requests.json` holds `model`, `max_tokens` and
`requests` (each a `prompt` with one `<video>` and a `video` path); `results.json` gets, per request, the prompt token
ids vLLM built (video placeholder expanded) and the generated token ids. All requests go to one `generate` call,
so they are batched together. vLLM runs the engine in a spawned process, hence the `__main__` guard.
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
    results = [
        {"prompt_token_ids": list(output.prompt_token_ids), "token_ids": list(output.outputs[0].token_ids)}
        for output in outputs
    ]
    with open(results_path, "w") as file:
        json.dump(results, file)


if __name__ == "__main__":
    main(*sys.argv[1:3])
