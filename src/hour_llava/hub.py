"""Model cards and Hub uploads: every card we write says `pipeline_tag: video-text-to-text`.

Neither `PreTrainedModel.push_to_hub` nor TRL's trainer card sets a pipeline tag, and `Trainer.push_to_hub`
regenerates README.md, so the metadata is (re)applied here after any card is written. `push_to_hub` below uploads a
model, its processor, the pipeline code and our card in one commit, which also deletes the repo's weight files that
the new save does not contain (a single `model.safetensors` left next to new shards would be loaded instead of them).
"""

import os
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard, ModelCardData
from huggingface_hub.constants import DEFAULT_REVISION
from huggingface_hub.utils import filter_repo_objects


PIPELINE_TAG = "video-text-to-text"
LIBRARY_NAME = "transformers"
TAGS = ("hour-llava", "video-text-to-text", "long-video-understanding")
PAPER_URL = "https://arxiv.org/abs/2506.05332"
# Weight files of a transformers checkpoint (as `upload_folder`'s `delete_patterns`): those of the repo that a new
# upload does not contain are deleted in the same commit.
WEIGHT_FILE_PATTERNS = [
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*-of-*.bin",
    "pytorch_model.bin.index.json",
]


def apply_card_metadata(
    readme: str | Path, base_model: str | list[str] | None = None, datasets: str | list[str] | None = None
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
        data.datasets = sorted(set(_as_list(data.datasets)) | set(_as_list(datasets)))
    card.save(readme)
    return card


def _as_list(value: str | list[str] | None) -> list[str]:
    """Card fields such as `datasets` may hold one string (TRL writes one) or a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def usage_snippet(model_id: str, remote_code: bool) -> str:
    """Python that answers a question about `video.mp4` with `model_id` (tests run it as written).

    With `remote_code` (a checkpoint that carries the pipeline's code, as `push_to_hub` uploads it) it needs no
    hour-llava package; otherwise `import hour_llava` registers the pipeline.
    """
    if remote_code:
        header = "from transformers import pipeline\n\n"
        load = f'pipe = pipeline("video-text-to-text", model="{model_id}", trust_remote_code=True)\n'
    else:
        header = "import hour_llava  # registers the video-text-to-text pipeline\nfrom transformers import pipeline\n\n"
        load = f'pipe = pipeline("video-text-to-text", model="{model_id}")\n'
    return (
        header
        + load
        + 'answer = pipe("video.mp4", "What happens in this video?", max_new_tokens=64)\n'
        + 'print(answer[0]["generated_text"])\n'
    )


def card_text(model_id: str, remote_code: bool) -> str:
    """The body of our model card: what the model is and how to run it."""
    name = model_id.rstrip("/").split("/")[-1]
    if remote_code:
        requirements = (
            "The checkpoint carries the code of its model, processor and pipeline, so this needs only transformers, "
            "PyAV and torchvision; with the `hour-llava` package installed it runs the same way."
        )
    else:
        requirements = "This needs the `hour-llava` package (`pip install hour-llava`)."
    return f"""
# {name}

[Hour-LLaVA]({PAPER_URL}) answers questions about hour-long videos. Every 1-FPS frame is kept in a *memory
repository*; the language model sees a decayed subset of those tokens, refined by a memory-augmentation module
(MemAug) that attends back into the full memory.

## Usage

```python
{usage_snippet(model_id, remote_code)}```

{requirements} Asking several questions about one video decodes it and runs the vision tower once: the pipeline
caches the video's pooled features.

From the command line (with `hour-llava` installed): `hour-llava ask video.mp4 "What happens?" --model {model_id}`.
"""


def write_model_card(
    directory: str | os.PathLike,
    model_id: str | None = None,
    base_model: str | list[str] | None = None,
    datasets: list[str] | None = None,
    remote_code: bool = False,
) -> ModelCard:
    """Write README.md in `directory`: description and usage for `model_id` (default: the directory), metadata.

    `remote_code` says whether the directory carries the pipeline's code (`save_for_hub`), which decides the
    usage snippet.
    """
    readme = Path(directory) / "README.md"
    body = card_text(model_id or str(directory), remote_code)
    ModelCard(f"---\nlibrary_name: {LIBRARY_NAME}\n---\n{body}").save(readme)
    return apply_card_metadata(readme, base_model=base_model, datasets=datasets)


def default_card_metadata(model, repo_id: str) -> dict:
    """`base_model` and `datasets` for a model's card when the caller gives none.

    From a local checkpoint: what its card records (a conversion writes them). From a Hub checkpoint other than
    `repo_id`: that checkpoint is the base model (e.g. a fine-tune of a converted release).
    """
    source = str(getattr(model, "name_or_path", "") or "")
    readme = Path(source) / "README.md"
    if source and readme.is_file():
        data = ModelCard.load(readme).data
        return {key: value for key in ("base_model", "datasets") if (value := getattr(data, key, None))}
    if source.count("/") == 1 and not Path(source).exists() and source != repo_id:
        return {"base_model": source}
    return {}


def save_for_hub(directory: str | os.PathLike, model, processor, max_shard_size: str | int = "5GB") -> None:
    """Save `model`, `processor` and the pipeline's code, so all three also load with `trust_remote_code=True`."""
    from .pipelines import save_pipeline

    save_pipeline(directory, model, processor, max_shard_size=max_shard_size)


def stale_weight_deletions(api: HfApi, repo_id: str, revision: str | None, uploaded: set[str]) -> list:
    """Delete operations for the repo's weight files (`WEIGHT_FILE_PATTERNS`) that the upload does not replace."""
    remote = api.list_repo_files(repo_id, revision=revision)
    stale = filter_repo_objects(remote, allow_patterns=WEIGHT_FILE_PATTERNS)
    return [CommitOperationDelete(path_in_repo=path) for path in stale if path not in uploaded]


def push_to_hub(
    repo_id: str,
    model,
    processor,
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

    The same commit deletes the weight files of the repo that this save does not contain (say, `model.safetensors`
    after a sharded save), so the repo never holds two versions of the weights.

    `model.push_to_hub` alone would write transformers' generic card (no pipeline tag, no usage) and leave the
    processor out. `base_model`/`datasets` default to what the card of the model's local checkpoint records.
    """
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    recorded = default_card_metadata(model, repo_id)
    with tempfile.TemporaryDirectory() as staging:
        save_for_hub(staging, model, processor, max_shard_size=max_shard_size)
        write_model_card(
            staging,
            repo_id,
            base_model or recorded.get("base_model"),
            datasets or recorded.get("datasets"),
            remote_code=True,
        )
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(staging).as_posix(), path_or_fileobj=str(path))
            for path in sorted(Path(staging).rglob("*"))
            if path.is_file()
        ]
        # A pull request is opened against the default branch: its files are the ones the PR would leave behind.
        listed_revision = DEFAULT_REVISION if create_pr else revision
        operations += stale_weight_deletions(api, repo_id, listed_revision, {op.path_in_repo for op in operations})
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )
