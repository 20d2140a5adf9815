"""The one YAML reader: anchors / aliases (alias bombs) and duplicate keys are refused, naming the file, the
line and the key; config files, overrides and dictionary values all go through it."""

from __future__ import annotations

import time

import pytest

from mmdps.config import load_config
from mmdps.yaml_io import YAMLInputError, YAMLSyntaxError, load_yaml, read_yaml_file

# A small, 3-level alias bomb (27 leaves if expanded); a real one has 9 levels of 9 and needs gigabytes.
BOMB = """\
model_name_or_path: tiny:qwen2
eval_options:
  a: &a [x, x, x]
  b: &b [*a, *a, *a]
  c: [*b, *b, *b]
"""


def test_an_alias_bomb_in_a_config_file_is_refused_at_the_first_anchor_naming_file_line_and_key(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    start = time.perf_counter()
    with pytest.raises(YAMLInputError, match=rf"^{path} line 3: YAML anchor &a \(under key 'a'\) is not allowed: "
                                             r"anchors and aliases can expand"):
        load_config(path)
    assert time.perf_counter() - start < 1.0


def test_an_alias_alone_is_refused_too():
    with pytest.raises(YAMLInputError, match=r"^x\.yaml line 1: YAML anchor &v \(under key 'a'\)"):
        load_yaml("a: &v 1\nb: *v\n", "x.yaml")
    with pytest.raises(YAMLInputError, match=r"^override 'eval_options=\[\*a\]' line 1: YAML alias \*a"):
        load_config(None, ["model_name_or_path=m", "eval_options=[*a]"])


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("model_name_or_path: tiny:qwen2\nmax_steps: 3\nlearning_rate: 1e-5\nmax_steps: 30\n")
    with pytest.raises(YAMLInputError, match=rf"^{path} line 4: duplicate key 'max_steps' \(first at line 2\); "
                                             "YAML would silently keep only the last value"):
        load_config(path)
    nested = "task_options:\n  num: 3\n  seed: 1\n  num: 4\n"
    with pytest.raises(YAMLInputError, match=r"^n\.yaml line 4: duplicate key 'num' \(first at line 2\)"):
        load_yaml(nested, "n.yaml")


def test_plain_yaml_still_loads_and_syntax_errors_name_line_and_column(tmp_path):
    assert load_yaml("a: [1, 2]\nb: {c: null, d: 1e-6}\nc: 2\n") == {"a": [1, 2], "b": {"c": None, "d": "1e-6"},
                                                                     "c": 2}
    assert load_yaml("") is None
    with pytest.raises(YAMLSyntaxError, match=r"^s\.yaml line 3 column 1: YAML syntax error \(expected .,. or .\]."):
        load_yaml("a: 1\nb: [2\n", "s.yaml")  # the parser notices at the end of the text
    path = tmp_path / "latin1.yaml"
    path.write_bytes("a: caf\xe9\n".encode("latin-1"))
    with pytest.raises(YAMLInputError, match=r"latin1\.yaml: not UTF-8 text"):
        read_yaml_file(path)


def test_overrides_that_are_not_yaml_stay_plain_text():
    config = load_config(None, ["model_name_or_path=m", "system_prompt=answer: {x", "output_dir=/tmp/a:b"])
    assert config.system_prompt == "answer: {x" and config.output_dir == "/tmp/a:b"
