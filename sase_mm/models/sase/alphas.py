"""The architecture weights: one alpha per network, bound after build.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), searched with DARTS (Liu et al., ICLR 2019). The search
finds one block design for the whole network, so every searchable block of
a network reads one (6, 7) alpha (docs/spec.md section 3), which starts as
``1e-3 * N(0, 1)``. This module is its one home: it creates alphas
(:func:`init_alphas`), and it binds one alpha to every holder in a network
(:func:`bind_alphas`), as mmrazor's mutator binds its architecture
parameters to the mutables it finds in a built supernet.

A module that reads or owns the shared alpha is an :class:`AlphaHolder`:

* a searchable block (``SASESearch``) starts with its own alpha, registered
  as its ``alphas`` parameter, so a block built alone searches on it;
* an owner network (``CifarResNet``, ``SASEResNet`` with searchable
  attention) or the search model (``DARTSSearch``) draws its alpha first,
  builds its layers, then calls ``bind_alphas(self, self.alphas)``: every
  holder inside drops its own alpha and keeps an unregistered reference to
  the owner's, so the state_dict has one ``alphas`` key, the owner's. A
  search model around an owner network binds the network too, so the
  outermost owner is the single one.

A network built by someone else (an mmdet ``ResNet`` with ``SASESearch``
plug-ins, where mmcv hands a plug-in nothing but ``in_channels``) has one
alpha per block until it is bound: ``bind_alphas(model)`` shares the first
block's alpha with every other block (key ``<first block>.alphas``).
"""
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn

from .space import NUM_EDGES, NUM_OPS

ALPHA_INIT_STD = 1e-3


def init_alphas(std: float = ALPHA_INIT_STD) -> nn.Parameter:
    """A new (6, 7) alpha, ``std * N(0, 1)`` (1e-3 in the paper)."""
    return nn.Parameter(std * torch.randn(NUM_EDGES, NUM_OPS))


def check_alphas(alphas: torch.Tensor) -> None:
    """Raises ValueError unless ``alphas`` is a (6, 7) tensor."""
    if not isinstance(alphas, torch.Tensor) or \
            tuple(alphas.shape) != (NUM_EDGES, NUM_OPS):
        got = tuple(alphas.shape) if isinstance(alphas, torch.Tensor) \
            else type(alphas).__name__
        raise ValueError(f'alphas must be a ({NUM_EDGES}, {NUM_OPS}) tensor '
                         f'(edges x operations), got {got}')


class AlphaHolder:
    """Mixin for an ``nn.Module`` that owns or reads the shared alpha.

    The module holds at most one alpha: its own, registered as its
    ``alphas`` parameter, or, once bound (:meth:`use_alphas`), an
    unregistered reference to another module's. A holder that mixes
    operations by the alpha (a searchable block) sets ``reads_alphas =
    True``; an owner network leaves it False.
    """
    reads_alphas = False

    @property
    def arch_alphas(self) -> Optional[nn.Parameter]:
        """The (6, 7) alpha this module holds, whoever owns it; None if
        it holds none (e.g. a network without searchable attention)."""
        own = self._parameters.get('alphas')
        if own is not None:
            return own
        ref = self.__dict__.get('_alpha_ref')
        return None if ref is None else ref[0]

    @property
    def owns_alphas(self) -> bool:
        """Whether the alpha is registered here (the ``alphas`` key)."""
        return self._parameters.get('alphas') is not None

    def use_alphas(self, alphas: nn.Parameter) -> None:
        """Reads ``alphas`` from now on: the module's own alpha, if any, is
        unregistered, and ``alphas`` is kept as an unregistered reference
        (its owner registers, moves and saves it)."""
        check_alphas(alphas)
        if self._parameters.get('alphas') is alphas:
            return
        self._parameters.pop('alphas', None)
        # A tuple is not registered by nn.Module.__setattr__.
        self.__dict__['_alpha_ref'] = (alphas, )


def alpha_holders(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """``(name, module)`` of every holder in ``model`` (``model`` included)
    that holds an alpha, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, AlphaHolder) and \
                module.arch_alphas is not None:
            yield name, module


def alpha_readers(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """``(name, module)`` of the searchable blocks in ``model`` (holders
    with ``reads_alphas``), in module order."""
    for name, module in alpha_holders(model):
        if module.reads_alphas:
            yield name, module


def bind_alphas(model: nn.Module,
                alphas: Optional[nn.Parameter] = None
                ) -> Optional[nn.Parameter]:
    """Binds one alpha to every holder in ``model``.

    Args:
        model: a built network (``model`` itself may be a holder).
        alphas: the (6, 7) alpha to share, owned (registered) by the
            caller, e.g. an owner model passing its own ``alphas``. None:
            the first searchable block's own alpha, which stays registered
            there (the plug-ins of an mmdet ``ResNet``).

    Returns:
        The shared alpha, or None when ``model`` holds none (no searchable
        block: nothing to bind).
    """
    holders = list(alpha_holders(model))
    if alphas is None:
        readers = [m for _, m in holders if m.reads_alphas]
        if not readers:
            return None
        alphas = readers[0].arch_alphas
    check_alphas(alphas)
    for _, holder in holders:
        holder.use_alphas(alphas)
    return alphas
