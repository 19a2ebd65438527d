"""xpubench: where, and in what form, should this trained model run?"""

from xpubench.api import benchmark, load_results
from xpubench.version import __version__

__all__ = ["benchmark", "load_results", "__version__"]
