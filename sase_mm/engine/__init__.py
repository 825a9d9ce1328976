"""The DARTS search machinery of SASE (arXiv 2411.08333): loop, optimizer
constructor, genotype hook."""
from .alpha_plots import plot_alpha_heatmap, plot_alpha_history
from .darts_loop import DARTSLoop
from .genotype_hook import GenotypeHook, alpha_table
from .optim_constructor import DARTSOptimWrapperConstructor

__all__ = ['DARTSLoop', 'DARTSOptimWrapperConstructor', 'GenotypeHook',
           'alpha_table', 'plot_alpha_heatmap', 'plot_alpha_history']
