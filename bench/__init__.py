"""mnist-bench: find, compare and ship the best Keras CNN for MNIST.

`import bench` loads nothing heavy: the API's functions (bench.api) load what they need when
first called, so that `bench.write_report(...)` in a notebook never pays for TensorFlow.
"""

__version__ = "0.1.0"
__all__ = ["run_search", "write_report", "confirm", "export", "trials", "recommend"]


def __getattr__(name: str):
    if name in __all__:
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
