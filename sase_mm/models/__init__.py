"""sase_mm's models (SASE, arXiv 2411.08333).

* ``layers/``: the shared bottom (statistics, squeeze and excitation
  operations, sizes, argument checks, the attention builder); torch only.
* ``sase/``: the SASE search space and its blocks (``fast/``: every
  optimised restatement of its maths); torch only.
* ``attention_zoo/``: the attention modules SASE is compared with; torch
  only (they use ``layers/`` alone).
* ``backbones/``: SASEResNet (mmpretrain's ResNet) and the CIFAR ResNet,
  with an attention slot in every residual block.
* ``search/``: the DARTS search model and its architect.
* ``utils/``: architecture-agnostic attention insertion.
* ``classifiers.py``: a network returning logits as an mmengine model
  (``LogitsClassifier``; the loss and predictions of logits, shared with
  the search model).

Submodules are imported on first use, so ``from sase_mm.models.sase import
SASE`` does not import mmpretrain.
"""
import importlib

_SUBPACKAGES = ('attention_zoo', 'backbones', 'layers', 'sase', 'search',
                'utils')


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f'{__name__}.{name}')
    sase = importlib.import_module(f'{__name__}.sase')
    if name in sase.__all__:  # ``from sase_mm.models import SASE``
        return getattr(sase, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
