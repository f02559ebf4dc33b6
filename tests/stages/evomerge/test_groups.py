"""Layer groups: every tensor of a decoder model lands in embeddings, its block's group, or the head.

Run: `python -m pytest tests/stages/evomerge/test_groups.py`.
"""

import pytest

from agent_forge.errors import ForgeError
from agent_forge.stages.evomerge.groups import LayerGrouping, layer_index


def test_group_of_names():
    g = LayerGrouping(num_layers=5, layers_per_group=2)
    assert g.num_groups == 5  # embed, layers 0-1, 2-3, 4, head
    assert g.group_of("model.embed_tokens.weight") == 0
    assert g.group_of("model.layers.0.self_attn.q_proj.weight") == 1
    assert g.group_of("model.layers.3.mlp.down_proj.weight") == 2
    assert g.group_of("model.layers.4.input_layernorm.weight") == 3
    assert g.group_of("model.norm.weight") == g.group_of("lm_head.weight") == 4
    assert g.labels() == ["embed", "layers0-1", "layers2-3", "layer4", "head"]
    assert layer_index("gpt_neox.layers.12.attention.dense.weight") == 12 and layer_index("lm_head.weight") is None


def test_out_of_range_layers_and_bad_settings_are_errors():
    with pytest.raises(ForgeError, match="names layer 3"):
        LayerGrouping(num_layers=2).group_of("model.layers.3.mlp.up_proj.weight")
    with pytest.raises(ForgeError, match="layers_per_group"):
        LayerGrouping(num_layers=2, layers_per_group=0)


def test_split_modules_separates_attention_from_mlp():
    g = LayerGrouping(num_layers=2, split_modules=True)
    assert g.num_groups == 6
    assert g.labels() == ["embed", "layer0.attn", "layer0.mlp", "layer1.attn", "layer1.mlp", "head"]
    assert g.group_of("model.layers.0.self_attn.o_proj.weight") == g.group_of("model.layers.0.input_layernorm.weight") == 1
    assert g.group_of("model.layers.0.mlp.down_proj.weight") == g.group_of("model.layers.0.post_attention_layernorm.weight") == 2
    assert g.group_of("model.layers.1.self_attn.q_proj.weight") == 3 and g.group_of("model.norm.weight") == 5
