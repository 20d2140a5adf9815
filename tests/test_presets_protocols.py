"""Each preset runs its benchmark's published protocol by default and the DPS paper's with
``--protocol dps``; the answer phrasings MathVista / MathVerse accept (and refuse) without a GPT extractor;
one table per breakdown concept (fixtures in the releases' layouts: benchmark_fixtures.py)."""

import json

import pytest

import mmdps.commands.eval as eval_module
from benchmark_fixtures import write_geoqa_release, write_mathverse_hub_snapshot, write_mathvista_hub_snapshot
from mmdps import presets, verifiers
from mmdps.cli import main as cli_main
from mmdps.eval import load_report, problem_types
from mmdps.presets.answers import final_answer
from mmdps.presets.protocols import DPS, OFFICIAL, PROTOCOL_NAMES, protocol
from mmdps.rollout.base import Completion, RolloutEngine

CHOICES = ["135°", "140°", "145°", "150°"]


# ------------------------------------------------------------------------------------------ the table
def test_every_builtin_preset_has_an_official_protocol_and_dps_is_the_papers():
    assert set(OFFICIAL) == set(presets.BUILTIN)
    assert (DPS.samples, DPS.temperature, DPS.top_p, DPS.max_new_tokens, DPS.template) == (16, 0.6, 1.0, 1024,
                                                                                           "think_boxed")
    mathvista = protocol("mathvista")
    assert (mathvista.samples, mathvista.temperature, mathvista.max_new_tokens, mathvista.template) == (
        1, 0.0, 512, "plain")
    assert protocol("geometry3k", "dps") is DPS and protocol("geometry3k").options == {"show_choices": True}
    assert eval_module.PROTOCOL_CHOICES == PROTOCOL_NAMES
    assert mathvista.describe() == "official: 1 sample, greedy, top-p 1, max 512 new tokens, template plain"
    with pytest.raises(ValueError, match="unknown protocol 'paper'.*official, dps"):
        protocol("mathvista", "paper")
    with pytest.raises(ValueError, match="'mybench' has no official protocol.*OFFICIAL"):
        protocol("mybench")
    with pytest.raises(ValueError, match="unknown protocol 'greedy'"):
        presets.get("mathvista", protocol="greedy")


def test_mathvista_prompt_official_is_the_query_and_dps_asks_for_the_box_once(tmp_path):
    root, rows = write_mathvista_hub_snapshot(tmp_path / "mv")
    official = presets.get("mathvista").load(root)
    assert [item.text for item in official] == [row["query"] for row in rows]
    dps = presets.get("mathvista", protocol="dps").load(root)[0]
    hint, _, instruction = dps.text.rpartition("\n\n")
    # the published hint now asks for the boxed letter too; the template's instruction follows the choices
    assert hint.startswith("Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, "
                           "D, within \\boxed{} at the end.\nQuestion:")
    assert hint.endswith("(D) 150°") and ", at the end." not in dps.text
    assert instruction.startswith("First reason") and instruction.endswith("within \\boxed{}.")


def test_mathverse_dps_prompt_rewrites_the_published_instruction_only(tmp_path):
    root, _ = write_mathverse_hub_snapshot(tmp_path / "mathverse")
    official, dps = presets.get("mathverse").load(root)[0], presets.get("mathverse", protocol="dps").load(root)[0]
    assert official.text.startswith("Please first conduct reasoning") and official.text.endswith("D:140°")
    assert dps.text.startswith("Please first conduct reasoning, and then answer the question and provide the correct "
                               "option letter, e.g., A, B, C, D, within \\boxed{} at the end.\nQuestion:")
    # a question that itself says "at the end." is left alone
    preset = presets.get("mathverse", protocol="dps")
    assert preset.format_prompt("A ball rolls; where is it at the end.").startswith("A ball rolls; where is it at "
                                                                                    "the end.\n\n")


def test_geometry3k_official_lists_the_choices_dps_does_not(shared_data):
    source = shared_data / "geometry3k_sample"
    official = presets.get("geometry3k").load(source, split="train", limit=1)[0]
    dps = presets.get("geometry3k", protocol="dps").load(source, split="train", limit=1)[0]
    assert "\nChoices: (A) " in official.text and "Choices:" not in dps.text
    assert "Choices:" not in presets.get("geometry3k").load(source, split="train", limit=1,
                                                            show_choices=False)[0].text  # an option wins


# ------------------------------------------------------------------------------------------ answer phrasings
MC = {"question_type": "multi_choice", "answer_type": "text", "choices": CHOICES}


