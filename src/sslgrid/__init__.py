"""sslgrid: self-supervised speech pre-training compared on Flemish Dutch."""

__version__ = "0.1.0"
