"""``python -m accord``: the same command line as ``accord``."""

from accord.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests/test_cli.py
    main()