@pytest.mark.parametrize("completion", [
    "The correct option is C",
    "Answer: (C)",
    "\\boxed{C}",
    "<think>it is B? no</think> \\boxed{C}",
    "145°",  # the option's text itself
    "The angle BOC is half of 180 + 110.\n145°",
    "So the answer is C.",
    "**Answer:** C",
    "Therefore option C is correct.",
    "The angle is 145 degrees.\nC",
    "<think>Answer: B</think>The correct choice is (C) 145°.",
    "The final answer is: 145",
    "Let's find the answer: first, angle OBC + angle OCB = 35°.\nC",  # the final line, not an early phrase
])
def test_mathvista_accepts_the_common_answer_phrasings(completion):
    verdict = verifiers.get("mathvista")(completion, "145°", **MC)
    assert verdict["acc"] == 1.0 and verdict["format"] == 1.0, completion


@pytest.mark.parametrize("completion", [
    "I think it is C",  # no answer phrase (GPT extraction would read it; the rules do not)
    "The answer is C or D",  # several letters for one choice
    "Answer: (C) and (D)",
    "The answer is not C",
    "Let me compute the angle BOC step by step",  # trails off
    "",
])
def test_mathvista_refuses_answers_it_cannot_read(completion):
    verdict = verifiers.get("mathvista")(completion, "145°", **MC)
    assert verdict["acc"] == 0.0 and verdict["format"] == 0.0, completion


def test_a_choice_text_shared_by_two_choices_is_refused():
    assert final_answer("work\nyes", choices=["yes", "no"]) == "yes"
    assert final_answer("work\nyes", choices=["yes", "Yes", "no"]) is None
    verdict = verifiers.get("mathvista")("work\na square", "a square", question_type="multi_choice",
                                         answer_type="text", choices=["a square", "A Square", "a circle"])
    assert verdict["format"] == 0.0
    assert final_answer("work\n(B) no", choices=["yes", "no"]) == "(B) no"  # a letter with its own choice's text
    assert final_answer("work\n(A) no", choices=["yes", "no"]) is None  # ... not another one's


@pytest.mark.parametrize("completion, gold, answer_type, extra", [
    ("The answer is 41 years.", "41", "integer", {"unit": "years"}),
    ("Answer: 41", "41", "integer", {}),
    ("He was born in 1982, so now\n41", "41", "integer", {}),
    ("The slope is rise over run.\nFinal answer: 0.73", "0.73", "float", {"precision": 2.0}),
    ("Years above 50:\n[2014, 2016]", "[2014, 2016]", "list", {}),
])
def test_mathvista_free_form_phrasings(completion, gold, answer_type, extra):
    verdict = verifiers.get("mathvista")(completion, gold, question_type="free_form", answer_type=answer_type, **extra)
    assert verdict["acc"] == 1.0, completion
    assert verifiers.get("mathvista")("He looks about forty-one", gold, question_type="free_form",
                                      answer_type=answer_type, **extra)["format"] == 0.0


def test_mathverse_reads_the_same_phrasings(tmp_path):
    root, _ = write_mathverse_hub_snapshot(tmp_path / "mathverse")
    items = presets.get("mathverse").load(root)
    dominant, vision_only, free = items[0], items[4], items[5]
    grade = verifiers.score_completion
    for completion in ("The correct option is D", "Answer: (D)", "reasoning\nD", "\\boxed{140°}", "D:140°"):
        assert grade(dominant, completion).acc == 1.0, completion
    assert grade(dominant, "The answer is C or D").acc == 0.0 and grade(dominant, "maybe D").format == 0.0
    assert grade(vision_only, "The correct option is D.").acc == 1.0
    assert grade(free, "So L = 14 cm.\nThe answer is 14 cm").acc == 1.0
    two = {"question_type": "multi-choice"}
    assert verifiers.get("mathverse")("The answer is C and D", "C\nD", **two)["acc"] == 1.0  # both asked for


# ------------------------------------------------------------------------------------------ the command
class Recorder(RolloutEngine):
    """Answers every prompt with the gold letter or value, and records the sampling and the prompts."""

    def __init__(self):
        self.sampling, self.texts = [], []

    def generate(self, items, k, sampling):
        self.sampling.append(sampling)
        self.texts += [item.text for item in items]
        return [[Completion(text=f"The answer is {item.metadata.get('answer_letter') or item.ground_truth}",
                            token_ids=[1]) for _ in range(k)] for item in items]


@pytest.fixture()
def recorder(monkeypatch):
    engine = Recorder()
    monkeypatch.setattr(eval_module, "build_engine", lambda *args, **kwargs: engine)
    return engine


def run_eval(tmp_path, name, *flags):
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    assert cli_main(["eval", "--model", "m", "--output", str(out), "--no-progress", *flags]) == 0
    return load_report(out), out


