"""Model card metadata: the pipeline tag and our fields survive any card that was written before."""

from huggingface_hub import ModelCard

from hour_llava.hub import apply_card_metadata


def test_metadata_is_added_to_an_existing_card_with_a_string_dataset(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("---\ndatasets: jylins/videomarathon\ntags:\n- trl\n---\n# Trained here\n")
    apply_card_metadata(readme, base_model="Qwen/Qwen2-7B-Instruct", datasets="lmms-lab/LLaVA-Video-178K")
    card = ModelCard.load(readme)
    assert card.data.pipeline_tag == "video-text-to-text"
    assert card.data.library_name == "transformers"
    assert card.data.base_model == "Qwen/Qwen2-7B-Instruct"
    assert card.data.datasets == ["jylins/videomarathon", "lmms-lab/LLaVA-Video-178K"]
    assert {"trl", "hour-llava", "video-text-to-text"} <= set(card.data.tags)
    assert "# Trained here" in card.text


def test_a_missing_card_is_created_with_one_front_matter_block(tmp_path):
    apply_card_metadata(tmp_path / "README.md")
    text = (tmp_path / "README.md").read_text()
    assert text.count("---") == 2 and "pipeline_tag: video-text-to-text" in text


def test_models_carry_tags_that_transformers_and_trl_put_in_their_cards(tiny_model):
    assert {"hour-llava", "video-text-to-text"} <= set(tiny_model.model_tags)
    assert {"hour-llava", "video-text-to-text"} <= set(tiny_model.model.model_tags)
