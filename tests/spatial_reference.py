"""Independent numpy loop implementations of the spatial (DGC-SPN) layers, for brute-force checks.

Everything is log-space on ``[batch, height, width, channels]`` arrays and written with explicit loops over output
cells and kernel cells (channels are gathered with index vectors). Padding cells are never materialized: a kernel
cell that falls outside the input contributes log-probability 0 (probability 1).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from scipy.special import logsumexp, softmax


def conv_pads(size: int, kernel: int, dilation: int, padding: str) -> tuple[int, int]:
    """``(before, after)`` padding of one spatial axis, as documented by ``Conv2DProduct``."""
    extent = (kernel - 1) * dilation + 1
    if padding == "valid":
        return 0, 0
    if padding == "full":
        return extent - 1, extent - 1
    if padding == "final":
        return (max(2 * (extent - 1) - size, 0) if kernel > 1 else 0), 0
    raise ValueError(padding)


def conv_out_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    before, after = conv_pads(size, kernel, dilation, padding)
    extent = (kernel - 1) * dilation + 1
    return (size + before + after - extent) // stride + 1


def all_combinations(channels: int, kernel_size: tuple[int, int]) -> np.ndarray:
    """Documented channel order of ``num_channels=None``: output channel ``o`` takes input channel
    ``(o // C**t) % C`` at kernel cell ``t`` (row-major), i.e. kernel cell 0 varies fastest."""
    num_cells = kernel_size[0] * kernel_size[1]
    indices = np.zeros((*kernel_size, channels**num_cells), np.int64)
    for o in range(channels**num_cells):
        for t in range(num_cells):
            u, v = divmod(t, kernel_size[1])
            indices[u, v, o] = (o // channels**t) % channels
    return indices


def patch_children(
    input_size: tuple[int, int],
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    padding: str,
) -> Iterator[tuple[int, int, int, int, int, int]]:
    """``(i, j, u, v, row, col)``: kernel cell ``(u, v)`` of the product at output cell ``(i, j)`` is input cell
    ``(row, col)``; kernel cells on padding cells (log-probability 0) are left out."""
    height, width = input_size
    (top, _), (left, _) = (
        conv_pads(height, kernel_size[0], dilations[0], padding),
        conv_pads(width, kernel_size[1], dilations[1], padding),
    )
    out_h = conv_out_size(height, kernel_size[0], strides[0], dilations[0], padding)
    out_w = conv_out_size(width, kernel_size[1], strides[1], dilations[1], padding)
    for i, j in itertools.product(range(out_h), range(out_w)):
        for u, v in itertools.product(range(kernel_size[0]), range(kernel_size[1])):
            row = i * strides[0] + u * dilations[0] - top
            col = j * strides[1] + v * dilations[1] - left
            if 0 <= row < height and 0 <= col < width:
                yield i, j, u, v, row, col


def product_terms(
    spatial_shape: tuple[int, int],
    num_out: int,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    padding: str,
    kernel_indices: np.ndarray | None,
    kernel_weights: np.ndarray | None,
):
    """The terms of a Conv2DProduct: ``(i, j, row, col, channels, weight)`` per output cell and non-padding child.

    Output channel ``o`` of cell ``(i, j)`` adds ``weight`` times channel ``channels[o]`` of input cell ``(row,
    col)``: channel ``o`` itself (depthwise, ``kernel_indices=None``) or ``kernel_indices[u, v, o]``; ``weight`` is
    the depthwise kernel's entry for the kernel cell (default 1).
    """
    for i, j, u, v, row, col in patch_children(spatial_shape, kernel_size, strides, dilations, padding):
        channels = np.arange(num_out) if kernel_indices is None else kernel_indices[u, v]
        weight = 1.0 if kernel_weights is None else kernel_weights[u, v]
        yield i, j, row, col, channels, weight


def conv2d_product(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    padding: str,
    kernel_indices: np.ndarray | None,
    kernel_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Log-space products over dilated, strided patches; ``kernel_indices=None`` means depthwise.

    ``kernel_weights`` (depthwise only): the factor of each kernel cell's child (default: all ones).
    """
    batch, height, width, channels = x.shape
    out_h = conv_out_size(height, kernel_size[0], strides[0], dilations[0], padding)
    out_w = conv_out_size(width, kernel_size[1], strides[1], dilations[1], padding)
    num_out = channels if kernel_indices is None else kernel_indices.shape[-1]
    out = np.zeros((batch, out_h, out_w, num_out), x.dtype)
    geometry = (kernel_size, strides, dilations, padding, kernel_indices, kernel_weights)
    for i, j, row, col, channels_used, weight in product_terms((height, width), num_out, *geometry):
        out[:, i, j, :] += weight * x[:, row, col, channels_used]
    return out


def conv2d_product_input_gradient(
    dy: np.ndarray,
    input_shape: tuple[int, ...],
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    padding: str,
    kernel_indices: np.ndarray | None,
    kernel_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of ``sum(dy * conv2d_product(x))`` with respect to ``x``: each child gets the signal of every product
    it is a factor of (times the kernel weight of its kernel cell, depthwise); padding cells pass nothing on."""
    dx = np.zeros(input_shape, dy.dtype)
    geometry = (kernel_size, strides, dilations, padding, kernel_indices, kernel_weights)
    for i, j, row, col, channels, weight in product_terms(input_shape[1:3], dy.shape[-1], *geometry):
        # Several output channels may select the same input channel: unbuffered addition.
        np.add.at(dx, (slice(None), row, col, channels), weight * dy[:, i, j, :])
    return dx


def product_scopes(
    scopes: np.ndarray,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    padding: str,
) -> tuple[np.ndarray, bool]:
    """Scopes ``[H, W, num_pixels]`` of a product layer's output cells and whether every product is decomposable."""
    height, width, num_pixels = scopes.shape
    (top, _), (left, _) = (
        conv_pads(height, kernel_size[0], dilations[0], padding),
        conv_pads(width, kernel_size[1], dilations[1], padding),
    )
    out_h = conv_out_size(height, kernel_size[0], strides[0], dilations[0], padding)
    out_w = conv_out_size(width, kernel_size[1], strides[1], dilations[1], padding)
    out = np.zeros((out_h, out_w, num_pixels), bool)
    decomposable = True
    for i, j in itertools.product(range(out_h), range(out_w)):
        for u, v in itertools.product(range(kernel_size[0]), range(kernel_size[1])):
            row = i * strides[0] + u * dilations[0] - top
            col = j * strides[1] + v * dilations[1] - left
            if 0 <= row < height and 0 <= col < width:
                decomposable &= not np.any(out[i, j] & scopes[row, col])
                out[i, j] |= scopes[row, col]
    return out, decomposable


def normalized_log_weights(accumulators: np.ndarray, logspace: bool) -> np.ndarray:
    """Log of the weights, normalized over the input axis (``-2``)."""
    if logspace:
        return np.log(softmax(accumulators, axis=-2))
    return np.log(accumulators / accumulators.sum(axis=-2, keepdims=True))


def spatial_sum(x: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    """Weighted sums per cell; ``log_weights`` is ``[H, W, C, O]`` (local) or ``[1, 1, C, O]`` / ``[C, O]`` (shared)."""
    batch, height, width, _ = x.shape
    if log_weights.ndim == 4 and log_weights.shape[:2] == (1, 1):  # Conv2DSum's [1, 1, C, O]: one 1x1 kernel
        log_weights = log_weights[0, 0]
    num_out = log_weights.shape[-1]
    out = np.zeros((batch, height, width, num_out), x.dtype)
    for i, j, o in itertools.product(range(height), range(width), range(num_out)):
        w = log_weights[:, o] if log_weights.ndim == 2 else log_weights[i, j, :, o]
        out[:, i, j, o] = logsumexp(x[:, i, j, :] + w, axis=-1)
    return out


def spatial_to_regions(x: np.ndarray) -> np.ndarray:
    """Node ``(i * W + j) * C + c`` of the single region is channel ``c`` of cell ``(i, j)``."""
    batch, height, width, channels = x.shape
    out = np.zeros((batch, 1, 1, height * width * channels), x.dtype)
    for i, j, c in itertools.product(range(height), range(width), range(channels)):
        out[:, 0, 0, (i * width + j) * channels + c] = x[:, i, j, c]
    return out


def indicator_leaf(x: np.ndarray, num_states: int) -> np.ndarray:
    """``[batch, H, W, 1]`` states (``NaN`` = missing) to ``[batch, H, W, num_states]`` log-indicators."""
    out = np.full((*x.shape[:-1], num_states), -np.inf)
    for state in range(num_states):
        out[..., state] = np.where(np.isnan(x[..., 0]) | (x[..., 0] == state), 0.0, -np.inf)
    return out
