"""The attention zoo: the modules SASE is compared with, as plug-ins.

Each module follows the plug-in contract of :class:`~sase_mm.models.SASE`:
``Module(in_channels, **options)`` with its paper's defaults, an ``_abbr_``
for mmcv's plugin naming, and (B, C, H, W) -> (B, C, H, W). Registered in
sase_mm's MODELS under the names in :data:`ZOO`, e.g.
``dict(type='sase_mm.ECA')``. Each module's docstring names its paper.
In a float16 / bfloat16 model each forward runs in float32, on float32
casts of the module's state, and returns its input's dtype; under autocast
it runs as autocast runs it (``layers/precision.half_in_float32``).
"""
from .cbam import CBAM
from .ean import EAN
from .eca import ECA, eca_kernel_size
from .gated_ct import GatedCT
from .gct import GCT
from .gsop import GSoP
from .mca import MCA
from .se import SE
from .srm import SRM
from .ssa import SSA

#: Registered names of the zoo, in the order of the documentation's table:
#: the modules of the SASE paper's comparisons, then GatedCT (GCT-Net).
ZOO = ('SE', 'SSA', 'ECA', 'CBAM', 'SRM', 'GCT', 'GSoP', 'MCA', 'EAN',
       'GatedCT')

__all__ = ['CBAM', 'EAN', 'ECA', 'GCT', 'GatedCT', 'GSoP', 'MCA', 'SE', 'SRM',
           'SSA', 'ZOO', 'eca_kernel_size']
