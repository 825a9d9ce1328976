"""The genotype: one operation per edge of the SASE block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). A genotype is what a search returns and what the fixed
block is built from. It reads every form a user meets:

* a list of six names, readable (``'gap_gmp'``) or in the reference
  spelling (``'GAP+GMP'``);
* the reference's list of ``(name, edge index)`` pairs;
* a dict keyed by edge name (``channel_squeeze=...``);
* a JSON string or ``.json`` file, or a ``.py`` file whose only statement is
  ``genotype = <literal>`` (what the search writes);

and writes JSON and mmengine config fragments that read back to the same
genotype.

A genotype file is data a user was handed, so it is never executed: the
``.py`` form is parsed with ``ast`` and its value read with
``ast.literal_eval``. (The same file may still be ``_base_``-inherited by a
config, which mmengine executes, as it does every config.) ``None`` means
the paper's genotype only as an argument, never as the content of a file.
"""
import ast
import json
import os
from typing import Iterable, List, Mapping, Sequence, Tuple, Union

import torch

from ...utils.atomic import atomic_write_text
from .space import EDGES, NUM_EDGES, OP_SETS

_EDGE_NAMES = tuple(e.name for e in EDGES)



class GenotypeFileError(ValueError):
    """A genotype file that cannot be read; the message names the file and
    the accepted forms (the tools end with it, without a traceback)."""

class Genotype(tuple):
    """An immutable tuple of six canonical operation names, one per edge.

    Use :meth:`parse` to build one from any accepted form; the constructor
    takes six names (any accepted spelling) and validates them.
    """

    def __new__(cls, ops: Iterable[str]):
        ops = list(ops)
        if len(ops) != NUM_EDGES:
            raise ValueError(
                f'a SASE genotype has {NUM_EDGES} edges (one operation each: '
                f'{", ".join(_EDGE_NAMES)}), got {len(ops)}: {ops!r}')
        names = []
        for i, (edge, op) in enumerate(zip(EDGES, ops)):
            if not isinstance(op, str):
                raise TypeError(f'edge {i} ({edge.name}): operation names are '
                                f'strings, got {op!r}')
            try:
                names.append(edge.op_set.canonical(op))
            except KeyError as err:
                other = [s.name for s in OP_SETS.values() if op in s]
                hint = (f' (it is a {" / ".join(other)} operation)'
                        if other else '')
                raise ValueError(f'edge {i} ({edge.name}, {edge.description})'
                                 f': {err.args[0]}{hint}') from None
        return super().__new__(cls, names)

    # ------------------------------------------------------------------ read
    @classmethod
    def parse(cls, obj) -> 'Genotype':
        """Builds a genotype from any accepted form (see module docstring);
        ``None`` gives the paper's genotype."""
        if obj is None:
            return SASE_PAPER_GENOTYPE
        try:
            return cls._parse(obj, 'the genotype')
        except RecursionError:
            raise ValueError(f'cannot read a genotype: the input is nested '
                             f'too deeply. {ACCEPTED_FORMS}') from None

    @classmethod
    def _parse(cls, obj, where: str) -> 'Genotype':
        if isinstance(obj, Genotype):
            return obj
        if obj is None:
            raise ValueError(f'{where} is null/None. {ACCEPTED_FORMS}')
        if isinstance(obj, str):
            text = obj.strip()
            if text.startswith('[') or text.startswith('{'):
                return cls._parse(_json_loads(text, 'the JSON string'),
                                  'the JSON string')
            if text in GENOTYPES:
                return GENOTYPES[text]
            if os.path.isfile(text):
                return cls.load(text)
            raise ValueError(
                f'cannot read a genotype from {obj!r}: not a named genotype '
                f'({", ".join(GENOTYPES)}), a JSON list/dict, nor an existing '
                f'.json or .py file. {ACCEPTED_FORMS}')
        if isinstance(obj, Mapping):
            if 'genotype' in obj:
                return cls._parse(obj['genotype'], f'{where}[\'genotype\']')
            unknown = set(obj) - set(_EDGE_NAMES)
            missing = set(_EDGE_NAMES) - set(obj)
            if unknown or missing:
                raise ValueError(
                    f'a genotype dict is keyed by edge name '
                    f'{list(_EDGE_NAMES)}; unknown keys: '
                    f'{sorted(map(str, unknown))}, missing: {sorted(missing)}')
            return cls(obj[name] for name in _EDGE_NAMES)
        if isinstance(obj, Sequence):
            items = list(obj)
            if items and all(isinstance(i, (list, tuple)) for i in items):
                return cls.from_pairs(items)
            return cls(items)
        raise TypeError(f'cannot read a genotype from {type(obj).__name__}: '
                        f'{obj!r}. {ACCEPTED_FORMS}')

    @classmethod
    def from_pairs(cls, pairs: Sequence[Tuple[str, int]]) -> 'Genotype':
        """Reads the reference's ``[(name, edge_index), ...]`` form."""
        ops = [None] * NUM_EDGES
        for pair in pairs:
            # bool is an int subclass: True / False are not edge indices.
            if len(pair) != 2 or not isinstance(pair[1], int) or isinstance(
                    pair[1], bool):
                raise ValueError(f'expected (operation name, edge index) '
                                 f'pairs, got {pair!r}')
            name, idx = pair
            if not 0 <= idx < NUM_EDGES:
                raise ValueError(f'edge index {idx} in {pair!r} is out of '
                                 f'range 0..{NUM_EDGES - 1}')
            if ops[idx] is not None:
                raise ValueError(f'edge {idx} is given twice: {ops[idx]!r} '
                                 f'and {name!r}')
            ops[idx] = name
        missing = [i for i, op in enumerate(ops) if op is None]
        if missing:
            raise ValueError(f'the genotype gives no operation for edges '
                             f'{missing} (need all of 0..{NUM_EDGES - 1})')
        return cls(ops)

    @classmethod
    def from_alphas(cls, alphas: torch.Tensor) -> 'Genotype':
        """The searched block: the argmax of each row of a (6, 7) alpha."""
        if alphas.dim() != 2 or alphas.shape[0] != NUM_EDGES or any(
                alphas.shape[1] != len(e.op_set) for e in EDGES):
            raise ValueError(f'alphas must be ({NUM_EDGES}, '
                             f'{len(EDGES[0].op_set)}), got '
                             f'{tuple(alphas.shape)}')
        idx = alphas.detach().argmax(dim=1).tolist()
        return cls(e.op_set.names[i] for e, i in zip(EDGES, idx))

    @classmethod
    def load(cls, path: str) -> 'Genotype':
        """Reads a ``.json`` file or a ``.py`` file holding only
        ``genotype = <literal>``; neither is executed.

        Raises:
            FileNotFoundError: no such file.
            GenotypeFileError: a ValueError naming the file, for any other
                content or form.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f'genotype file {path!r} does not exist')
        if not path.endswith(('.json', '.py')):
            raise GenotypeFileError(
                f'cannot read a SASE genotype from {path!r}: the file must '
                f'end in .json or .py. {ACCEPTED_FORMS}')
        try:
            if os.path.getsize(path) > MAX_FILE_BYTES:
                raise ValueError(f'the file is larger than {MAX_FILE_BYTES} '
                                 f'bytes')
            with open(path, encoding='utf-8') as f:
                text = f.read()
            data = _json_loads(text, 'the file') if path.endswith(
                '.json') else _literal_assignment(text, path)
            return cls._parse(data, 'the genotype in the file')
        except RecursionError:
            err = 'it is nested too deeply'
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            err = str(e)
        raise GenotypeFileError(f'cannot read a SASE genotype from {path!r}: '
                                f'{err}. {ACCEPTED_FORMS}') from None

    # ----------------------------------------------------------------- write
    def to_dict(self) -> dict:
        return dict(zip(_EDGE_NAMES, self))

    def to_pairs(self, reference: bool = True) -> List[Tuple[str, int]]:
        """The reference's ``[(name, edge index), ...]`` form."""
        return [((e.op_set.ops[op].ref if reference else op), i)
                for i, (e, op) in enumerate(zip(EDGES, self))]

    def indices(self) -> List[int]:
        """Column of each edge's operation in the (6, 7) alpha."""
        return [e.op_set.index(op) for e, op in zip(EDGES, self)]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_config(self) -> str:
        """An mmengine config fragment defining ``genotype``."""
        body = ''.join(f"    '{op}',  # {e.name}\n"
                       for e, op in zip(EDGES, self))
        return f'genotype = [\n{body}]\n'

    def save(self, path: str) -> None:
        """Writes ``.json`` or an mmengine config (``.py``), atomically."""
        atomic_write_text(path, self.to_json() if path.endswith('.json')
                          else self.to_config())

    def __repr__(self):
        return f'Genotype({list(self)!r})'

    def __str__(self):
        return ', '.join(f'{e.name}={op}' for e, op in zip(EDGES, self))


