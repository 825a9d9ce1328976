"""The tools' floor: what ``tools/`` share, above the library.

SASE (arXiv 2411.08333) is searched, trained, tested and converted by
command-line tools (mmpretrain's ``apis`` plays this part there). Their
common code stands here, on every floor below it (``utils``, ``models``,
``datasets``, ``engine``); nothing in the library imports it:

* ``tool_args.py``: the shared options, the config they produce, the
  runner, and ending on a refused file with its message;
* ``preflight.py``: the checks before anything is built (data, genotype
  files, the costs file, pretrained weights), with the one walk over a
  config for its genotype files;
* ``resume.py``: which checkpoint ``--resume`` takes;
* ``tool_models.py``: a config's model built as the Runner builds it;
* ``reference_layout.py``: the authors' checkpoints converted to this
  project's keys.

Import the modules themselves (``from sase_mm.apis import tool_args``):
each pulls in only the floors it needs.
"""
