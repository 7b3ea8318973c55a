"""Model card metadata for the Hub: every card we write says `pipeline_tag: video-text-to-text`.

Neither `PreTrainedModel.push_to_hub` nor TRL's trainer card sets a pipeline tag, and `Trainer.push_to_hub`
regenerates README.md, so the metadata is (re)applied here after any card is written.
"""

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData


PIPELINE_TAG = "video-text-to-text"
LIBRARY_NAME = "transformers"
TAGS = ("hour-llava", "video-text-to-text", "long-video-understanding")


def apply_card_metadata(
    readme: str | Path, base_model: str | None = None, datasets: str | list[str] | None = None
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
