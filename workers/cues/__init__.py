"""Live cues: a faust-streaming app turning each session's Inter-1 events into coaching cues.

``rules`` loads and validates the rules file, ``evaluate`` applies one event to a session's
state and returns the rule firings, ``state`` is the per-session live state (a faust
changelog-backed table), ``cue`` builds the ``Cue`` records, ``app`` wires the faust app and
``web`` serves the live state as JSON.
"""