def test_benchmark_runs_its_official_protocol_unless_told_otherwise(recorder, tmp_path, capsys):
    data, rows = write_mathvista_hub_snapshot(tmp_path / "mathvista")
    report, _ = run_eval(tmp_path, "mathvista", "--benchmark", "mathvista", "--data", str(data))
    sampling = recorder.sampling[-1]
    assert report["n"] == 1 and (sampling.temperature, sampling.top_p, sampling.max_new_tokens) == (0.0, 1.0, 512)
    assert recorder.texts == [row["query"] for row in rows] and report["mean_at_n"] == 1.0
    assert report["config"]["protocol"] == "official" and "GPT-4" in report["config"]["protocol_note"]
    printed = capsys.readouterr().out
    assert "official: 1 sample, greedy, top-p 1, max 512 new tokens, template plain" in printed
    assert "task: geometry problem solving" in printed  # the official breakdowns, printed once each
    assert printed.count("skills: ") == 5  # the largest groups first

    recorder.texts.clear()
    report, out = run_eval(tmp_path, "mathvista", "--benchmark", "mathvista", "--data", str(data), "--protocol", "dps")
    sampling = recorder.sampling[-1]
    assert report["n"] == 16 and (sampling.temperature, sampling.top_p, sampling.max_new_tokens) == (0.6, 1.0, 1024)
    assert all(text.endswith("within \\boxed{}.") for text in recorder.texts)
    assert "protocol: dps: 16 samples, temperature 0.6" in (out / "summary.md").read_text()

    report, _ = run_eval(tmp_path, "mathvista", "--benchmark", "mathvista", "--data", str(data), "--n", "2",
                         "--max-new-tokens", "64", "--template", "boxed")
    assert report["n"] == 2 and recorder.sampling[-1].max_new_tokens == 64 and recorder.sampling[-1].temperature == 0
    assert report["config"]["protocol_setting"].endswith("template boxed (overridden: --n 2, --max-new-tokens 64)")


def test_task_packs_run_the_dps_protocol_and_refuse_the_official_one(recorder, tmp_path, capsys):
    argv = ["eval", "--model", "m", "--task", "geometry", "--num", "3", "--output", str(tmp_path / "t"),
            "--no-progress"]
    assert cli_main([*argv, "--protocol", "official"]) == 2
    assert "--protocol official needs --benchmark" in capsys.readouterr().err
    assert cli_main(argv) == 0
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert report["n"] == 16 and report["sampling"]["temperature"] == 0.6
    assert report["config"]["protocol_setting"].endswith("template the pack's default")


# ------------------------------------------------------------------------------------------ one table per concept
def test_geoqa_reports_its_types_once(recorder, tmp_path, capsys):
    data, _ = write_geoqa_release(tmp_path / "GeoQA")
    report, out = run_eval(tmp_path, "geoqa", "--benchmark", "geoqa", "--data", str(data))
    assert report["by_type"] == {} and set(report["breakdowns"]) == {"type"}
    assert {label: g["num_problems"] for label, g in report["breakdowns"]["type"].items()} == {
        "angle": 1, "length": 1, "other": 1}
    summary = (out / "summary.md").read_text()
    assert summary.count("## By") == 1 and "## By type (official breakdown)" in summary
    printed = capsys.readouterr().out
    assert printed.count("type: angle") == 1 and "angle" not in printed.replace("type: angle", "")


def test_geometry3k_reports_goal_and_diagram_types_once(recorder, shared_data, tmp_path):
    report, out = run_eval(tmp_path, "geometry3k", "--benchmark", "geometry3k", "--data",
                           str(shared_data / "geometry3k_sample"), "--split", "train")
    assert report["by_type"] == {} and set(report["breakdowns"]) == {"problem_type_goal", "problem_type_graph"}
    assert (out / "summary.md").read_text().count("## By") == 2


def test_problem_types_leave_preset_items_to_their_breakdowns():
    geometry_pack = {"problem_type": "Angle", "problem_type_goal": ["Angle"], "problem_type_graph": ["Circle"]}
    assert problem_types(geometry_pack) == ["graph:Circle", "goal:Angle"]
    assert problem_types({**geometry_pack, "breakdowns": {"problem_type_goal": ["Angle"]}}) == []
    assert problem_types({"problem_type": "area", "breakdowns": {}}) == []


def test_a_preset_without_an_official_protocol_runs_the_dps_one(monkeypatch):
    from argparse import Namespace

    from mmdps.presets.mathvista import MathVista

    class MyBench(MathVista):
        name = "mybench"

    monkeypatch.setitem(presets._REGISTRY, "mybench", MyBench)
    assert presets.get("mybench").protocol is None and "\\boxed{}" in presets.get("mybench").template
    assert eval_module._protocol(Namespace(benchmark="mybench", protocol=None)) is DPS
    with pytest.raises(ValueError, match="'mybench' has no official protocol"):
        eval_module._protocol(Namespace(benchmark="mybench", protocol="official"))


def test_the_printout_lists_the_largest_groups_and_counts_the_rest(recorder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(eval_module, "PRINTED_GROUPS", 2)
    data, _ = write_mathvista_hub_snapshot(tmp_path / "mathvista")
    _, out = run_eval(tmp_path, "mathvista", "--benchmark", "mathvista", "--data", str(data))
    printed = capsys.readouterr().out
    assert "algebraic reasoning" in printed and "skills: 3 more" in printed and "statistical" not in printed
    assert "statistical reasoning" in (out / "summary.md").read_text()
