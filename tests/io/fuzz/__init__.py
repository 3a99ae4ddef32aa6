"""Fuzz harness for the hostile-input promise of vqfast's readers (issue 16, fuzz-pt-2).

``.pt``/``.npy``/``.npz`` (``load_pt``, ``inspect_pt``, ``LatentShardLoader``) and frames
(``VideoClipLoader``): any corrupt or hostile file must load, or raise ``ShardError`` /
``FrameDecodeError`` naming the file — never crash, hang, exhaust memory, run code or raise
another type. :mod:`.cases` builds the inputs (seeds, the hand-crafted regression classes and
structured mutators for the 14 categories), :mod:`.runner` runs each in a forked child under a
memory cap and a timeout and classifies the outcome. Long run::

    python tests/io/fuzz --minutes 20 --seed 1 --report fuzz.json

The bounded CI run is ``tests/io/test_fuzz_hostile.py``.
"""
