"""The project's own exceptions: what a user can cause. Each message is one line that says what to do.

The command line and the pages catch these (and `OSError` on a path the user gave); anything else that
escapes is a bug and is reported as an internal error with its traceback saved.

  MisGANError        the base of them all
    DatasetError     data that cannot be used: missing, unreadable, the wrong shape, too large to decode
    OptionError      an option (command-line flag, config field, page setting) that cannot work
    CheckpointError  a run folder that cannot be used: not a run, unreadable, broken checkpoint
      RunBusy        another process holds the run's lock (it is training, or being deleted)
    DiskFull         a write failed because the disk is full

Each keeps the built-in base that earlier callers caught (`ValueError` for options, `RuntimeError` for data
and run folders, `OSError` for the disk).
"""

from __future__ import annotations


class MisGANError(Exception):
    """Something the user can fix; the message says how."""


class DatasetError(MisGANError, RuntimeError):
    """A dataset or the user's own data cannot be used; the message says why and how to fix it."""


class OptionError(MisGANError, ValueError):
    """An option that cannot work (out of range, conflicting with another, unknown); the message names it."""


class CheckpointError(MisGANError, RuntimeError):
    """A run folder that cannot be used; the message says what is wrong and what to do."""


class RunBusy(CheckpointError):
    """Another process holds the run's lock."""


class DiskFull(MisGANError, OSError):
    """A write failed for lack of space; the message names the folder."""


class UnknownOption(OptionError, TypeError):
    """An option name that does not exist (a TypeError too, as for an unexpected keyword argument)."""
