"""GSEMM: the General Sequential Episodic Memory Model (LISEM and DSEM).

Karuvally, Sejnowski & Siegelmann, ICML 2023 (arXiv 2212.05563). See
``docs/gsemm.md`` for the equations, the learning rule's derivation and the
capacity experiment.
"""

from replaybench.memories.gsemm.config import DSEMConfig, GSEMMConfig, LISEMConfig
from replaybench.memories.gsemm.models import DSEM, GSEMM, LISEM, Recall, random_patterns, transitions_from_cycles

__all__ = [
    "DSEM",
    "DSEMConfig",
    "GSEMM",
    "GSEMMConfig",
    "LISEM",
    "LISEMConfig",
    "Recall",
    "random_patterns",
    "transitions_from_cycles",
]
