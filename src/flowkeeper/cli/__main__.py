"""``python -m flowkeeper.cli``."""

from flowkeeper.cli.main import main

main()
