"""``python -m homecare``: the ``homecare`` command."""

from homecare.entry import main

main()
