"""Placeholder main job (replaced by the search demo): SASE in a ResNet-50."""
import torch
from mmpretrain.models import ResNet  # noqa: F401  (checks the stack imports)

import sase_mm  # noqa: F401
from sase_mm.models.attention import SASE, SASESearch


def main():
    torch.manual_seed(0)
    x = torch.randn(2, 256, 14, 14)
    block = SASE(256)
    print(block)
    print('SASE output', tuple(block(x).shape))
    search = SASESearch(256, spatial_size=14)
    print('SASESearch output', tuple(search(x).shape), 'genotype',
          search.genotype())


if __name__ == '__main__':
    main()
