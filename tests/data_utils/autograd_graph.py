"""What autograd recorded: the nodes behind some tensors."""
from typing import List

import torch


def node_names(*tensors: torch.Tensor) -> List[str]:
    """The class name of every autograd node behind ``tensors``, once per
    node (so ``.count(name)`` counts the nodes of a kind)."""
    seen, todo = {}, [t.grad_fn for t in tensors]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = type(node).__name__
            todo += [n for n, _ in node.next_functions]
    return list(seen.values())
