"""xpubench: where, and in what form, should this trained model run?"""

__version__ = "0.1.0"
