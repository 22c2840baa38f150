"""Numbers to judgements: per-image metrics summarised over images and models, the
statistics behind a verdict, the advice on sigma and Table 1's numbers. No files and no
words: the pages say them, the run directory stores them.
"""
