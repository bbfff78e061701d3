"""pytest plugin and test helpers for code that uses trio_rsocket.

Registered through the ``pytest11`` entry point, so its fixtures are there in
every test suite of a project that installs trio-rsocket.
"""
