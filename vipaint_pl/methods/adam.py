"""Adam on one tensor with a host step count: the per-step update of ``torch.optim.Adam`` / ``AdamW`` as their
single-tensor path runs it, with fewer operators around it.

Adam (Kingma and Ba, ICLR 2015, Algorithm 1), with AdamW's decoupled weight decay (Loshchilov and Hutter, ICLR
2019):
    p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr / (1 - b1^n) * m / (sqrt(v) / sqrt(1 - b2^n) + eps).
The operations and their order are those of torch's single-tensor update (not capturable), so the result is bitwise
the same as ``torch.optim.Adam(..., foreach=False)``; what it leaves out is the step counter kept as a tensor (an
increment and a read-back a step) and the profiler records around ``step`` and ``zero_grad``: 7 operators a step
(8 with weight decay), 6 fewer than torch's step and zero_grad. RED-diff and ReSample's fits take one Adam step per
network call on one tensor, where those six are a visible share of the work around the network. (On a GPU torch's
default is its foreach update: on a CPU it too gives bitwise this update; on a GPU not checked.)
"""

from __future__ import annotations

import torch
from torch import Tensor


class OneTensorAdam:
    """Adam (AdamW with ``weight_decay`` > 0) on ``param``; ``step()`` reads ``param.grad`` and clears it."""

    def __init__(self, param: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.param, self.lr, self.eps, self.weight_decay = param, float(lr), float(eps), float(weight_decay)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.steps = 0.0  # n, as torch's counter holds it (a float)

    @torch.no_grad()
    def step(self) -> None:
        param, grad = self.param, self.param.grad
        self.steps += 1
        if self.weight_decay != 0:
            param.mul_(1 - self.lr * self.weight_decay)
        self.exp_avg.lerp_(grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        step_size = self.lr / (1 - self.beta1**self.steps)
        denom = (self.exp_avg_sq.sqrt() / (1 - self.beta2**self.steps) ** 0.5).add_(self.eps)
        param.addcdiv_(self.exp_avg, denom, value=-step_size)
        param.grad = None
