"""Reading a JSON file a user handed the program, as hostile input.

Every JSON file sase_mm reads from a user (a search's alpha history, a
study's results, an operation-cost table) is read here: bounded in size
before it is read, decoded as UTF-8, parsed with ``json`` (which builds
plain values and runs nothing), and a document nested deeply enough to
exhaust Python's recursion is refused rather than crashing the reader.
What the value must look like is the caller's to check.
"""
import json
import os


class JSONFileError(ValueError):
    """Why a file is not readable JSON; the message is the reason, phrased
    to follow the file's name (``'it is larger than 1048576 bytes'``)."""


def read_json(path: str, max_bytes: int):
    """The JSON value in the file at ``path``.

    Args:
        path: the file.
        max_bytes: the largest file accepted.

    Raises:
        JSONFileError: it is not a file, is larger than ``max_bytes``, is
            not valid UTF-8 JSON, or is nested too deeply.
    """
    if not os.path.isfile(path):
        raise JSONFileError('it is not a file')
    if os.path.getsize(path) > max_bytes:
        raise JSONFileError(f'it is larger than {max_bytes} bytes')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except RecursionError:
        raise JSONFileError('it is nested too deeply') from None
    except (ValueError, UnicodeDecodeError) as err:
        raise JSONFileError(f'it is not valid JSON ({err})') from None
