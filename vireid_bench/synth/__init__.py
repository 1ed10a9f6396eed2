"""Synthetic data: feature dumps with controlled structure, and person images in dataset layouts.

A side branch of the pipeline for demos, tests and calibration: :mod:`~vireid_bench.synth.dumps`
writes feature dumps (``vireid-bench synth``), :mod:`~vireid_bench.synth.images` renders
visible/infrared person images in the SYSU-MM01, RegDB and LLCM layouts
(``vireid-bench synth-images``); :mod:`~vireid_bench.synth.defaults` holds their defaults as
plain data (no numpy), for the command line.

May import: :mod:`vireid_bench.errors`, :mod:`vireid_bench.io`, :mod:`vireid_bench.protocol`.
"""
