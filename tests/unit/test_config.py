"""Operator settings from the environment and the command line (vigil_operator.config, main)."""

from __future__ import annotations

import pytest

from vigil_operator.config import Config
from vigil_operator.main import parse_args


def test_model_servers_get_no_scrape_annotations_by_default_one_scrape_path() -> None:
    assert Config.from_env({}).scrape_annotations is False
    assert Config().scrape_annotations is False


@pytest.mark.parametrize(
    ("text", "on"), [("true", True), ("1", True), ("On", True), ("false", False), ("", False)]
)
def test_scrape_annotations_come_from_the_environment(text: str, on: bool) -> None:
    assert Config.from_env({"VIGIL_SCRAPE_ANNOTATIONS": text}).scrape_annotations is on


def test_the_command_line_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_SCRAPE_ANNOTATIONS", "true")
    assert parse_args([]).scrape_annotations is True
    assert parse_args(["--no-scrape-annotations"]).scrape_annotations is False
    monkeypatch.delenv("VIGIL_SCRAPE_ANNOTATIONS")
    assert parse_args(["--scrape-annotations"]).scrape_annotations is True
