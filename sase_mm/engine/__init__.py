"""The mmengine machinery of SASE (arXiv 2411.08333): the DARTS loop, its
optimizer constructor and genotype hook, and the checkpoint hook whose
writes lose nothing. Their figures are drawn by ``visualization/``."""
from .checkpoint_hook import SafeCheckpointHook
from .cpu_amp import CPUAmpOptimWrapper  # --amp without a GPU
from .darts_loop import DARTSLoop
from .genotype_hook import GenotypeHook, alpha_table
from .optim_constructor import DARTSOptimWrapperConstructor

__all__ = ['CPUAmpOptimWrapper', 'DARTSLoop', 'DARTSOptimWrapperConstructor',
           'GenotypeHook', 'SafeCheckpointHook', 'alpha_table']
