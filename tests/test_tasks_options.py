"""An option a pack's loader does not take is a ValueError naming the pack, the option, the valid ones
and close matches, raised by one helper (`TaskPack.call_loader`) for every pack."""

import json

import pytest

import mmdps.tasks as tasks
from mmdps.cli import main
from mmdps.tasks.base import UnknownOptionError, check_options, loader_options


@pytest.mark.parametrize("name, source, options, valid, hint", [
    ("countdown", None, {"nmu": 3}, "levels, max_number, max_numbers, max_target, min_number, min_numbers, "
     "min_target, num, ops", "'nmu': did you mean 'num'?"),
    ("math", None, {"level": [1]}, "levels, num", "'level': did you mean 'levels'?"),
    ("geometry", None, {"image_sizes": 64}, "image_size, kinds, levels, num, show_choices",
     "'image_sizes': did you mean 'image_size'?"),
])
def test_generators_name_the_bad_option_the_valid_ones_and_a_close_match(name, source, options, valid, hint):
    with pytest.raises(UnknownOptionError) as info:
        tasks.get(name).load(source, **options)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    bad = next(iter(options))
    assert message.startswith(f"task pack {name!r} (generator, source=None): unknown load option {bad!r}")
    assert f"valid options: {valid} (plus split, limit, skip_invalid, seed)" in message
    assert message.endswith(hint)
    assert info.value.pack == name and info.value.unknown == list(options)


def test_file_loaders_have_their_own_options(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    assert len(tasks.get("math").load(rows, layout="auto")) == 1  # a valid file option passes through
    with pytest.raises(ValueError, match=r"'math' \(files\): unknown load options 'bogus', 'num'; valid options: "
                                         r"columns, image_dir, layout, raw_prompt \(") as info:
        tasks.get("math").load(rows, num=5, bogus=1)
    assert "did you mean" not in str(info.value)  # nothing close to 'bogus' or 'num'


def test_the_geometry3k_folder_layout_takes_only_show_choices(shared_data):
    folder = shared_data / "geometry3k_sample"
    with pytest.raises(ValueError, match="'geometry' .*Geometry3K folder.*unknown load option 'columns'; "
                                         "valid options: show_choices "):
        tasks.get("geometry").load(folder, columns={"question": "q"})


def test_helpers_directly():
    def loader(source, *, split, limit=None, num=1, levels=None, **ranges):
        return num

    assert loader_options(loader, exclude=["source", "split"]) == ["limit", "num", "levels"]
    check_options("p", {"num": 2}, ["num"])
    with pytest.raises(UnknownOptionError, match=r"task pack 'p': unknown load option 'x'; valid options: none"):
        check_options("p", {"x": 1}, [])


def test_a_third_party_pack_gets_the_check_through_call_loader():
    class Pack(tasks.TaskPack):
        name = "third_party"
        verifier = "math"

        def load(self, source=None, *, split="train", limit=None, skip_invalid=False, seed=0, **options):
            return self.call_loader(self._make, options, count=limit or 1)

        def _make(self, *, count, prefix="q"):
            return [self.make_item(id=i, question=f"{prefix}{i}", ground_truth="0") for i in range(count)]

    assert [item.text for item in Pack().load(limit=2, prefix="p")] == ["p0", "p1"]
    with pytest.raises(ValueError, match="'third_party': unknown load option 'prefx'.*did you mean 'prefix'"):
        Pack().load(prefx="p")


def test_tasks_cli_reports_the_option_in_one_line(capsys):
    assert main(["tasks", "show", "countdown", "--option", "numm=3"]) != 0
    out = capsys.readouterr()
    assert "unknown load option 'numm'" in out.out + out.err and "Traceback" not in out.out + out.err
