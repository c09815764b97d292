"""mnist-bench: find, compare and ship the best Keras CNN for MNIST."""

__version__ = "0.1.0"
