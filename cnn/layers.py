"""Layers of the network, each with forward and backward side by side.

Images travel through the network channels-first and then batch: (C, N, H, W).
A convolution's GEMM, weights (F, C*K*K) times im2col columns (C*K*K, N*H*W),
then lands directly in the next layer's layout, with no transpose, and every
im2col copy moves whole image rows. The model converts its (N, C, H, W) input
once at the door, and Flatten turns images back into (N, C*H*W) rows, in the same
order as PyTorch's.

A layer keeps what its backward needs from the last forward (and reuses its
work buffers between batches), so one layer object serves one thread at a time;
`Model.copy()` gives another thread its own.
"""

from __future__ import annotations

import numpy as np

DTYPE = np.float32


class Layer:
    """A step of the network. Layers without parameters keep `params` empty."""

    kind = "layer"

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._buffers: dict[str, np.ndarray] = {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # What a forward pass keeps of its batch for the backward pass (arrays, or views of
    # the work arrays in _buffers).
    _BATCH_STATE = ("_cols", "_rows", "_row_max", "_phases", "_input", "_output")

    def release(self) -> None:
        """Forget the last batch: the work arrays and what forward kept for backward
        (the next forward makes them again). The weights and gradients stay."""
        self._buffers.clear()
        for name in self._BATCH_STATE:
            self.__dict__.pop(name, None)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype, zeroed: bool = False) -> np.ndarray:
        """A work array kept between batches: allocating big arrays anew each batch
        makes glibc hand them back to the OS and page-fault them in again. `zeroed`
        zeroes it when it is made, for callers that only ever write part of it."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = (np.zeros if zeroed else np.empty)(shape, dtype)
            self._buffers[name] = buf
        return buf

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def conv_output_shape(input_shape: tuple[int, ...], filters: int, kernel: int, stride: int,
                      padding: int) -> tuple[int, int, int]:
    """(C, H, W) -> (F, H', W') of a convolution: one formula for the layer and for
    working out a spec's shapes without building it (cost.py)."""
    _, h, w = input_shape
    return (filters, (h + 2 * padding - kernel) // stride + 1,
            (w + 2 * padding - kernel) // stride + 1)


class Conv2D(Layer):
    """2D convolution (cross-correlation) with zero padding and a stride.

    weight: (F, C, K, K), the usual layout for showing filters; bias: (F,).
    """

    kind = "conv"

    def __init__(self, in_channels: int, filters: int, kernel: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        self.in_channels, self.filters, self.kernel = in_channels, filters, kernel
        self.stride, self.padding = stride, padding
        self.params["weight"] = np.zeros((filters, in_channels, kernel, kernel), DTYPE)
        self.params["bias"] = np.zeros(filters, DTYPE)
        self.needs_input_grad = True  # the model turns it off for the first layer

    def output_shape(self, input_shape):
        return conv_output_shape(input_shape, self.filters, self.kernel, self.stride,
                                 self.padding)

    def forward(self, x):
        # x: (C, N, H, W) -> (F, N, H', W')
        c, n, h, w = x.shape
        k = self.kernel
        f, ho, wo = self.output_shape((c, h, w))
        self._input_shape = x.shape
        padded, width = self._padded_input(x), self._row_width(w)
        # im2col with a last row of ones, so that the bias rides along in the GEMM.
        cols = self._buffer("cols", (c * k * k + 1, n * ho * width), x.dtype)
        cols[-1] = 1.0
        self._copy_taps(padded, cols[:-1].reshape(c, k, k, n, -1), ho, wo)
        self._cols = cols
        weight_and_bias = np.empty((f, c * k * k + 1), x.dtype)
        weight_and_bias[:, :-1] = self.params["weight"].reshape(f, -1)
        weight_and_bias[:, -1] = self.params["bias"]
        out = self._buffer("out", (f, n * ho * width), x.dtype)
        np.matmul(weight_and_bias, cols, out=out)
        return out.reshape(f, n, ho, width)[..., :wo]

    def backward(self, grad):
        # grad: (F, N, H', W') -> (C, N, H, W)
        f, n, ho, wo = grad.shape
        c, k, p = self.in_channels, self.kernel, self.padding
        _, _, h, w = self._input_shape
        width = self._row_width(w)
        if width != wo:  # the extra columns of wide rows get no gradient
            wide = self._buffer("grad_wide", (f, n, ho, width), grad.dtype, zeroed=True)
            wide[..., :wo] = grad
            grad = wide
        grad_rows = np.ascontiguousarray(grad).reshape(f, -1)
        grad_wb = (self._cols @ grad_rows.T).T  # weights and bias at once; this way
        self.grads["weight"] = grad_wb[:, :-1].reshape(self.params["weight"].shape)  # round
        self.grads["bias"] = np.ascontiguousarray(grad_wb[:, -1])  # BLAS runs twice as fast
        if not self.needs_input_grad:
            return None
        grad_taps = self._buffer("grad_taps", (c * k * k, grad_rows.shape[1]), grad.dtype)
        np.matmul(self.params["weight"].reshape(f, -1).T, grad_rows, out=grad_taps)
        grad_flat = self._buffer("grad_padded", self._flat_shape(c, n, h, w), grad.dtype)
        grad_flat.fill(0.0)
        self._add_taps_back(grad_flat, grad_taps.reshape(c, k, k, n, -1), ho, wo)
        return self._image_view(grad_flat, h, w)[:, :, p:p + h, p:p + w]

    # The padded input lives in a flat buffer, (C, N, Hp * Wp + K - 1). With stride 1
    # a kernel tap then reads one contiguous run per image, Ho whole padded rows of
    # Wp, which copies several times faster than Ho short rows of Wo; the GEMM computes
    # Wp - Wo extra columns per row, which are dropped. Other strides copy the taps
    # row by row.

    def _row_width(self, w: int) -> int:
        """Columns computed per output row: the padded width with stride 1."""
        k, s, p = self.kernel, self.stride, self.padding
        return w + 2 * p if s == 1 else (w + 2 * p - k) // s + 1

    def _flat_shape(self, c, n, h, w):
        p = self.padding
        return (c, n, (h + 2 * p) * (w + 2 * p) + self.kernel - 1)

    def _image_view(self, flat, h, w):
        c, n, _ = flat.shape
        hp, wp = h + 2 * self.padding, w + 2 * self.padding
        return flat[:, :, :hp * wp].reshape(c, n, hp, wp)

    def _padded_input(self, x):
        c, n, h, w = x.shape
        p = self.padding
        flat = self._buffer("padded", self._flat_shape(c, n, h, w), x.dtype, zeroed=True)
        # The border and the tail stay zero from the allocation; only the inside changes.
        self._image_view(flat, h, w)[:, :, p:p + h, p:p + w] = x
        return flat

    def _copy_taps(self, flat, taps, ho, wo):
        """taps: (C, K, K, N, columns) <- every kernel tap's view of the padded input."""
        k, s = self.kernel, self.stride
        if s == 1:
            run = taps.shape[-1]  # Ho padded rows per image
            wp = run // ho
            for i in range(k):
                for j in range(k):
                    taps[:, i, j] = flat[:, :, i * wp + j: i * wp + j + run]
            return
        padded = self._image_view(flat, *self._input_shape[2:])
        grid = taps.reshape(taps.shape[:4] + (ho, wo))
        for i in range(k):
            for j in range(k):
                grid[:, i, j] = padded[:, :, i:i + s * ho:s, j:j + s * wo:s]

    def _add_taps_back(self, flat, grad_taps, ho, wo):
        """col2im: the reverse of _copy_taps, adding each tap's gradient in place."""
        k, s = self.kernel, self.stride
        if s == 1:
            run = grad_taps.shape[-1]
            wp = run // ho
            for i in range(k):
                for j in range(k):
                    flat[:, :, i * wp + j: i * wp + j + run] += grad_taps[:, i, j]
            return
        padded = self._image_view(flat, *self._input_shape[2:])
        grid = grad_taps.reshape(grad_taps.shape[:4] + (ho, wo))
        for i in range(k):
            for j in range(k):
                padded[:, :, i:i + s * ho:s, j:j + s * wo:s] += grid[:, i, j]

    def __repr__(self):
        return (f"Conv2D({self.in_channels}->{self.filters}, kernel={self.kernel}, "
                f"stride={self.stride}, padding={self.padding})")


class MaxPool2D(Layer):
    """Max over non-overlapping size x size windows; a ragged edge is dropped.

    Done in two passes, over row pairs then column pairs (each pass a few whole-array
    maxima), which is cheaper than a reduction over a 6-d view of the windows.
    """

    kind = "maxpool"

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        self.size = size

    def output_shape(self, input_shape):
        c, h, w = input_shape
        return (c, h // self.size, w // self.size)

    def forward(self, x):
        # x: (C, N, H, W) -> (C, N, H // size, W // size)
        c, n, h, w = x.shape
        k = self.size
        ho, wo = h // k, w // k
        # A view where the strides allow it (a conv's wide rows do), else a copy.
        rows = x[:, :, :ho * k, :wo * k].reshape(c * n * ho, k, wo * k)
        row_max = _max_of(self._buffer("row_max", (c * n * ho, wo * k), x.dtype),
                          [rows[:, i] for i in range(k)])
        cols = row_max.reshape(c * n * ho * wo, k)
        out = _max_of(np.empty(c * n * ho * wo, x.dtype), [cols[:, i] for i in range(k)])
        self._input_shape, self._rows, self._row_max = (c, n, h, w), rows, row_max
        return out.reshape(c, n, ho, wo)

    def backward(self, grad):
        c, n, h, w = self._input_shape
        k = self.size
        ho, wo = h // k, w // k
        cols = self._row_max.reshape(c * n * ho * wo, k)
        grad_row_max = self._buffer("grad_row_max", cols.shape, grad.dtype)
        _route_to_first_max([cols[:, i] for i in range(k)], grad.reshape(-1),
                            [grad_row_max[:, i] for i in range(k)])
        grad_rows = self._buffer("grad_rows", self._rows.shape, grad.dtype)
        _route_to_first_max([self._rows[:, i] for i in range(k)],
                            grad_row_max.reshape(c * n * ho, wo * k),
                            [grad_rows[:, i] for i in range(k)], maxima=self._row_max)
        grad_input = grad_rows.reshape(c, n, ho * k, wo * k)
        if (ho * k, wo * k) != (h, w):
            padded = np.zeros(self._input_shape, grad.dtype)
            padded[:, :, :ho * k, :wo * k] = grad_input
            grad_input = padded
        return grad_input

    def __repr__(self):
        return f"MaxPool2D(size={self.size})"


def _max_of(out: np.ndarray, pieces: list[np.ndarray]) -> np.ndarray:
    np.maximum(pieces[0], pieces[1], out=out) if len(pieces) > 1 else np.copyto(out, pieces[0])
    for piece in pieces[2:]:
        np.maximum(out, piece, out=out)
    return out


def _route_to_first_max(pieces, grad, outputs, maxima=None) -> None:
    """Send each gradient to the first of the pieces that holds the maximum, and zero
    to the others. Only the first: equal values are common (a blank background), and
    routing to all of them would multiply those gradients."""
    if len(pieces) == 2:  # the common 2x2 pool: one comparison decides
        first_wins = pieces[0] >= pieces[1]
        np.multiply(grad, first_wins, out=outputs[0])
        np.subtract(grad, outputs[0], out=outputs[1])
        return
    if maxima is None:
        maxima = _max_of(np.empty_like(pieces[0]), pieces)
    unclaimed = np.ones(grad.shape, bool)
    for piece, out in zip(pieces[:-1], outputs[:-1]):
        hit = piece == maxima
        hit &= unclaimed
        np.multiply(grad, hit, out=out)
        unclaimed &= ~hit
    np.multiply(grad, unclaimed, out=outputs[-1])


class ConvPool(Layer):
    """A stride-1 Conv2D and the 2x2 MaxPool2D after it, run as one step.

    Not a layer of its own in a spec: the model runs this in place of the pair (the
    layers keep their parameters, gradients and meaning). The convolution computes
    its output in four blocks, one per position in the 2x2 pooling window (the
    "phases"): the pool is then a maximum of four contiguous blocks, and its
    gradient four contiguous masks, instead of strided passes over the full map.
    To make every im2col copy one contiguous run, the padded input is split the same
    way into four sub-images (rows and columns of one parity each), the batch's laid
    end to end, and the output is computed over their whole grid: the rows and
    columns that fall outside the image are computed too, and dropped.
    """

    kind = "conv+maxpool"

    def __init__(self, conv: Conv2D) -> None:
        super().__init__()
        self.conv = conv
        self.params, self.grads = conv.params, conv.grads
        self.needs_input_grad = conv.needs_input_grad

    @staticmethod
    def fits(conv: Layer, pool: Layer, input_shape: tuple[int, ...]) -> bool:
        """Whether this pair can run fused: stride 1, a 2x2 pool, an even output."""
        if not (isinstance(conv, Conv2D) and isinstance(pool, MaxPool2D)):
            return False
        _, ho, wo = conv.output_shape(input_shape)
        return conv.stride == 1 and pool.size == 2 and ho % 2 == 0 and wo % 2 == 0

    def output_shape(self, input_shape):
        f, ho, wo = self.conv.output_shape(input_shape)
        return (f, ho // 2, wo // 2)

    def forward(self, x):
        # x: (C, N, H, W) -> (F, N, H'/2, W'/2)
        c, n, h, w = x.shape
        k, f = self.conv.kernel, self.conv.filters
        geometry = self._geometry(x.shape)
        self._input_shape, self._geometry_cache = x.shape, geometry
        h2, w2, hq, wq = geometry["h2"], geometry["w2"], geometry["hq"], geometry["wq"]
        run = n * hq * wq  # every image's whole sub-image grid, one after the other
        subimages = self._split_into_phases(x, geometry)
        cols = self._buffer("cols", (c * k * k + 1, 4 * run), x.dtype)
        cols[-1] = 1.0
        taps = cols[:-1].reshape(c, k, k, 4, run)
        for i, j, phase, parity, offset in self._tap_sources(wq):
            taps[:, i, j, phase] = subimages[parity][:, offset:offset + run]
        self._cols = cols
        weight_and_bias = np.empty((f, c * k * k + 1), x.dtype)
        weight_and_bias[:, :-1] = self.params["weight"].reshape(f, -1)
        weight_and_bias[:, -1] = self.params["bias"]
        out = self._buffer("out", (f, 4 * run), x.dtype)
        np.matmul(weight_and_bias, cols, out=out)
        phases = out.reshape(f, 4, run)
        self._phases = [phases[:, q] for q in range(4)]
        pooled = _max_of(self._buffer("pooled", (f, run), x.dtype), self._phases)
        return pooled.reshape(f, n, hq, wq)[:, :, :h2, :w2]

    def backward(self, grad):
        # grad: (F, N, H'/2, W'/2) -> (C, N, H, W)
        f, n, h2, w2 = grad.shape
        c, k = self.conv.in_channels, self.conv.kernel
        geometry = self._geometry_cache
        hq, wq = geometry["hq"], geometry["wq"]
        run = n * hq * wq
        wide = self._buffer("grad_wide", (f, n, hq, wq), grad.dtype, zeroed=True)
        wide[:, :, :h2, :w2] = grad  # the extra rows and columns stay zero: no gradient
        grad_phases = self._buffer("grad_phases", (f, 4, run), grad.dtype)
        _route_to_first_max(self._phases, wide.reshape(f, -1),
                            [grad_phases[:, q] for q in range(4)],
                            maxima=self._buffers["pooled"])
        grad_rows = grad_phases.reshape(f, -1)
        grad_wb = (self._cols @ grad_rows.T).T
        self.grads["weight"] = grad_wb[:, :-1].reshape(self.params["weight"].shape)
        self.grads["bias"] = np.ascontiguousarray(grad_wb[:, -1])
        if not self.needs_input_grad:
            return None
        grad_taps = self._buffer("grad_taps", (c * k * k, grad_rows.shape[1]), grad.dtype)
        np.matmul(self.params["weight"].reshape(f, -1).T, grad_rows, out=grad_taps)
        grad_taps = grad_taps.reshape(c, k, k, 4, run)
        grad_subimages = self._buffer("grad_subimages", (4, c, run + geometry["slack"]),
                                      grad.dtype)
        grad_subimages.fill(0.0)
        for i, j, phase, parity, offset in self._tap_sources(wq):
            grad_subimages[parity][:, offset:offset + run] += grad_taps[:, i, j, phase]
        return self._merge_phases(grad_subimages, geometry)

    # -- the phase geometry ----------------------------------------------------------------

    def _geometry(self, input_shape) -> dict:
        _, _, h, w = input_shape
        k, p = self.conv.kernel, self.conv.padding
        _, ho, wo = self.conv.output_shape((self.conv.in_channels, h, w))
        hq, wq = -(-(h + 2 * p) // 2), -(-(w + 2 * p) // 2)  # sub-image sizes
        # slack: the runs of the last image's taps reach past the end of its grid.
        return {"h2": ho // 2, "w2": wo // 2, "hq": hq, "wq": wq, "slack": (k // 2 + 1) * (wq + 1)}

    def _tap_sources(self, wq: int):
        """For each kernel tap and output phase: the input sub-image and offset its
        contiguous run starts at (output (2u+a, 2v+b) reads padded (2u+a+i, 2v+b+j))."""
        k = self.conv.kernel
        for i in range(k):
            for j in range(k):
                for a in range(2):
                    for b in range(2):
                        parity = 2 * ((a + i) % 2) + (b + j) % 2
                        offset = ((a + i) // 2) * wq + (b + j) // 2
                        yield i, j, 2 * a + b, parity, offset

    def _parity_slices(self, geometry, h: int, w: int):
        """For each sub-image (row parity r, column parity s): which pixels of the
        unpadded input it holds, and where they sit in the sub-image."""
        p = self.conv.padding
        for r in range(2):
            for s in range(2):
                y0, x0 = (r - p) % 2, (s - p) % 2
                rows, cols = len(range(y0, h, 2)), len(range(x0, w, 2))
                u0, v0 = (y0 + p - r) // 2, (x0 + p - s) // 2
                yield 2 * r + s, (slice(y0, None, 2), slice(x0, None, 2)), \
                    (slice(u0, u0 + rows), slice(v0, v0 + cols))

    def _split_into_phases(self, x, geometry):
        c, n, h, w = x.shape
        hq, wq = geometry["hq"], geometry["wq"]
        subimages = self._buffer("subimages", (4, c, n * hq * wq + geometry["slack"]), x.dtype,
                                 zeroed=True)  # the padding stays zero: only the inside is written
        for parity, (ys, xs), (us, vs) in self._parity_slices(geometry, h, w):
            grid = subimages[parity][:, :n * hq * wq].reshape(c, n, hq, wq)
            grid[:, :, us, vs] = x[:, :, ys, xs]
        return subimages

    def _merge_phases(self, grad_subimages, geometry):
        c, n, h, w = self._input_shape
        hq, wq = geometry["hq"], geometry["wq"]
        grad_input = self._buffer("grad_input", (c, n, h, w), grad_subimages.dtype)
        for parity, (ys, xs), (us, vs) in self._parity_slices(geometry, h, w):
            grid = grad_subimages[parity][:, :n * hq * wq].reshape(c, n, hq, wq)
            grad_input[:, :, ys, xs] = grid[:, :, us, vs]
        return grad_input

    def __repr__(self):
        return f"ConvPool({self.conv!r}, MaxPool2D(size=2))"


class Dense(Layer):
    """Fully connected: weight (in, out), bias (out,)."""

    kind = "dense"

    def __init__(self, in_features: int, units: int) -> None:
        super().__init__()
        self.in_features, self.units = in_features, units
        self.params["weight"] = np.zeros((in_features, units), DTYPE)
        self.params["bias"] = np.zeros(units, DTYPE)
        self.needs_input_grad = True

    def output_shape(self, input_shape):
        return (self.units,)

    def forward(self, x):
        # x: (N, in) -> (N, units)
        self._input = x
        out = x @ self.params["weight"]
        out += self.params["bias"]
        return out

    def backward(self, grad):
        # grad: (N, units) -> (N, in)
        self.grads["weight"] = self._input.T @ grad
        self.grads["bias"] = grad.sum(axis=0)
        if not self.needs_input_grad:
            return None
        return grad @ self.params["weight"].T

    def __repr__(self):
        return f"Dense({self.in_features}->{self.units})"


class Flatten(Layer):
    kind = "flatten"

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x):
        # x: (C, N, H, W) -> (N, C*H*W)
        self._shape = x.shape
        return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)

    def backward(self, grad):
        # grad: (N, C*H*W) -> (C, N, H, W)
        c, n, h, w = self._shape
        return grad.reshape(n, c, h, w).transpose(1, 0, 2, 3)

    def __repr__(self):
        return "Flatten()"


class ReLU(Layer):
    kind = "relu"

    def forward(self, x):
        self._output = np.maximum(x, 0.0, out=self._buffer("out", x.shape, x.dtype))
        return self._output

    def backward(self, grad):
        positive = np.greater(self._output, 0.0, out=self._buffer("positive", grad.shape, bool))
        return np.multiply(grad, positive, out=self._buffer("grad_input", grad.shape, grad.dtype))

    def __repr__(self):
        return "ReLU()"


class Sigmoid(Layer):
    kind = "sigmoid"

    def forward(self, x):
        # exp of a large negative input overflows to inf, and 1/inf is the right 0.
        with np.errstate(over="ignore"):
            out = np.exp(-x)
        out += 1.0
        np.reciprocal(out, out=out)
        self._output = out
        return out

    def backward(self, grad):
        y = self._output
        return grad * y * (1.0 - y)

    def __repr__(self):
        return "Sigmoid()"


class Tanh(Layer):
    kind = "tanh"

    def forward(self, x):
        self._output = np.tanh(x)
        return self._output

    def backward(self, grad):
        y = self._output
        return grad * (1.0 - y * y)

    def __repr__(self):
        return "Tanh()"
