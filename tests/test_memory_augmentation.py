"""MemAug against a plain einsum implementation of the reference block math, for eager and sdpa."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hour_llava import HourLlavaConfig
from hour_llava.modeling.memory_augmentation import HourLlavaMemoryAugmentation
from reference_memaug import reference_memaug


# our module names -> the authors' (`vision_resampler.` prefix stripped), written out independently of the converter
TO_AUTHORS_NAMES = {
    "self_attn.qkv_proj": "self_attn.Wqkv",
    "self_attn.o_proj": "self_attn.Wo",
    "cross_attn.q_proj": "cross_attn.Wq",
    "cross_attn.kv_proj": "cross_attn.Wkv",
    "cross_attn.o_proj": "cross_attn.Wo",
    "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.2",
    "self_attn_layer_norm": "norm1",
    "cross_attn_layer_norm": "norm2",
    "final_layer_norm": "norm3",
}


def authors_weights(module: HourLlavaMemoryAugmentation) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, tensor in module.state_dict().items():
        layer, index, rest = key.split(".", 2)
        name, kind = rest.rsplit(".", 1)
        renamed[f"{layer}.{index}.{TO_AUTHORS_NAMES[name]}.{kind}"] = tensor
    return renamed


def memaug_config(attn_implementation: str, **overrides) -> HourLlavaConfig:
    values = {
        "text_config": {"hidden_size": 48, "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 32},
        "vision_config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32,
                          "patch_size": 4, "intermediate_size": 32},
        "video_pool_size": 4,
        "spatial_keep_tokens": 4,
        "memaug_depth": 2,
        "memaug_rope_theta": 500.0,
        **overrides,
    }
    config = HourLlavaConfig(**values)
    config._attn_implementation = attn_implementation
    return config


def randomised_memaug(config: HourLlavaConfig, seed: int = 0) -> HourLlavaMemoryAugmentation:
    """MemAug with every weight random (non-trivial norms and biases), so a wrong formula cannot pass."""
    generator = torch.Generator().manual_seed(seed)
    module = HourLlavaMemoryAugmentation(config)
    with torch.no_grad():
        for name, param in module.named_parameters():
            scale = 0.3 if name.endswith("weight") else 0.1
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
            if "layer_norm.weight" in name:
                param.add_(1.0)
    return module.eval()


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_memaug_matches_einsum_reference(attn_implementation):
    config = memaug_config(attn_implementation)
    module = randomised_memaug(config)
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(1, 23, 48, generator=generator)
    memory = torch.randn(1, 130, 48, generator=generator)
    # sparse, strictly increasing query ids and a memory numbered from 0, as in the reference
    query_pos = torch.cat([torch.arange(5), torch.arange(5, 5 + 3 * 13, 3)[:13], torch.arange(500, 505)])
    memory_pos = torch.arange(130)

    expected = reference_memaug(
        authors_weights(module), config.memaug_depth, config.memaug_num_attention_heads,
        config.memaug_num_key_value_heads, config.memaug_rope_theta, query[0], memory[0], query_pos, memory_pos,
    )
    with torch.no_grad():
        ours_fp32 = module(query, memory, query_pos[None], memory_pos[None]).last_hidden_state[0]
        ours_fp64 = module.double()(query.double(), memory.double(), query_pos[None], memory_pos[None])
        ours_fp64 = ours_fp64.last_hidden_state[0]
    torch.testing.assert_close(ours_fp64, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_fp32.double(), expected, atol=1e-4, rtol=1e-4)  # float32 rounding only


def test_rotary_covers_only_the_first_half_of_each_head():
    """Shifting every position by the same amount changes nothing (relative rotary), but the unrotated half of
    the key makes absolute shifts of keys alone visible: this checks the geometry, not just the output."""
    config = memaug_config("eager")
    module = randomised_memaug(config)
    attention_layer = module.layers[0].cross_attn
    generator = torch.Generator().manual_seed(2)
    x, memory = torch.randn(1, 4, 48, generator=generator), torch.randn(1, 9, 48, generator=generator)
    q_pos, k_pos = torch.arange(4)[None], torch.arange(9)[None]

    def run(q_shift, k_shift):
        q_emb = module.rotary_emb(q_pos + q_shift, torch.float32)
        k_emb = module.rotary_emb(k_pos + k_shift, torch.float32)
        with torch.no_grad():
            return attention_layer(x, memory, q_emb, k_emb)[0]

    torch.testing.assert_close(run(0, 0), run(1000, 1000), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(run(0, 0), run(0, 7), atol=1e-3)
    cos, sin = module.rotary_emb(torch.arange(3)[None], torch.float32)
    assert cos.shape[-1] == config.memaug_head_dim // 2


def test_memaug_parameter_shapes_follow_the_reference():
    config = HourLlavaConfig(text_config={"hidden_size": 2048, "num_attention_heads": 16, "num_key_value_heads": 2,
                                          "num_hidden_layers": 1, "vocab_size": 8, "intermediate_size": 8},
                             vision_config={"num_hidden_layers": 1})
    with torch.device("meta"):
        module = HourLlavaMemoryAugmentation(config)
    layer = module.layers[0]
    assert layer.self_attn.qkv_proj.weight.shape == (2560, 2048)
    assert layer.cross_attn.kv_proj.weight.shape == (512, 2048)
    assert layer.cross_attn.q_proj.weight.shape == (2048, 2048)
    assert layer.mlp.fc1.weight.shape == (8192, 2048)
    assert config.memaug_rotary_dim == 64
    # the reference's count for Qwen2.5-3B, depth 4: 52,460,544 per block
    assert sum(p.numel() for p in layer.parameters()) == 52_460_544
    assert sum(p.numel() for p in module.parameters()) == 209_842_176


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("requires_grad", [False, True])
def test_sdpa_never_builds_the_query_by_memory_score_matrix(requires_grad):
    config = memaug_config("sdpa", memaug_depth=1)
    module = randomised_memaug(config)
    query_len, memory_len = 64, 20_000
    query = torch.randn(1, query_len, 48, requires_grad=requires_grad)
    memory = torch.randn(1, memory_len, 48)
    positions = torch.arange(query_len)[None], torch.arange(memory_len)[None]
    watcher = LargestTensor()
    with watcher, torch.set_grad_enabled(requires_grad):
        out = module(query, memory, *positions).last_hidden_state
        if requires_grad:
            out.sum().backward()
    assert watcher.largest < query_len * memory_len  # one head's score matrix alone would be this big

    config._attn_implementation = "eager"  # the check itself can fail: eager does build it
    eager_watcher = LargestTensor()
    with eager_watcher, torch.no_grad():
        module(query, memory, *positions)
    assert eager_watcher.largest >= query_len * memory_len
