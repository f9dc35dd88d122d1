"""YAML/JSON parsing: documents mean what they would mean as JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkeeper.definitions import load_definition, read_definition_file
from flowkeeper.definitions.parsing import parse_text
from flowkeeper.errors import DefinitionError

HEADER = "document: {dsl: '1.0.0', namespace: test, name: sample, version: '0.1.0'}\n"


def parse_error(text: str) -> str:
    with pytest.raises(DefinitionError) as caught:
        parse_text(text)
    [problem] = caught.value.problems
    assert problem.pointer == ""
    return problem.message


def test_on_stays_a_string_key_under_schedule() -> None:
    definition = load_definition(
        HEADER
        + "schedule:\n  on:\n    one:\n      with: {type: com.example.started}\ndo:\n  - a: {wait: PT1S}\n"
    )
    assert "on" in definition.document["schedule"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("010", 10),  # YAML 1.1 would read octal 8
        ("0o10", 8),
        ("0x1F", 31),
        ("-7", -7),
        ("12:30", "12:30"),  # YAML 1.1 would read sexagesimal 750
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("2024-01-01", "2024-01-01"),  # YAML 1.1 would build a datetime.date
        ("1.0.0", "1.0.0"),
        ("'1.0'", "1.0"),
        (".inf.", ".inf."),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    parsed = parse_text(f"key: {text}\n")
    assert parsed == {"key": value}
    assert type(parsed["key"]) is type(value)


def test_non_string_keys_get_their_json_spelling() -> None:
    assert parse_text("200: ok\ntrue: yes\n1.5: x\nnull: n\n") == {
        "200": "ok",
        "true": "yes",
        "1.5": "x",
        "null": "n",
    }


def test_duplicate_keys_are_refused_with_their_line() -> None:
    message = parse_error("a: 1\nb: 2\na: 3\n")
    assert "duplicate key 'a'" in message
    assert "line 3" in message


def test_merge_keys_still_work() -> None:
    parsed = parse_text("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n")
    assert parsed["derived"] == {"x": 1, "y": 3}


def test_non_finite_numbers_are_refused() -> None:
    assert "not a finite number" in parse_error("a: !!float .nan\n")
    assert "1e999 is not a finite number" in parse_error('{"a": 1e999}')


def test_json_text_is_accepted_and_means_the_same_as_yaml() -> None:
    as_yaml = load_definition(HEADER + "do:\n  - a: {set: {x: 1}}\n")
    as_json = load_definition(
        '{"document": {"dsl": "1.0.0", "namespace": "test", "name": "sample", "version": "0.1.0"},\n'
        '\t"do": [{"a": {"set": {"x": 1}}}]}'
    )
    assert as_json.document == as_yaml.document
    assert as_json.content_hash == as_yaml.content_hash


def test_json_duplicate_keys_are_refused() -> None:
    assert "duplicate key 'a'" in parse_error('{"a": 1, "a": 2}')


def test_flow_style_yaml_that_is_not_json_still_parses() -> None:
    assert parse_text("{a: 1, b: [x, y]}") == {"a": 1, "b": ["x", "y"]}


def test_bytes_are_decoded_as_utf8_with_or_without_bom() -> None:
    text = HEADER + "do:\n  - a: {set: {greeting: 'héllo'}}\n"
    plain = load_definition(text.encode("utf-8"))
    with_bom = load_definition(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert plain.task_at("/do/0/a")["set"]["greeting"] == "héllo"
    assert with_bom.content_hash == plain.content_hash


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition(b"document: \xff\xfe\n", filename="bad.yaml")
    assert "bad.yaml: the document is not UTF-8 text" in caught.value.problems[0].message


def test_alias_bombs_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{', '.join(['*' + previous] * 10)}]\n"
    with pytest.raises(DefinitionError) as caught:
        load_definition(bomb)
    assert "more than" in caught.value.problems[0].message


def test_syntax_errors_name_the_file_line_and_column() -> None:
    message = parse_error("a: [1, 2\nb: 3\n")
    assert message.startswith("YAML syntax error at line 2")
    assert "flow sequence that starts at line 1, column 4" in message
    with pytest.raises(DefinitionError) as caught:
        parse_text("a:\n\tb: 1\n", filename="flow.yaml")
    message = caught.value.problems[0].message
    assert message.startswith("flow.yaml: YAML syntax error at line 2, column 1")
    assert "tab" in message


def test_read_definition_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(HEADER + "do:\n  - a: {wait: PT1S}\n", encoding="utf-8")
    assert read_definition_file(path).key == ("test", "sample", "0.1.0")
    assert read_definition_file(str(path)).source == path.read_text(encoding="utf-8")


def test_read_definition_file_reports_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(DefinitionError) as caught:
        read_definition_file(missing)
    [problem] = caught.value.problems
    assert problem.pointer == ""
    assert str(missing) in problem.message
    assert "cannot read the file" in problem.message


def test_read_definition_file_reports_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as caught:
        read_definition_file(tmp_path)
    assert "cannot read the file" in caught.value.problems[0].message


def test_read_definition_file_reports_yaml_errors_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(HEADER + "do:\n  - a: x: y\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        read_definition_file(path)
    [problem] = caught.value.problems
    assert problem.pointer == ""
    assert f"{path}: YAML syntax error at line 3" in problem.message
