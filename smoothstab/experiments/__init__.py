"""The experiment layer: configs, data, models, training, the stages of a run, figures, report.

It imports the core (:mod:`smoothstab`); the core never imports it. Importing this package
imports nothing else, so loading a config does not pull in training, DDP or plotting:

* :mod:`.experiment` (every config dataclass, presets by name), :mod:`.config` (TOML and
  ``--set`` machinery), :mod:`.keys` (every key's type, default and meaning, for ``smoothstab
  config`` and the documentation), :mod:`.guards` (checks of paths, devices and names),
  :mod:`.setting` (DT, DR, DA, FT: the models a run compares and how it gets them);
* :mod:`.data`, :mod:`.shapes`, :mod:`.models` (with :mod:`.external` for ``timm:``, ``hf:``
  and ``python:`` models); :mod:`.train` and :mod:`.trainer` (:mod:`.distributed` for
  ``torchrun``, :mod:`.accel` for the speed options); :mod:`.proxies` (setting FT's replicas);
  :mod:`.labels` (the permuted training labels of the data-randomisation check);
* :mod:`.rundir` (the run directory's layout, and reading and writing its files);
  :mod:`.mapfile` (a map file's record: one model's maps of one method at one r);
  :mod:`.metrics_table` (``metrics.csv``'s columns, reading and writing, and its summary, with
  :mod:`.measures` naming the metrics and :mod:`.aggregate` summarising them);
  :mod:`.manifest` (what each stage wrote, hashed); the stages in :mod:`.stages`: :mod:`.attribute`
  (with :mod:`.recipe`, how one map is made), :mod:`.evaluate` (with :mod:`.advice`,
  :mod:`.findings` and :mod:`.verdicts`), :mod:`.sanity` (with :mod:`.sanity_rows`, its file),
  :mod:`.figures`, :mod:`.theory` (with :mod:`.bounds_record`, its file, and :mod:`.bounds_page`),
  :mod:`.report` (with :mod:`.blocks` and :mod:`.names`); :mod:`.plan` counts what a config costs
  before it runs, :mod:`.plan_timing` times it, :mod:`.plan_text` prints it;
* :mod:`.cli`, the ``smoothstab`` command, and :mod:`.progress` (its bars and lines).

Stages talk through files in a run directory, written atomically (:mod:`.io`), so a killed run
resumes where it stopped.
"""
