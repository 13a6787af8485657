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
