import json

import pytest

from evaluator.selection import SelectionError, load_selection, parse_selection, selection_hash

INDEX = {f"src/v{v}/f{f}": v * 10 + f for v in range(5) for f in range(10)}


def errors_for(data: bytes, **kw) -> SelectionError:
    with pytest.raises(SelectionError) as info:
        load_selection(data, INDEX, **kw)
    return info.value


def test_three_formats_give_the_same_selection():
    ids = ["src/v1/f2", "src/v0/f0", "src/v4/f9"]
    lines = ("\n".join(ids) + "\n").encode()
    as_json = json.dumps(ids).encode()
    as_csv = ("id,score\n" + "\n".join(f"{i},0.5" for i in ids) + "\n").encode()
    results = [load_selection(d, INDEX) for d in (lines, as_json, as_csv)]
    assert all(r.ids == ids for r in results)
    assert all(r.indices.tolist() == [12, 0, 49] for r in results)
    assert len({r.selection_hash for r in results}) == 1
    assert results[0].retained_fraction == pytest.approx(3 / 50)


def test_hash_ignores_order():
    assert selection_hash(["b", "a"]) == selection_hash(["a", "b"])


def test_unknown_id_names_line_and_id():
    err = errors_for(b"src/v0/f0\n\nsrc/v9/f9\n")
    assert err.rule == "unknown_id" and err.line == 3 and err.sample_id == "src/v9/f9"
    assert "line 3" in str(err) and "src/v9/f9" in str(err)


def test_duplicate_id_names_both_lines():
    err = errors_for(b"src/v0/f0\nsrc/v0/f1\nsrc/v0/f0\n")
    assert err.rule == "duplicate_id" and err.line == 3 and err.sample_id == "src/v0/f0"
    assert "first at line 1" in str(err)


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"[]", b"id\n"])
def test_empty_selection(data):
    assert errors_for(data).rule == "empty"


def test_undecodable_file_names_line():
    err = errors_for(b"src/v0/f0\nsrc/v0/f1\n\xff\xfe\x00bad\n")
    assert err.rule == "encoding" and err.line == 3


def test_binary_file_with_nul_is_refused():
    assert errors_for(b"src/v0/f0\x00\x00\n").rule == "encoding"


def test_too_large():
    err = errors_for(b"src/v0/f0\n" * 100, max_bytes=50)
    assert err.rule == "too_large" and "50" in str(err)


def test_bad_json_item():
    err = errors_for(b'["src/v0/f0", 7]')
    assert err.rule == "format" and err.line == 2


def test_csv_missing_value():
    err = errors_for(b"id,x\nsrc/v0/f0,1\n,2\n")
    assert err.rule == "format" and err.line == 3


def test_utf8_bom_and_crlf_are_accepted():
    assert parse_selection(b"\xef\xbb\xbfsrc/v0/f0\r\nsrc/v0/f1\r\n").ids == ["src/v0/f0", "src/v0/f1"]


@pytest.mark.parametrize(
    "data, line, says",
    [
        (b'"id,x"\nsrc/v0/f0\n', 1, "has no `id` column"),  # one quoted header cell
        (b'a,"id\n1,src/v0/f0\n', 1, "has no `id` column"),  # an open quote swallows the rest
        (b"id\n" + b"x" * 200_000 + b"\n", 2, "cannot be read"),  # over the csv module's field limit
        (b"[" * 100_000 + b"]" * 100_000, None, "nested too deeply"),
        (b"[" + b"9" * 5_000 + b"]", None, "not a usable JSON list"),
        (b"[[[1]]]", 1, "JSON item 1 is list"),
    ],
)
def test_malformed_files_are_format_errors_that_say_where(data, line, says):
    err = errors_for(data)
    assert err.rule == "format" and err.line == line and says in str(err)
    assert len(str(err)) < 400


def test_echoed_values_are_bounded():
    """A 5 MB one-line ID is named, not echoed whole: the message and the `id` field stay short."""
    huge = "z" * 5_000_000
    err = errors_for(f"src/v0/f0\n{huge}\n".encode())
    assert err.rule == "unknown_id" and err.line == 2
    assert len(str(err)) < 300 and "5,000,002 characters" in str(err)
    assert len(err.to_dict()["id"]) <= 81


def test_a_file_of_another_kind_is_described_not_its_first_line_as_an_id():
    err = errors_for(b"sample,score\nsrc/v0/f0,0.5\n")
    assert err.rule == "format" and err.line == 1
    assert "CSV header" in str(err) and "no `id` column" in str(err) and "'sample'" in str(err)
    manifest = b'{"id": "src/v0/f0", "source": "src"}\n{"id": "src/v0/f1", "source": "src"}\n'
    err = errors_for(manifest)
    assert err.rule == "format" and err.line == 1 and "JSON lines" in str(err) and "manifest" in str(err)
    # an unknown ID that is just an ID is still named as one
    assert errors_for(b"src/v0/f0\nnope\n").rule == "unknown_id"
