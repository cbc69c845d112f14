"""`[[alerts]]` and `[alert_channels]` in orchestrator.toml: a bad entry is named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError

CHANNELS = """
[alert_channels.ops]
kind = "slack"
url_env = "SLACK_URL"
"""


def load(tmp_path: Path, text: str) -> object:
    (tmp_path / "orchestrator.toml").write_text(text)
    return load_settings(cwd=tmp_path, environ={})


def test_a_good_configuration_loads(tmp_path: Path) -> None:
    text = CHANNELS + '\n[[alerts]]\non = ["task_failed"]\ndags = ["etl*"]\nchannels = ["ops"]\n'
    settings = load(tmp_path, text)
    (rule,) = settings.alerts  # type: ignore[attr-defined]
    assert rule.on == ("task_failed",) and rule.dags == ("etl*",)
    assert settings.alert_channels["ops"].kind == "slack"  # type: ignore[attr-defined]


def test_an_unknown_event_is_named_with_its_line(tmp_path: Path) -> None:
    text = CHANNELS + '\n[[alerts]]\non = ["run_failed"]\nchannels = ["ops"]\n'
    text += '\n[[alerts]]\non = ["task_exploded"]\nchannels = ["ops"]\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "[[alerts]] entry 2" in message and "line 10" in message
    assert "unknown event 'task_exploded'" in message and "task_failed" in message


def test_an_unknown_channel_is_named_with_its_line(tmp_path: Path) -> None:
    text = CHANNELS + '\n[[alerts]]\non = ["run_failed"]\nchannels = ["opz"]\n'
    with pytest.raises(ConfigError, match=r"line 6\).*unknown channel 'opz' \(channels: ops\)"):
        load(tmp_path, text)


def test_a_channel_without_a_secret_source_or_with_a_url_in_the_file_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="exactly one of `url_env` or `url_file`"):
        load(tmp_path, '[alert_channels.ops]\nkind = "slack"\n')
    with pytest.raises(ConfigError, match="unknown key `url` for a slack channel"):
        load(tmp_path, '[alert_channels.ops]\nkind = "slack"\nurl = "https://hooks.x/T0"\n')


def test_proactive_rules_load_with_their_thresholds(tmp_path: Path) -> None:
    text = CHANNELS + (
        '\n[[alerts]]\non = ["run_late", "trigger_silent", "run_too_long"]\n'
        'late_after = 600\nsilent_for = 3600\nmax_duration = 7200\nchannels = ["ops"]\n'
    )
    (rule,) = load(tmp_path, text).alerts  # type: ignore[attr-defined]
    assert (rule.late_after, rule.silent_for, rule.max_duration) == (600.0, 3600.0, 7200.0)
    assert rule.threshold("run_late") == 600.0 and rule.threshold("task_failed") is None


def test_a_proactive_event_without_its_threshold_or_a_stray_threshold_is_named_with_its_line(
    tmp_path: Path,
) -> None:
    missing = CHANNELS + '\n[[alerts]]\non = ["run_late"]\nchannels = ["ops"]\n'
    with pytest.raises(ConfigError, match=r"line 6\): `run_late` needs `late_after`"):
        load(tmp_path, missing)
    stray = CHANNELS + '\n[[alerts]]\non = ["run_failed"]\nsilent_for = 60\nchannels = ["ops"]\n'
    with pytest.raises(ConfigError, match=r"line 6\): `silent_for` is read only for"):
        load(tmp_path, stray)
    negative = (
        CHANNELS + '\n[[alerts]]\non = ["run_too_long"]\nmax_duration = 0\nchannels = ["ops"]\n'
    )
    with pytest.raises(ConfigError, match=r"`max_duration` must be a number of seconds from 1"):
        load(tmp_path, negative)
