"""Live cues: a faust-streaming app turning each session's Inter-1 events into coaching cues.

``rules`` loads and validates the rules file, ``evaluate`` applies one event to a session's
state and returns the rule firings, ``state`` is the per-session live state (a faust
changelog-backed table), ``ended`` decides when an ended session may leave it, ``cue`` builds
the ``Cue`` records, ``app`` wires the faust app, ``web`` serves the live state as JSON and
``faults`` is the crash drills' fault injection (off by default).
"""
