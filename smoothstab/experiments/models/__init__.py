"""Data and models: dataset loaders and splits, architectures and external models,
training, setting FT's proxies, the label check's permutation, speed options, torchrun,
and how one map is made (the recipe).
"""
