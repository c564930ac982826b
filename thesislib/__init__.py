"""thesislib: the executable companion of the thesis
"Comparative analysis of dataset formats for PyTorch image classification tasks".

Data flows one way: ``sources`` (where images come from) -> ``stores`` (how they are written) ->
``loaders`` (how they are read) -> ``train`` -> ``profiler`` -> ``bench`` (results) -> ``report``.
"""

__version__ = "0.1.0"
