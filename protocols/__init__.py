"""Protocol presets shipped with vireid-bench, one TOML file per evaluation setting.

This folder is installed as the package ``vireid_bench.protocols`` (see pyproject.toml), so
``importlib.resources`` finds the files from a wheel and from an editable install alike.
"""
