"""nanogpt: train GPT-2-class models, sweep depth x compute on Ray, fit scaling laws.

The package is a set of flat modules, each owning one concept:
config, scaling, model, loss, optim, tokenizer, data, dist, checkpoint, train, sweep,
scaling_laws, plotting. Importing the package imports none of them.
"""

__version__ = "0.1.0"
