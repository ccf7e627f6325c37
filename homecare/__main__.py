"""``python -m homecare``: the ``homecare`` command."""

from homecare.cli import main

main()
