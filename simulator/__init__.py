"""A local Inter-1 Stream API simulator (``inter1-pipeline simulate``), faithful to the protocol.

Import :class:`simulator.server.Simulator` and :class:`simulator.config.SimulatorConfig` to
run it in-process; see ``simulator/README.md``.
"""
