""":class:`RunError`, raised by every eval step for input it cannot use (an unknown config, a run directory
over other questions, an unreadable calls file).

Its own module so records, configs, the run loop and the commands that catch it need not import one
another for it.
"""

from __future__ import annotations


class RunError(RuntimeError):
    """The run cannot start or continue as asked; the message says what to change."""
