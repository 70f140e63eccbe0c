"""What runs inside the standard image: data set generation, tuning, training, serving, benchmarking."""

__version__ = "0.1.0"
