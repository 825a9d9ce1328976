"""Inputs shared by the statistics tests (SASE, arXiv 2411.08333): a small
float64 map with ties of the maximum, a gate, and the plain central sums."""
import torch

B, C, H, W = 2, 5, 3, 4
DT = torch.float64


def feature_map(ties: bool = True) -> torch.Tensor:
    """(B, C, H, W) float64; with ``ties``, repeated maxima over H, W and
    over C, and a constant channel."""
    torch.manual_seed(0)
    x = torch.randn(B, C, H, W, dtype=DT)
    if ties:
        x[0, 1, 0, 0] = x[0, 1, 2, 3] = x[0, 1].max() + 1
        x[1, :, 1, 1] = x[1, :, 1, 1].max()
        x[1, 3] = 0.25
    return x


def gate() -> torch.Tensor:
    """A positive (B, C, 1, 1) gate."""
    return torch.rand(B, C, 1, 1, dtype=DT) + 0.5


def central_plain(x, dims):
    """(sum d^2, sum d^3) over ``dims``, d = x - mean, in plain torch."""
    d = x - x.mean(dims, keepdim=True)
    return d.pow(2).sum(dims, keepdim=True), d.pow(3).sum(dims, keepdim=True)
