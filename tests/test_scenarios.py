"""Lecture scenarios: the shipped ones load and describe what they say; a bad file is reported
with its reason and skipped."""
from lenet_core.model import preset
from lenet_core.scenarios import DEFAULT_DIR, load_scenarios, parse


def test_the_shipped_scenarios_cover_the_chapters_exercises():
    found, problems = load_scenarios(DEFAULT_DIR)
    assert problems == []
    by_key = {s.key: s for s in found}
    assert by_key["00-chapter-lenet5"].config.model == preset("classic")
    assert by_key["10-ex1-modern"].config.model == preset("modern")
    assert by_key["20-ex2-kernel-3"].config.model.kernel_size == 3
    assert by_key["23-ex2-three-convs"].config.model.conv_channels == (6, 16, 32)
    assert all(s.title and s.text for s in found)


def test_a_bad_scenario_is_skipped_with_its_reason(tmp_path):
    (tmp_path / "good.toml").write_text('title = "Kernel 3"\npreset = "modern"\nkernel_size = 3\n')
    (tmp_path / "typo.toml").write_text('title = "x"\nkernal_size = 3\n')
    (tmp_path / "huge.toml").write_text('title = "x"\ndense_widths = [2000000]\n')
    (tmp_path / "broken.toml").write_text('title = "unclosed\n')
    (tmp_path / "preset.toml").write_text('preset = "vgg"\n')
    found, problems = load_scenarios(tmp_path)
    assert [s.key for s in found] == ["good"] and found[0].config.model.kernel_size == 3
    text = "\n".join(problems)
    assert "typo.toml: 'kernal_size' is not a setting" in text
    assert "huge.toml: bad setting dense_widths" in text
    assert "broken.toml: not valid TOML" in text and "preset.toml: bad setting preset" in text


def test_settings_go_to_the_model_or_the_training():
    s = parse('preset = "classic"\nactivation = "tanh"\nlr = 0.3\nepochs = 3\n', "k")
    assert s.config.model.activation == "tanh" and s.config.lr == 0.3 and s.config.epochs == 3
    assert s.title == "k"


def test_deep_nesting_and_values_of_the_wrong_type_are_refused_before_they_are_walked(tmp_path):
    (tmp_path / "arrays.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "tables.toml").write_text("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n")
    (tmp_path / "list_preset.toml").write_text('preset = ["classic"]\n')
    (tmp_path / "table_lr.toml").write_text('lr = {value = 0.3}\n')
    (tmp_path / "quoted.toml").write_text('title = "[[[[[[ in a title ]]]]]]"  # [[[[[[ in a comment\n'
                                          'text = """[[[[[[\n]]]]"""\nconv_channels = [4, 8]\n')
    found, problems = load_scenarios(tmp_path)
    assert [s.key for s in found] == ["quoted"] and found[0].config.model.conv_channels == (4, 8)
    text = "\n".join(problems)
    assert "arrays.toml: nested 5000 deep" in text and "tables.toml: nested 3000 deep" in text
    assert 'list_preset.toml: preset must be the name of a preset (e.g. "classic"), not a list' in text
    assert "table_lr.toml: lr is dict; a setting is a text, a number or a list of numbers" in text
