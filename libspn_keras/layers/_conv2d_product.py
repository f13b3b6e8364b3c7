"""Convolutional log-products of Deep Generalized Convolutional SPNs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers._scope_tracking import Scopes, as_spatial
from libspn_keras.layers._spatial_scopes import SpatialScopeMixin
from libspn_keras.layers._validation import Shape, check_float_dtype, check_positive_int, check_rank, is_number
from libspn_keras.math import custom_gradient
from libspn_keras.math._backend import Tensor, add_n

SPATIAL_LAYOUT = "[batch, height, width, channels]"
PADDINGS = ("valid", "full", "final")


def _pair(layer: str, name: str, value: Any) -> tuple[int, int]:
    values = (value, value) if is_number(value) else value
    if (
        isinstance(values, str)
        or not isinstance(values, Sequence | np.ndarray)
        or len(values) != 2
        or any(not is_number(v) or int(v) != v or int(v) < 1 for v in values)
    ):
        raise ValueError(f"{layer} expects {name} to be two positive integers. Received: {name}={value!r}")
    return int(values[0]), int(values[1])


@keras.saving.register_keras_serializable(package="libspn_keras")
class Conv2DProduct(SpatialScopeMixin, keras.layers.Layer):
    """Convolutional product as described in (Van de Wolfshaar and Pronobis, 2019).

    Expects log-space inputs and produces log-space outputs. Each output cell is a product over a (dilated,
    strided) patch of ``kernel_size`` input cells, taking one channel per cell: in log-space, a convolution with
    one-hot kernels (a generalized convolutional log-product).

    * ``depthwise=True``: output channel ``c`` multiplies channel ``c`` of every cell of the patch (sum pooling
      in log-space); ``num_channels`` is ignored and equals the number of input channels.
    * ``depthwise=False``: output channel ``o`` multiplies, for each kernel cell, the input channel chosen by the
      layer's ``kernel_indices`` ``[kernel_h, kernel_w, num_channels]``. With ``num_channels=None`` all
      ``C ** (kernel_h * kernel_w)`` combinations are used (channel ``o`` takes channel ``(o // C**t) % C`` at
      kernel cell ``t`` in row-major order); otherwise ``num_channels`` distinct random combinations (seeded by
      ``seed``).

    The layer's one non-trainable weight is the original's ``onehot_kernel``: ``[kernel_h, kernel_w, C,
    num_channels]`` with a one at the selected input channel (``kernel_indices`` is its argmax over ``C``), or
    ``[kernel_h, kernel_w, 1, 1]`` ones if depthwise, so that weight files of the original load here and copying
    weights copies the channel selection.

    Padding cells have log-probability 0 (probability 1, an empty scope):

    * ``'valid'``: no padding (usually with non-overlapping patches, strides equal to the kernel extent);
    * ``'full'``: ``(kernel - 1) * dilation`` cells on both sides, used with unit strides and exponentially
      increasing dilations for overlapping patches;
    * ``'final'``: ``2 * ((kernel - 1) * dilation) - size`` cells before the input only (as in the original
      library), for the top product of a DGC-SPN whose output cells must each cover the whole image.

    Validity is checked when the layer is built inside a model: every product must have children with pairwise
    disjoint scopes (decomposability), otherwise a ``ValueError`` names the first offending cell.

    Args:
        strides: A tuple or list of strides.
        dilations: A tuple or list of dilations.
        kernel_size: A tuple or list of kernel sizes.
        num_channels: Number of channels. If ``None``, will be set to ``num_in_channels ** prod(kernel_sizes)``.
            This can be a source of OOM problems quickly: more than ``2**20`` such channels raise a
            ``ValueError`` when the layer is built (pass ``num_channels`` to draw that many combinations).
        padding: Can be either ``'full'``, ``'valid'`` or ``'final'``.
        depthwise: Whether to use depthwise convolutions. If ``True``, the value of ``num_channels`` is ignored.
        seed: Seed of the random channel combinations when ``num_channels`` is smaller than all combinations.
        **kwargs: Keyword arguments to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, height, width, channels]`` log-probabilities.

    Output shape:
        ``[batch, out_height, out_width, num_channels]`` with
        ``out = ceil((size + pad_before + pad_after - (kernel - 1) * dilation) / stride)``.

    Example:
        >>> import numpy as np
        >>> layer = Conv2DProduct(strides=2, dilations=1, kernel_size=2, depthwise=True)
        >>> tuple(layer(np.zeros((1, 4, 4, 3), "float32")).shape)
        (1, 2, 2, 3)
    """

    def __init__(
        self,
        strides: Sequence[int] | int,
        dilations: Sequence[int] | int,
        kernel_size: Sequence[int] | int,
        num_channels: int | None = None,
        padding: str = "valid",
        depthwise: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.strides = _pair("Conv2DProduct", "strides", strides)
        self.dilations = _pair("Conv2DProduct", "dilations", dilations)
        self.kernel_size = _pair("Conv2DProduct", "kernel_size", kernel_size)
        if padding not in PADDINGS:
            raise ValueError(f"Conv2DProduct expects padding in {PADDINGS}. Received: padding={padding!r}")
        if num_channels is not None:
            try:
                num_channels = check_positive_int("Conv2DProduct", "num_channels", num_channels)
            except ValueError:
                raise ValueError(
                    f"Conv2DProduct expects num_channels >= 1 or None. Received: num_channels={num_channels!r}"
                ) from None
        self.padding = padding
        self.depthwise = bool(depthwise)
        self.num_channels = num_channels
        self.seed = seed

    def _extent(self) -> tuple[int, int]:
        return (
            (self.kernel_size[0] - 1) * self.dilations[0] + 1,
            (self.kernel_size[1] - 1) * self.dilations[1] + 1,
        )

    def pad_sizes(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Return ``((top, bottom), (left, right))`` padding for an input of ``height x width`` cells."""
        pads = []
        for size, extent, kernel in zip((height, width), self._extent(), self.kernel_size, strict=True):
            if self.padding == "valid":
                pads.append((0, 0))
            elif self.padding == "full":
                pads.append((extent - 1, extent - 1))
            else:
                pads.append((max((extent - 1) * 2 - size, 0) if kernel > 1 else 0, 0))
        return pads[0], pads[1]

    def _out_sizes(self, height: int, width: int) -> tuple[int, int]:
        (top, bottom), (left, right) = self.pad_sizes(height, width)
        sizes = []
        for padded, extent, stride in zip(
            (height + top + bottom, width + left + right), self._extent(), self.strides, strict=True
        ):
            sizes.append(-(-(padded - extent + 1) // stride))
        return sizes[0], sizes[1]

    def build(self, input_shape: Shape) -> None:
        """Validate the geometry and decomposability, then create the non-trainable kernel weight."""
        check_rank(self.name, input_shape, 4, SPATIAL_LAYOUT)
        _, height, width, channels = input_shape
        if None in (height, width, channels):
            raise ValueError(f"Layer '{self.name}' needs known height, width and channels. Received: {input_shape}")
        out_h, out_w = self._out_sizes(height, width)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"Layer '{self.name}': a {self.kernel_size} kernel with dilations {self.dilations} and padding "
                f"'{self.padding}' does not fit an input of {height}x{width} cells. Received: input_shape={input_shape}"
            )
        self.output_scopes = self._product_scopes(self.input_scopes(height, width))
        self.input_spec = keras.InputSpec(shape=(None, height, width, channels))  # the geometry checked here
        if self.depthwise:
            self.num_channels = int(channels)
            self.onehot_kernel = self.add_weight(
                name="onehot_kernel", shape=(*self.kernel_size, 1, 1), initializer="ones", trainable=False
            )
            return
        total = int(channels) ** (self.kernel_size[0] * self.kernel_size[1])
        if self.num_channels is None and total > MAX_ALL_COMBINATIONS:
            raise ValueError(
                f"Layer '{self.name}' with num_channels=None forms every combination of {channels} input channels "
                f"over its {self.kernel_size} kernel: {total} output channels, more than {MAX_ALL_COMBINATIONS}. "
                "Pass num_channels=N to draw N distinct random combinations (seeded by seed), or use "
                f"depthwise=True. Received: num_channels=None, input_shape={tuple(input_shape)}"
            )
        if self.num_channels is None:
            self.num_channels = total
        if self.num_channels > total:
            raise ValueError(
                f"Layer '{self.name}' can form at most {total} distinct channel combinations from {channels} input "
                f"channels. Received: num_channels={self.num_channels}"
            )
        onehot = np.eye(int(channels))[self._combinations(int(channels), total)]  # [kh, kw, out, C]
        self.onehot_kernel = self.add_weight(
            name="onehot_kernel",
            shape=(*self.kernel_size, int(channels), self.num_channels),
            initializer=keras.initializers.Constant(np.swapaxes(onehot, -1, -2)),
            trainable=False,
        )

    @property
    def kernel_indices(self) -> Tensor:
        """The input channel each output channel takes per kernel cell, ``[kernel_h, kernel_w, num_channels]``."""
        return ops.cast(ops.argmax(self.onehot_kernel, axis=2), "int32")

    def _combinations(self, channels: int, total: int) -> np.ndarray:
        num_cells = self.kernel_size[0] * self.kernel_size[1]
        if self.num_channels == total:
            combos = np.arange(total, dtype=np.int64)
        else:
            combos = np.random.default_rng(self.seed).choice(total, size=self.num_channels, replace=False)
        # Kernel cell t (row-major) takes digit t of the combination in base C: the first cell varies fastest.
        digits = (combos[None, :] // channels ** np.arange(num_cells)[:, None]) % channels
        return digits.reshape(*self.kernel_size, -1).astype(np.int32)

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Scopes of the output cells: those of each patch's cells merged (checked for decomposability)."""
        scopes = as_spatial(self.name, scopes)
        return None if scopes is None else scopes.with_counts(self._product_scopes(scopes.counts))

    def _product_scopes(self, scopes: np.ndarray) -> np.ndarray:
        """Union of the children's scopes per output cell; raise if two children of a product overlap."""
        height, width, num_pixels = scopes.shape
        (top, bottom), (left, right) = self.pad_sizes(height, width)
        padded = np.pad(scopes, ((top, bottom), (left, right), (0, 0)))
        out_h, out_w = self._out_sizes(height, width)
        count = np.zeros((out_h, out_w, num_pixels), dtype=np.int64)
        for u in range(self.kernel_size[0]):
            for v in range(self.kernel_size[1]):
                count += self._patch_slice(padded, u, v, out_h, out_w)
        overlap = np.argwhere(count.max(axis=-1) > 1)
        if len(overlap):
            i, j = overlap[0]
            raise ValueError(
                f"Layer '{self.name}': the product at output cell ({i}, {j}) has children with overlapping scopes, "
                f"which breaks decomposability (kernel_size={self.kernel_size}, strides={self.strides}, "
                f"dilations={self.dilations}, padding='{self.padding}'). Overlapping patches need dilations that "
                "grow with the patch extent of the previous products (e.g. 1, 2, 4, ... with kernel size 2)."
            )
        return count

    def _patch_slice(self, padded: np.ndarray, u: int, v: int, out_h: int, out_w: int) -> np.ndarray:
        row, col = u * self.dilations[0], v * self.dilations[1]
        rows = slice(row, row + self.strides[0] * (out_h - 1) + 1, self.strides[0])
        cols = slice(col, col + self.strides[1] * (out_w - 1) + 1, self.strides[1])
        return padded[rows, cols]

    def _strided_view(self, x: Tensor, out_h: int, out_w: int) -> Tensor:
        """The padded input as ``[batch, rows, stride_h, cols, stride_w, channels]``.

        Padded row ``m * stride_h + r`` is ``view[:, m, r]``, so the cells of kernel cell ``(u, v)`` (padded rows
        ``i * stride_h + u * dilation_h``) are the unit-stride block starting at ``m = u * dilation_h //
        stride_h``, ``r = u * dilation_h % stride_h``: a slice, whose gradient is a ``Pad`` (TensorFlow), instead of a
        strided slice, whose gradient (``StridedSliceGrad``) is several times slower on CPU. Only the padded
        rows and columns some kernel cell reads are kept (zeros are appended where the view needs more).
        """
        _, height, width, channels = x.shape
        pads = self.pad_sizes(height, width)
        keeps, layout = [], []
        for size, (before, _), out, kernel, stride, dilation in zip(
            (height, width), pads, (out_h, out_w), self.kernel_size, self.strides, self.dilations, strict=True
        ):
            groups = out + (kernel - 1) * dilation // stride
            total = groups * stride  # the first `total` rows of the input padded with zeros below
            before = min(before, total)
            keep = min(max(total - before, 0), size)
            keeps.append(keep)
            layout.append((before, total - before - keep, groups, stride))
        (top, bottom, rows, stride_h), (left, right, cols, stride_w) = layout
        if keeps != [height, width]:  # input rows or columns no kernel cell reads
            x = ops.slice(x, [0, 0, 0, 0], [-1, keeps[0], keeps[1], -1])
        padded = ops.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
        return ops.reshape(padded, [-1, rows, stride_h, cols, stride_w, channels])

    def _cells(self, view: Tensor, u: int, v: int, out_h: int, out_w: int) -> Tensor:
        """Input cells ``[batch, out_h, out_w, channels]`` of kernel cell ``(u, v)`` of every patch."""
        (stride_h, stride_w), (dilation_h, dilation_w) = self.strides, self.dilations
        row, col = u * dilation_h, v * dilation_w
        begin = [0, row // stride_h, row % stride_h, col // stride_w, col % stride_w, 0]
        block = ops.slice(view, begin, [-1, out_h, 1, out_w, 1, -1])
        return ops.reshape(block, [-1, out_h, out_w, view.shape[-1]])

    def call(self, x: Tensor) -> Tensor:
        """Sum (log-space product) the selected channel of every cell of each patch.

        One unit-stride slice of the strided view per kernel cell (``_strided_view``), times the kernel's entry
        (depthwise; the kernel is all ones) or with the selected channels (a gather, whose gradient here is a
        matmul with the one-hot selection), added up. Not a convolution: a convolution can multiply ``-inf``
        inputs by zero taps (XLA does for depthwise convolutions in float64), giving NaN. A ``-inf`` input
        (impossible) makes every product it is a factor of ``-inf``, never NaN; padding cells contribute 0.
        """
        check_float_dtype(self.name, x.dtype)
        out_h, out_w = self._out_sizes(x.shape[1], x.shape[2])
        view = self._strided_view(x, out_h, out_w)
        # The one-hot kernels as channel indices (an argmax over a few thousand values at most, once per call).
        kernel = ops.cast(self.onehot_kernel[:, :, 0, 0], x.dtype) if self.depthwise else self.kernel_indices
        terms = []
        for u in range(self.kernel_size[0]):
            for v in range(self.kernel_size[1]):
                cells = self._cells(view, u, v, out_h, out_w)
                if self.depthwise:
                    terms.append(cells * kernel[u, v])
                else:
                    terms.append(gather_channels(cells, kernel[u, v]))
        return add_n(terms)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, out_height, out_width, num_channels]``."""
        batch, height, width, channels = input_shape
        out_h, out_w = self._out_sizes(height, width)
        if self.depthwise:
            num_channels = channels
        elif self.num_channels is not None:
            num_channels = self.num_channels
        else:
            num_channels = channels ** (self.kernel_size[0] * self.kernel_size[1])
        return (batch, out_h, out_w, num_channels)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {
            "strides": list(self.strides),
            "dilations": list(self.dilations),
            "kernel_size": list(self.kernel_size),
            "num_channels": None if self.depthwise else self.num_channels,
            "padding": self.padding,
            "depthwise": self.depthwise,
            "seed": self.seed,
            **super().get_config(),
        }


#: Most output channels ``Conv2DProduct(num_channels=None)`` forms (all ``C ** (kernel_h * kernel_w)`` combinations).
MAX_ALL_COMBINATIONS = 2**20


def gather_channels(x: Tensor, indices: Tensor) -> Tensor:
    """``ops.take(x, indices, axis=-1)`` whose gradient is a matmul with the one-hot selection.

    TensorFlow's gradient of a gather along the last axis transposes the signal twice around an
    ``UnsortedSegmentSum``; here each input channel receives the sum of the signals of the output channels that
    selected it as ``dy @ one_hot(indices)`` (exact: sums of the signal values).

    Args:
        x: ``[..., channels]``.
        indices: Selected channel of every output channel, ``[out_channels]`` (int32).

    Returns:
        ``[..., out_channels]``.
    """
    num_channels = x.shape[-1]

    @custom_gradient
    def gather(x: Tensor) -> tuple[Tensor, Any]:
        def grad(dy: Tensor) -> Tensor:
            one_hot = ops.one_hot(indices, num_channels, dtype=dy.dtype)  # [out_channels, channels]
            flat = ops.matmul(ops.reshape(dy, [-1, dy.shape[-1]]), one_hot)
            return ops.reshape(flat, ops.shape(x))

        return ops.take(x, indices, axis=-1), grad

    return gather(x)
