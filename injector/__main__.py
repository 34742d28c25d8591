"""The ``injector`` console script and ``python -m injector``.

The command lines a pod runs (``injector init|sidecar --config FILE ...``) start without importing
click: ``injector.commands.parse`` reads them, and hands anything else to click (``injector.cli``).
"""

import os
import sys


def main() -> None:
    from injector.commands import parse, run_parsed

    parsed = parse(sys.argv[1:], os.environ)
    if parsed is None:
        from injector.cli import main as click_main

        click_main()
    else:
        run_parsed(parsed)


if __name__ == "__main__":
    main()
