"""edgecnn: take a trained CNN to an edge device without surprises."""

__version__ = "0.1.0"
