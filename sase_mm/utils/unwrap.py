"""The model inside a distributed wrapper, found one way everywhere.

mmengine wraps a model for several processes (``MMDistributedDataParallel``
and the other registered wrappers); the SASE search (arXiv 2411.08333)
calls its own ``train_step`` unwrapped, because it averages its gradients
itself, and the hook, the optimizer constructor and the tools read the
model's alpha and genotype. All of them unwrap through here.
"""


def unwrap_model(model):
    """``model.module`` for an mmengine model wrapper, else ``model``."""
    from mmengine.model import is_model_wrapper
    return model.module if is_model_wrapper(model) else model
