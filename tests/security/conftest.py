"""Fixtures of the security tests: the crafted files, each with the marker
it would write if anything executed it (sase_mm, SASE arXiv 2411.08333)."""
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from data_utils import payloads  # noqa: E402


class Payload:
    """A crafted file and its marker (which must never exist)."""

    def __init__(self, path: str, marker: str):
        self.path, self.marker = path, marker

    def ran(self) -> bool:
        return osp.exists(self.marker)


@pytest.fixture(params=sorted(payloads.CHECKPOINT_PAYLOADS))
def checkpoint_payload(request, tmp_path):
    """Each crafted checkpoint in turn."""
    marker = str(tmp_path / f'{request.param}.ran')
    path = str(tmp_path / f'{request.param}.pth')
    payloads.CHECKPOINT_PAYLOADS[request.param](path, marker)
    return Payload(path, marker)


@pytest.fixture
def chain_payload(tmp_path):
    """The getattr -> eval chain built from allow-listed globals only."""
    marker = str(tmp_path / 'chain.ran')
    path = payloads.getattr_chain_checkpoint(str(tmp_path / 'chain.pth'),
                                             marker)
    return Payload(path, marker)
