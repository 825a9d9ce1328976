"""Crafted files for the security tests: each would write a marker file if
anything executed it (sase_mm, SASE arXiv 2411.08333, reads checkpoints,
CIFAR batches and genotype files that users hand it).

Every builder takes the output path and the marker path and returns the
output path. Nothing here loads a payload; the tests do, through sase_mm's
loaders (which must refuse it) and, as a control, through a loader that
trusts it (which must write the marker, proving the payload is real).
"""
import os
import pickle
import shlex
import struct

import numpy as np
import torch


class Call:
    """Pickles as ``func(*args)``: what a crafted ``__reduce__`` does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def marker_code(marker: str) -> str:
    """Python that writes the marker and evaluates to a tensor (so that a
    load which runs it also succeeds)."""
    return f"(open({marker!r}, 'w').write('ran'), torch.zeros(1))[1]"


def system_call(marker: str) -> Call:
    return Call(os.system, f'touch {shlex.quote(marker)}')


def reduce_system_checkpoint(path: str, marker: str) -> str:
    """The classic: an object whose ``__reduce__`` is ``os.system``."""
    torch.save(dict(state_dict={'w': torch.zeros(1)},
                    meta=dict(note=system_call(marker))), path)
    return path


def getattr_chain_checkpoint(path: str, marker: str) -> str:
    """Only allow-listed globals, if ``getattr`` is one: ``getattr(getattr,
    '__self__')`` is the builtins module, its ``eval`` is called by torch's
    default-allowed ``_rebuild_from_type_v2(func, type, args, state)``."""
    builtins_module = Call(getattr, getattr, '__self__')
    eval_fn = Call(getattr, builtins_module, 'eval')
    tensor = Call(torch._tensor._rebuild_from_type_v2, eval_fn, torch.Tensor,
                  (marker_code(marker), ), {})
    torch.save(dict(state_dict={'w': tensor}, meta={}), path)
    return path


def numpy_object_array_checkpoint(path: str, marker: str) -> str:
    """A numpy object array whose element is a payload."""
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = system_call(marker), 1
    torch.save(dict(state_dict={'w': torch.zeros(1)}, meta=dict(arr=arr)),
               path)
    return path


CHECKPOINT_PAYLOADS = {
    'reduce_system': reduce_system_checkpoint,
    'getattr_eval_chain': getattr_chain_checkpoint,
    'numpy_object_array': numpy_object_array_checkpoint,
}


# ---------------------------------------------------------------- CIFAR-10
class _Py2Pickler(pickle._Pickler):
    """Writes protocol 2 as Python 2's cPickle did for the official
    ``cifar-10-batches-py``: str and bytes as 8-bit strings (``BINSTRING``),
    numpy 1's module path for ``_reconstruct``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode('latin1') if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj, name=None):
        core = getattr(np, '_core', None) or np.core
        if obj is core.multiarray._reconstruct:
            self.write(pickle.GLOBAL + b'numpy.core.multiarray\n'
                       b'_reconstruct\n')
            self.memoize(obj)
            return
        super().save_global(obj, name)


def cifar_entry(n: int, seed: int = 0, label_key: str = 'labels') -> dict:
    rng = np.random.default_rng(seed)
    return {'batch_label': f'batch {seed}',
            label_key: [int(v) for v in rng.integers(0, 10, n)],
            'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            'filenames': [f'img_{seed}_{i}.png' for i in range(n)]}


def write_cifar_batch(path: str, entry: dict, style: str = 'py2') -> str:
    """One batch file: ``style='py2'`` as the official files, ``'py3'`` as
    Python 3's ``pickle.dump(protocol=2)`` re-pickling writes it."""
    with open(path, 'wb') as f:
        if style == 'py2':
            _Py2Pickler(f, protocol=2).dump(entry)
        else:
            pickle.dump(entry, f, protocol=2)
    return path


def write_cifar_root(root: str, n: int = 4, style: str = 'py2',
                     crafted_marker: str = None) -> str:
    """``root/cifar-10-batches-py`` with 5 train batches and a test batch
    of ``n`` images each; with ``crafted_marker``, ``data_batch_1`` also
    holds a payload."""
    base = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(base, exist_ok=True)
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for i, name in enumerate(names):
        entry = cifar_entry(n, seed=i)
        if crafted_marker is not None and name == 'data_batch_1':
            entry['filenames'] = [system_call(crafted_marker)]
        write_cifar_batch(os.path.join(base, name), entry, style)
    return base


# ---------------------------------------------------------------- genotype
def code_genotype_py(path: str, marker: str) -> str:
    """A genotype config fragment that also runs a command."""
    with open(path, 'w') as f:
        f.write("genotype = ['gap_gmp', 'fc', 'affine', 'l4_pool', 'gap', "
                "'conv_3x3_x2']\n"
                f"_ = __import__('os').system('touch {marker}')\n")
    return path