# The paper's searched block (docs/spec.md section 4).
SASE_PAPER_GENOTYPE = Genotype.from_pairs(
    [('GAP+GMP', 0), ('2conv_1x1', 1), ('affine', 2), ('p-norm', 3),
     ('GAP', 4), ('2conv_3x3', 5)])

GENOTYPES = {'sase_paper': SASE_PAPER_GENOTYPE}

MAX_FILE_BYTES = 1 << 20
ACCEPTED_FORMS = (
    'Accepted: six operation names, one per edge '
    f'({", ".join(_EDGE_NAMES)}), as a JSON list or dict such as '
    f'{json.dumps(list(SASE_PAPER_GENOTYPE))} or '
    '{"genotype": [...]} (a .json file), a .py file whose only statement is '
    f'`genotype = {list(SASE_PAPER_GENOTYPE)!r}`, the reference\'s '
    '[(name, edge index), ...] pairs, or a named genotype '
    f'({", ".join(GENOTYPES)})')


def _json_loads(text: str, where: str):
    """``json.loads`` with a message instead of a bare decode error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f'{where} is not valid JSON ({err})') from None


def _literal_assignment(text: str, path: str):
    """The literal of a ``.py`` file's only statement, ``genotype = ...``
    (a module docstring and comments may come with it), never executed."""
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as err:
        raise ValueError(f'it is not valid Python ({err.msg}, line '
                         f'{err.lineno})') from None
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(
            body[0].value, ast.Constant) and isinstance(body[0].value.value,
                                                        str):
        body = body[1:]  # the module docstring
    if len(body) != 1 or not isinstance(body[0], ast.Assign) or len(
            body[0].targets) != 1 or not isinstance(
                body[0].targets[0], ast.Name) or body[0].targets[0].id != \
            'genotype':
        kinds = ', '.join(type(n).__name__ for n in body) or 'nothing'
        raise ValueError(f'a .py genotype file holds exactly one statement, '
                         f'`genotype = <literal>`; this one has: {kinds} '
                         f'(it is not executed)')
    try:
        return ast.literal_eval(body[0].value)
    except ValueError:
        raise ValueError('the value of `genotype` must be a literal (names, '
                         'lists, tuples, dicts, numbers), not an expression '
                         '(it is not executed)') from None

GenotypeLike = Union[Genotype, str, Sequence, Mapping, None]
