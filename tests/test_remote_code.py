"""Saved checkpoints load with `trust_remote_code=True` in a process where hour_llava is not installed."""

import json

import torch

from remote_code import run_without_hour_llava


def test_saved_model_loads_as_remote_code_without_the_package(tmp_path, tokenizer, tiny_model):
    checkpoint = tmp_path / "checkpoint"
    tiny_model.save_pretrained(checkpoint)
    auto_map = json.loads((checkpoint / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForImageTextToText", "AutoModelForMultimodalLM"}
    for name in ("configuration_hour_llava.py", "modeling_hour_llava.py", "memory.py", "memory_augmentation.py"):
        assert (checkpoint / name).exists(), name

    num_frames = 20
    ids = [tiny_model.config.video_token_id] * tiny_model.config.num_video_tokens(num_frames)
    ids += tokenizer(" What is it?")["input_ids"]
    pixels = torch.randn(num_frames, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save({"input_ids": torch.tensor([ids]), "pixel_values_videos": pixels}, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = tiny_model(input_ids=torch.tensor([ids]), pixel_values_videos=pixels).logits
    torch.save(expected, tmp_path / "expected.pt")

    result = run_without_hour_llava(
        """
        import torch
        from transformers import AutoModel, AutoModelForImageTextToText, AutoModelForMultimodalLM
        inputs = torch.load("inputs.pt")
        model = AutoModelForImageTextToText.from_pretrained("checkpoint", trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert type(model).__name__ == "HourLlavaForConditionalGeneration"
        with torch.no_grad():
            logits = model(**inputs).logits
        torch.testing.assert_close(logits, torch.load("expected.pt"))
        generated = model.generate(**inputs, max_new_tokens=2, do_sample=False)
        assert generated.shape[1] == inputs["input_ids"].shape[1] + 2
        assert type(AutoModel.from_pretrained("checkpoint", trust_remote_code=True)).__name__ == "HourLlavaModel"
        multimodal = AutoModelForMultimodalLM.from_pretrained("checkpoint", trust_remote_code=True)
        assert type(multimodal).__name__ == "HourLlavaForConditionalGeneration"
        print("remote code ok")
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code ok" in result.stdout
