"""xpubench: where, and in what form, should this trained model run?"""

from xpubench.api import benchmark, load_results

__version__ = "0.1.0"
__all__ = ["benchmark", "load_results", "__version__"]
