"""One module per stage of a run: attribute, evaluate, sanity, figures, bounds, report (the train
stage is the setting's, through :mod:`smoothstab.experiments.models.source`). Stages
talk through files in the run directory and never import each other.
"""
