"""Fixtures of the search-model tests (SASE, arXiv 2411.08333)."""
import pytest
from tiny_supernets import make_batch


@pytest.fixture
def batches():
    return dict(train=make_batch(seed=1), search=make_batch(seed=2))
