"""The pre-redesign import paths of sase_mm (SASE, arXiv 2411.08333) keep
working for one release and give the same objects as the new ones."""
import importlib

import pytest


@pytest.mark.parametrize('old,new,names', [
    ('sase_mm.models.attention', 'sase_mm.models.sase',
     ['SASE', 'SASESearch', 'Genotype', 'EDGES', 'OP_SETS', 'init_alphas']),
    ('sase_mm.models.attention.op_sets', 'sase_mm.models.sase.space',
     ['EDGES', 'OP_SETS', 'OpSet', 'CHANNEL_SQUEEZE']),
    ('sase_mm.models.attention.genotype', 'sase_mm.models.sase.genotype',
     ['Genotype', 'SASE_PAPER_GENOTYPE']),
    ('sase_mm.models.attention.sase_block', 'sase_mm.models.sase.block',
     ['SASE']),
    ('sase_mm.models.attention.search_block', 'sase_mm.models.sase.supernet',
     ['SASESearch', 'MixedOp']),
    ('sase_mm.models.attention.arch_params', 'sase_mm.models.sase.supernet',
     ['init_alphas', 'ALPHA_INIT_STD']),
    ('sase_mm.models.attention.fused', 'sase_mm.models.sase.fast.fused',
     ['FUSABLE', 'fusable', 'fused_sase']),
    ('sase_mm.models.attention.stats', 'sase_mm.models.layers.statistics',
     ['FeatureStats', 'safe_sqrt']),
    ('sase_mm.models.attention.operations', 'sase_mm.models.layers',
     ['MeanPool', 'PairPool', 'Conv1dChain', 'SpatialConv',
      'adaptive_avg_pool']),
    ('sase_mm.models.utils.arg_checks', 'sase_mm.models.layers.arg_checks',
     ['check_int', 'check_choice']),
    ('sase_mm.models.backbones.attention_slot', 'sase_mm.models.layers.builder',
     ['build_attention', 'attention_class', 'DEFAULT_ATTN_CFG']),
    ('sase_mm.ops', 'sase_mm.models.sase.fast.kernels', ['fused_kernels']),
])
def test_old_path_gives_the_new_objects(old, new, names):
    old_mod, new_mod = importlib.import_module(old), importlib.import_module(
        new)
    for name in names:
        assert getattr(old_mod, name) is getattr(new_mod, name), name


def test_old_names_of_renamed_things():
    from sase_mm.models.attention import operations
    from sase_mm.models.backbones import attention_slot
    from sase_mm.models.layers import C_DIMS, HW_DIMS, builder
    assert operations.HW == HW_DIMS and operations.C == C_DIMS
    assert attention_slot.takes_alphas is builder.is_searchable
