"""The running daemon, as narrow parts composed by the CLI (sentinel/cli/compose.py), one job each:

- ``intake.Intake``: what ``/hooks/okta`` needs: the secrets to compare, the body stored, the detector woken.
- ``health.Health``: the readiness checks and their state (``/readyz``, ``sentinel_ready``).
- ``detector_runner``: the detector in its own process (``detector_process``) or in this loop.
- ``dispatchers.Dispatchers``: one dispatch task per channel (``dispatch``).
- ``monitor_loop.Monitor``: gauges from the store, the store re-check, feed silence (``monitor``: pure).
- ``reloader.Reloader``: SIGHUP → new settings → detector, dispatchers, monitor.
- ``lifecycle.Lifecycle``: start and stop them in order; the watchdog's health.
"""
