"""sase_mm.utils.json_file.read_json: a user's JSON file read as hostile
input, each crafted file refused with its reason."""
import pytest

from sase_mm.utils.json_file import JSONFileError, read_json


def test_a_json_file_reads_as_plain_values(tmp_path):
    path = tmp_path / 'ok.json'
    path.write_text('{"epochs": [1, 2], "x": null}')
    assert read_json(str(path), 1000) == {'epochs': [1, 2], 'x': None}


@pytest.mark.parametrize('content, reason', [
    ('{"epochs": [', 'it is not valid JSON'),
    (b'{"a": "\xff\xfe"}', 'it is not valid JSON'),
    ('[' * 100000 + ']' * 100000, 'it is nested too deeply'),
    ('[' + '0,' * 600 + '0]', 'it is larger than 1000 bytes'),
], ids=['truncated', 'not_utf8', 'deep', 'too_large'])
def test_a_crafted_file_is_refused_with_its_reason(tmp_path, content,
                                                   reason):
    path = tmp_path / 'crafted.json'
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    limit = 1000 if reason.startswith('it is larger') else 1 << 21
    with pytest.raises(JSONFileError, match=reason):
        read_json(str(path), limit)


def test_a_folder_or_a_missing_path_is_not_a_file(tmp_path):
    for path in (tmp_path, tmp_path / 'missing.json'):
        with pytest.raises(JSONFileError, match='it is not a file'):
            read_json(str(path), 1000)
