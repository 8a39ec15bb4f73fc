"""nnrun: a command-line experiment runner for Keras.

A YAML config in, a reproducible run directory out. See README.md.
"""

__version__ = "0.1.0"
