"""Suite-wide set-up: one torch thread and the same random state per test.

One intra-op thread: on a small shared CPU, idle OpenMP workers spinning
make small-shape tests several times slower than a single thread.
"""
import random

import numpy as np
import pytest
import torch

import sase_mm  # noqa: F401  (registers sase_mm's modules and allow-lists)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def _drop_new_scopes(before):
    from mmengine.registry import DefaultScope
    for name in set(DefaultScope._instance_dict) - before:
        del DefaultScope._instance_dict[name]


@pytest.fixture(autouse=True, scope='module')
def _restore_default_scope_per_module():
    """The same for module-scoped fixtures (they run outside the per-test
    reset below): a Runner built by one must not leave its scope current
    for the next test module."""
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    _drop_new_scopes(before)


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Tools, Runners and model builds set mmengine's global default scope
    (mmdet / mmpretrain / sase_mm); drop the scopes a test adds so the next
    test starts from the state it would have alone."""
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    _drop_new_scopes(before)
