"""The lab: the ``lmobjectives`` command and the experiments run around the library.

- :mod:`~lmobjectives.lab.cli`: the ``lmobjectives`` command (``bench``, ``pretrain``,
  ``gan-bench``, ``corpus``);
- :mod:`~lmobjectives.lab.bench`: the benchmarks against the baselines, one runner and one table
  formatter;
- :mod:`~lmobjectives.lab.baselines`: the baselines, one module per upstream (Hugging Face,
  hand-written NumPy, Google BERT, T5, fairseq, sentence-transformers);
- :mod:`~lmobjectives.lab.pretrain`: small models trained end to end with any objective;
- :mod:`~lmobjectives.lab.gan_bench`: the text-GAN comparison on the synthetic oracle.

The lab is **not part of the stable API**: names here change when the experiments do. Its
extra dependencies come from the ``bench`` extra (``pip install 'lmobjectives[bench]'``).

Layering, each layer importing only those to its left::

    kernels (rust/core) ← bindings (lmobjectives._core) ← library (lmobjectives, NumPy only)
        ← lmobjectives.torch ← lmobjectives.lab

Nothing in the library or in :mod:`lmobjectives.torch` imports the lab; the one exception is
``lmobjectives/__main__.py``, which hands ``python -m lmobjectives`` to :func:`lab.cli.main
<lmobjectives.lab.cli.main>`.
"""
