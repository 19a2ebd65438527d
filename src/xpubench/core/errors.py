"""The error a setting raises when it is out of range, in the library's own words."""

from __future__ import annotations


class InvalidSetting(ValueError):
    """A setting is out of range. `setting` names the field (e.g. "min_runs"), so that a front end can
    say which of its own options to change; the message speaks of the figure, not of any option."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
