"""Model cards and Hub uploads: every card we write says `pipeline_tag: video-text-to-text`.

Neither `PreTrainedModel.push_to_hub` nor TRL's trainer card sets a pipeline tag, and `Trainer.push_to_hub`
regenerates README.md, so the metadata is (re)applied here after any card is written. `push_to_hub` below uploads a
model, its processor, the pipeline code and our card in one commit.
"""

import os
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, ModelCardData


PIPELINE_TAG = "video-text-to-text"
LIBRARY_NAME = "transformers"
TAGS = ("hour-llava", "video-text-to-text", "long-video-understanding")
PAPER_URL = "https://arxiv.org/abs/2506.05332"


def apply_card_metadata(
    readme: str | Path, base_model: str | list[str] | None = None, datasets: list[str] | None = None
) -> ModelCard:
    """Load `readme` (or start an empty card), set our pipeline tag, library, tags, base model and datasets; save."""
    readme = Path(readme)
    card = ModelCard.load(readme) if readme.exists() else ModelCard(f"---\nlibrary_name: {LIBRARY_NAME}\n---\n# Hour-LLaVA\n")
    data: ModelCardData = card.data
    data.pipeline_tag = PIPELINE_TAG
    data.library_name = LIBRARY_NAME
    data.tags = sorted(set(data.tags or []) | set(TAGS))
    if base_model:
        data.base_model = base_model
    if datasets:
        data.datasets = sorted(set(data.datasets or []) | set(datasets))
    card.save(readme)
    return card


def usage_snippet(model_id: str) -> str:
    """Python that answers a question about `video.mp4` with the model `model_id` (tests run it as written)."""
    return (
        "import hour_llava  # registers Hour-LLaVA's model, processor and pipeline with transformers\n"
        "from transformers import pipeline\n"
        "\n"
        f'pipe = pipeline("video-text-to-text", model="{model_id}")\n'
        'answer = pipe("video.mp4", "What happens in this video?", max_new_tokens=64)\n'
        'print(answer[0]["generated_text"])\n'
    )


def card_text(model_id: str) -> str:
    """The body of our model card: what the model is and how to run it, with and without the package."""
    name = model_id.rstrip("/").split("/")[-1]
    return f"""
# {name}

[Hour-LLaVA]({PAPER_URL}) answers questions about hour-long videos. Every 1-FPS frame is kept in a *memory
repository*; the language model sees a decayed subset of those tokens, refined by a memory-augmentation module
(MemAug) that attends back into the full memory.

## Usage

```bash
pip install hour-llava
```

```python
{usage_snippet(model_id)}```

Without the `hour-llava` package, the checkpoint's own code can be trusted instead:

```python
from transformers import pipeline

pipe = pipeline("video-text-to-text", model="{model_id}", trust_remote_code=True)
```

From the command line: `hour-llava ask video.mp4 "What happens in this video?" --model {model_id}`.
"""


def write_model_card(
    directory: str | os.PathLike,
    model_id: str | None = None,
    base_model: str | list[str] | None = None,
    datasets: list[str] | None = None,
) -> ModelCard:
    """Write README.md in `directory`: our description and usage for `model_id` (default: the directory) + metadata."""
    readme = Path(directory) / "README.md"
    ModelCard(f"---\nlibrary_name: {LIBRARY_NAME}\n---\n{card_text(model_id or str(directory))}").save(readme)
    return apply_card_metadata(readme, base_model=base_model, datasets=datasets)


def card_metadata_of(checkpoint: str | os.PathLike | None) -> dict:
    """`base_model` and `datasets` from the card of a local checkpoint directory (what a conversion recorded)."""
    readme = Path(checkpoint) / "README.md" if checkpoint else None
    if readme is None or not readme.is_file():
        return {}
    data = ModelCard.load(readme).data
    return {key: value for key in ("base_model", "datasets") if (value := getattr(data, key, None))}


def save_for_hub(directory: str | os.PathLike, model, processor=None, max_shard_size: str | int = "5GB") -> None:
    """Save `model` and `processor` side by side, as one checkpoint directory."""
    model.save_pretrained(directory, max_shard_size=max_shard_size)
    if processor is not None:
        processor.save_pretrained(directory)


def push_to_hub(
    repo_id: str,
    model,
    processor=None,
    *,
    base_model: str | list[str] | None = None,
    datasets: list[str] | None = None,
    commit_message: str = "Upload Hour-LLaVA",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: str | int = "5GB",
):
    """Upload `model`, `processor`, the pipeline code and a model card to `repo_id` in one commit.

    `model.push_to_hub` alone would write transformers' generic card (no pipeline tag, no usage) and leave the
    processor out. `base_model`/`datasets` default to what the card of the model's local checkpoint records.
    """
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    recorded = card_metadata_of(getattr(model, "name_or_path", None))
    with tempfile.TemporaryDirectory() as staging:
        save_for_hub(staging, model, processor, max_shard_size=max_shard_size)
        write_model_card(
            staging, repo_id, base_model or recorded.get("base_model"), datasets or recorded.get("datasets")
        )
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(staging).as_posix(), path_or_fileobj=str(path))
            for path in sorted(Path(staging).rglob("*"))
            if path.is_file()
        ]
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )
