"""The experiment layer: configs, data, models, training, the stages of a run, figures, report.

It imports the core (:mod:`smoothstab`); the core never imports it. Importing this package
imports nothing else, so loading a config does not pull in training, DDP or plotting:

* :mod:`.experiment` (every config dataclass, presets by name) and :mod:`.config` (TOML and
  ``--set`` machinery);
* :mod:`.data`, :mod:`.shapes`, :mod:`.models`; :mod:`.train` and :mod:`.trainer`
  (:mod:`.distributed` for ``torchrun``);
* :mod:`.rundir` (the run directory's layout and records) and the stages in :mod:`.stages`:
  :mod:`.attribute`, :mod:`.evaluate` (with :mod:`.advice`), :mod:`.figures`, :mod:`.theory`,
  :mod:`.report` (with :mod:`.blocks` and :mod:`.names`);
* :mod:`.cli`, the ``smoothstab`` command.

Stages talk through files in a run directory, written atomically (:mod:`.io`), so a killed run
resumes where it stopped.
"""
