"""int8 dynamic quantization whose results do not depend on the batch: one activation scale per row.

PyTorch's dynamic quantized linear (fbgemm) quantizes its whole input tensor with one scale from the tensor's min
and max, so the vector of one image depends on the other images of its batch, and Beam decides the batches. Here each
row (token) is divided by its largest magnitude, exactly, so every row lies in [-1, 1] with an element at +-1, and two
constant rows of +1 and -1 are appended: the range fbgemm computes is then always [-1, 1], whatever else is in the
batch. The int8 product accumulates exactly in int32; the row's scale and the bias are applied afterwards in
float32. Per-token scales are also more accurate than one scale per tensor.
"""

import warnings

import torch


class RowScaledInt8Linear(torch.nn.Module):
    """A ``torch.nn.Linear`` with int8 weights (per tensor) and int8 activations scaled per row."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        plain = torch.nn.Linear(linear.in_features, linear.out_features, bias=False)
        plain.weight.data = linear.weight.detach().float().clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated for torchao, still supported
            self.quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(plain), {torch.nn.Linear})[0]
        self.register_buffer("bias", linear.bias.detach().float().clone() if linear.bias is not None else None)
        ones = torch.ones(linear.in_features)
        self.register_buffer("bounds", torch.stack([ones, -ones]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        low, high = torch.aminmax(rows, dim=1, keepdim=True)  # several times faster than abs().amax() on CPU
        scale = torch.maximum(high, low.neg()).clamp_min(1e-30)
        scaled = torch.empty((rows.shape[0] + 2, rows.shape[1]), dtype=rows.dtype)
        torch.div(rows, scale, out=scaled[:-2])
        scaled[-2:] = self.bounds
        out = self.quantized(scaled)[:-2]
        out = torch.addcmul(self.bias, out, scale) if self.bias is not None else out * scale
        return out.reshape(*shape[:-1], out.shape[-1])


def quantize_rows(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every plain ``torch.nn.Linear`` replaced by a ``RowScaledInt8Linear`` (in place)."""
    for name, child in module.named_children():
        if type(child) is torch.nn.Linear:
            setattr(module, name, RowScaledInt8Linear(child))
        else:
            quantize_rows(child)
    return module
