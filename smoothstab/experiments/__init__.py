"""The experiment layer: a run of the ``smoothstab`` command, from a config to a report.

It imports the core (``smoothstab``); the core never imports it. Its rooms, from the bottom up
(a room imports only rooms below it; ``tests/test_layering.py`` holds the rules):

* ``io/``: atomic files and one-line read errors, progress bars and lines;
* ``analysis/``: numbers to judgements (summaries over images and models, verdicts' statistics,
  the advice on sigma, Table 1's numbers): no files, no words;
* ``config/``: what a run is (the config tables, TOML and ``--set``, every key's meaning, the
  settings, the dataset catalogue);
* ``rundir/``: where a run's files live, one typed record per file, and the manifest;
* ``models/``: data loaders and splits, architectures, training, setting FT's proxies, and how one
  map is made;
* ``pages/``: words (the report's blocks, names, conventions, the bounds page);
* ``stages/``: one module per stage (attribute, evaluate, sanity, figures, bounds, report),
  which never import each other;
* ``plan/``: what a config costs before it runs;
* ``pipeline`` runs the stages in order on a run directory, ``cli`` is the ``smoothstab``
  command.

Importing this package imports nothing else, so loading a config does not pull in training,
DDP or plotting. Stages talk through files in a run directory, written atomically, so a killed
run resumes where it stopped.
"""
