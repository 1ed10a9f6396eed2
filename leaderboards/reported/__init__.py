"""Published results transcribed from the MixER paper, one CSV per dataset.

This folder is installed as the package ``vireid_bench.reported_tables`` (see pyproject.toml)
so that :mod:`vireid_bench.results.reported` finds the files from a wheel and from an editable
install alike. See README.md here for what was transcribed and how.
"""
