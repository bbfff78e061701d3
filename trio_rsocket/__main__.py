"""``python -m trio_rsocket``: the ``trio-rsocket`` command."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m trio_rsocket"))
