"""distillrec: distill and transfer pretrained language-model knowledge into lightweight recommenders."""

__version__ = "0.1.0"

_API = ("load_data", "split", "fit", "evaluate", "save", "load")  # no `distill`: a subpackage has it


def __getattr__(name: str):
    # The API loads torch; `import distillrec` (the CLI's version check) stays light.
    if name in _API:
        from distillrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'distillrec' has no attribute {name!r}")
