"""``torch.compile`` with a backend that records the graphs Dynamo hands it (to count the
graph breaks a model has), for the tests of gpuback.torch."""

from __future__ import annotations


def compiled_graphs(model):
    """``torch.compile(model)`` with a backend that records each graph Dynamo hands it and
    runs it as it is: (the compiled model, the list of graphs, filled as it runs)."""
    import torch

    graphs = []

    def record(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    return torch.compile(model, backend=record), graphs
