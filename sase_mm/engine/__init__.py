"""The mmengine machinery of SASE (arXiv 2411.08333): the DARTS loop, its
optimizer constructor and genotype hook, and the checkpoint hook whose
writes lose nothing."""
from .alpha_plots import plot_alpha_heatmap, plot_alpha_history
from .checkpoint_hook import SafeCheckpointHook
from .cpu_amp import CPUAmpOptimWrapper  # issue 10: --amp on CPU
from .darts_loop import DARTSLoop
from .genotype_hook import GenotypeHook, alpha_table
from .optim_constructor import DARTSOptimWrapperConstructor

__all__ = ['CPUAmpOptimWrapper', 'DARTSLoop', 'DARTSOptimWrapperConstructor', 'GenotypeHook',
           'SafeCheckpointHook', 'alpha_table', 'plot_alpha_heatmap',
           'plot_alpha_history']
