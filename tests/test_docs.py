"""Documentation stays true to the code: a setting or command nobody can find is a defect."""

from __future__ import annotations

import re
from pathlib import Path

from bot.cli import cli
from bot.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_config_example():
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (ROOT / "config.example.env").read_text(), re.M))
    expected = {name.upper() for name in Settings.model_fields}
    assert expected - documented == set(), "undocumented settings"
    assert documented - expected == set(), "documented settings that do not exist"


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in cli.commands:
        assert f"suarawarga {name}" in readme, f"`suarawarga {name}` is not in the README"


def test_quick_start_is_two_make_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
