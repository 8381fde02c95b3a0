"""Prediction heads: map a fused ``[B, D]`` representation to ``[B, out_dim]`` (scores or class logits).

Models apply :func:`accord.models.base.squeeze_head` to the result so regression (``out_dim == 1``) gives ``[B]``.
"""

from __future__ import annotations

from torch import Tensor, nn

from accord.models.modules.attention import Dropout


class MLPHead(nn.Module):
    """``hidden_layers`` x (``Linear -> ReLU -> Dropout``) followed by ``Linear(., out_dim)``.

    With ``hidden_layers == 0`` it is a single linear layer. ``forward(x [B, in_dim]) -> [B, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 64, hidden_layers: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU(), Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResidualMLPHead(nn.Module):
    """MulT's output head (Tsai et al., ACL 2019, released code): ``h = x + W2 Drop(ReLU(W1 x))``, then
    ``Linear(h, out_dim)``. ``forward(x [B, in_dim]) -> [B, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj1 = nn.Linear(in_dim, in_dim)
        self.proj2 = nn.Linear(in_dim, in_dim)
        self.drop = Dropout(dropout)
        self.out = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj2(self.drop(self.proj1(x).relu()))
        return self.out(h + x)
