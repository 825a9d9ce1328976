"""Suite-wide fixtures: every test starts from the same random state."""
import random

import numpy as np
import pytest
import torch

import sase_mm  # noqa: F401  (registers sase_mm's modules and allow-lists)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
