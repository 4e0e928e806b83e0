"""Figures and report pieces: the only part of the library that imports matplotlib.

Importing this package selects the off-screen Agg backend before any submodule imports pyplot,
so figures render the same on a cluster node without a display; :func:`.figure.save_figure`
writes every PNG atomically.
"""

import matplotlib

matplotlib.use("Agg")
