"""Files and the terminal: atomic writes, JSON and torch files read with one-line errors,
the per-version memo of values computed from a file, and progress bars and lines. The
lowest room of the experiment layer: it imports no other.
"""
