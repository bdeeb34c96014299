"""The prime-offset GNN: a PyTorch Geometric message-passing stack and a linear head.

    h0 = GELU(Linear(features))
    h_{l+1} = h_l + Dropout(GELU(Norm(Conv_l(h_l, graph))))      (without `residual`: no h_l +)
    out = Linear(h_L) + Linear_skip(features)
    s_hat = base + out                                            the predicted next spacing

`base` comes with each node (trainer.features): with the residual head (the default) it is
1 + f_{n+1} - delta_n, the spacing that puts zero n+1 where the strongest classical predictor
(MATH.md §5.1 (f)) puts it, and both linear maps start at zero, so the untrained model *is*
baseline_smoothed and training is judged by how far below it the model gets. With the spacing
head, base = 0 and the head starts at the mean spacing 1. Nothing clamps s_hat: a predicted
spacing <= 0 is counted and reported (trainer.extrapolation), not hidden by a softplus.

GraphConv (sum over in-neighbours) and SAGEConv (mean) aggregate through a sparse CSR adjacency
(one spmm per layer, no per-edge feature tensor), which is what lets full-batch training hold
all 2,001,052 zeros; GATv2Conv needs per-edge attention and takes an edge_index.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn import GATv2Conv, GraphConv, SAGEConv

from trainer import graph

LAYERS = ("graphconv", "sage", "gatv2")
NORMS = ("none", "layer", "batch")
HEADS = ("residual", "spacing")


def _conv(layer: str, hidden: int) -> nn.Module:
    if layer == "graphconv":
        return GraphConv(hidden, hidden, aggr="add")
    if layer == "sage":
        return SAGEConv(hidden, hidden, aggr="mean")
    if layer == "gatv2":
        return GATv2Conv(hidden, hidden, heads=1)
    raise ValueError(f"unknown layer {layer!r}; expected one of {LAYERS}")


def _norm(norm: str, hidden: int) -> nn.Module:
    if norm == "none":
        return nn.Identity()
    if norm == "layer":
        return nn.LayerNorm(hidden)
    if norm == "batch":
        return nn.BatchNorm1d(hidden)
    raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")


class SpacingGNN(nn.Module):
    """Predicts the next unfolded spacing s_n of every node, as base + output (module docstring).

    Args:
        in_features: node feature columns (trainer.features.feature_names).
        layer: "graphconv", "sage" or "gatv2" (default "graphconv").
        hidden: hidden width (default 64).
        depth: message-passing layers (default 3); the receptive field reaches
            depth * max(primes) zeros back.
        dropout: dropout probability after each layer (default 0).
        residual: add each layer's output to its input (default True).
        norm: "none", "layer" or "batch" normalisation inside each layer (default "layer").
        checkpoint_layers: recompute each layer in the backward pass instead of storing its
            activations (default False): less memory for very large full-batch graphs.
        head: "residual" (output 0 at start: the node's base, i.e. baseline (f)) or "spacing"
            (output 1 at start: the mean spacing; base 0).
    """

    def __init__(
        self,
        in_features: int,
        *,
        layer: str = "graphconv",
        hidden: int = 64,
        depth: int = 3,
        dropout: float = 0.0,
        residual: bool = True,
        norm: str = "layer",
        checkpoint_layers: bool = False,
        head: str = "residual",
    ):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
        self.head_kind = head
        self.layer = layer
        self.residual = residual
        self.checkpoint_layers = checkpoint_layers
        self.encoder = nn.Linear(in_features, hidden)
        self.convs = nn.ModuleList(_conv(layer, hidden) for _ in range(depth))
        self.norms = nn.ModuleList(_norm(norm, hidden) for _ in range(depth))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)
        if head == "residual":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:
            nn.init.constant_(self.head.bias, 1.0)
        self.skip = nn.Linear(in_features, 1, bias=False)
        nn.init.zeros_(self.skip.weight)

    def freeze_bottom_layers(self) -> None:
        """Stop the encoder and the bottom half (depth // 2) of the message-passing layers from
        learning: requires_grad False, so they get no gradient and torch's optimizers (weight
        decay included) skip them."""
        bottom = len(self.convs) // 2
        for module in (self.encoder, *self.convs[:bottom], *self.norms[:bottom]):
            module.requires_grad_(False)

    def graph_input(self, table: np.ndarray) -> torch.Tensor:
        """The graph argument of forward for a neighbour table: CSR adjacency, or edge_index for GATv2."""
        return graph.edge_index(table) if self.layer == "gatv2" else graph.adjacency(table)

    def _block(self, i: int, h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # Under bf16 autocast h arrives in bf16, but sparse CSR matmul is not an autocast op and
        # wants matching dtypes: aggregate in float32 (the conv's linear layers still autocast).
        z = self.convs[i](h.float() if g.layout == torch.sparse_csr else h, g)
        z = self.dropout(nn.functional.gelu(self.norms[i](z)))
        return h + z if self.residual else z

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The output [m] for node features x [m, F] and graph g (from graph_input): the
        predicted spacing is the nodes' base plus this."""
        h = nn.functional.gelu(self.encoder(x))
        for i in range(len(self.convs)):
            if self.checkpoint_layers and self.training:
                h = checkpoint(self._block, i, h, g, use_reentrant=False)
            else:
                h = self._block(i, h, g)
        return (self.head(h) + self.skip(x)).squeeze(-1)
