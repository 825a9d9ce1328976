"""Datasets for the SASE search (arXiv 2411.08333): CIFAR-10 halves and
scikit-learn's digits."""
from .cifar10 import CIFAR10Search
from .digits import DigitsSearch
from .in_memory import InMemoryClassification
from .split import split_indices

__all__ = ['CIFAR10Search', 'DigitsSearch', 'InMemoryClassification',
           'split_indices']
