"""Airflow's `TriggerRule`, each mapped onto a native rule."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from orchestrator.authoring.trigger_rules import TriggerRule as NativeRule


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_DONE_SETUP_SUCCESS = "all_done_setup_success"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_OR_SKIPPED = "none_failed_or_skipped"
    NONE_SKIPPED = "none_skipped"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    ALL_SKIPPED = "all_skipped"
    ALWAYS = "always"
    DUMMY = "dummy"


# Airflow's older names.
_ALIASES = {
    "none_failed_or_skipped": NativeRule.NONE_FAILED_MIN_ONE_SUCCESS,
    "dummy": NativeRule.ALWAYS,
}


def native_rule(value: Any) -> NativeRule:
    """The native rule for an Airflow rule (an enum member or its string)."""
    text = str(value.value if isinstance(value, StrEnum) else value)
    if text in _ALIASES:
        return _ALIASES[text]
    try:
        return NativeRule(text)
    except ValueError:
        choices = ", ".join(rule.value for rule in TriggerRule)
        raise ValueError(f"unknown trigger_rule {value!r}; choose one of: {choices}") from None


__all__ = ("TriggerRule",)
