"""Datasets for the SASE search (arXiv 2411.08333): CIFAR-10 / CIFAR-100
halves, scikit-learn's digits, and the train / search halves of any mm dataset
(``SearchSplit``)."""
from .cifar10 import CIFAR10Search
from .cifar100 import CIFAR100Search
from .digits import DigitsSearch
from .in_memory import InMemoryClassification
from .search_split import SearchSplit
from .split import split_indices

__all__ = ['CIFAR100Search', 'CIFAR10Search', 'DigitsSearch',
           'InMemoryClassification', 'SearchSplit', 'split_indices']
