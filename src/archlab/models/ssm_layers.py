"""Sequence mixers of the SSM family (see :mod:`archlab.models.ssm`), each causal, each with
a convolution/scan mode for training and a recurrent ``step`` mode for streaming.

Every mixer maps u (B, L, H) -> y (B, L, H), and ``step(u_t (B, H), state) -> (y_t, state)``
with ``state=None`` meaning "start of the sequence". Feeding a sequence one step at a time gives
the same outputs as the whole-sequence forward (tested).

- :class:`S4DLayer` - diagonal SSM, Gu, Gupta, Goel & Re 2022, "On the Parameterization and
  Initialization of Diagonal State Space Models" (S4D).
- :class:`SelectiveSSM` - the Mamba block, Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling
  with Selective State Spaces", with its selective scan written as a plain PyTorch loop.
- :class:`LongConv` - a crude SSM proxy: a causal depthwise convolution with a long kernel
  (the idea behind Hyena's long convolutions, Poli et al. 2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class S4DLayer(nn.Module):
    """S4D: a diagonal state-space model per channel, applied as a long convolution.

    Continuous system per channel h (Gu et al. 2022, S4D):
        x'(t) = A x(t) + B u(t),  y(t) = C x(t) + D u(t),  A = diag(a_1..a_N) complex.
    S4D-Lin init: a_n = -1/2 + i pi n; B = 1 (folded into C); C ~ CN(0, 1);
    log dt ~ U[log dt_min, log dt_max].
    Zero-order hold with step dt: A~ = exp(dt A), B~ = (exp(dt A) - 1) / A * B.
    Unrolled, y = K * u + D u with the kernel
        K[l] = 2 Re( sum_n C_n B~_n A~_n^l ),  l = 0..L-1
    (the 2 Re(.) because the N/2 stored modes stand for conjugate pairs: d_state real dims).
    Training: K is built by a Vandermonde product and convolved with u by FFT in O(L log L),
    zero-padded to 2L so the circular convolution is causal. Streaming: the recurrence
        s_t = A~ s_{t-1} + u_t,  y_t = 2 Re(sum_n (C B~)_n s_{t,n}) + D u_t.
    The output goes through GELU and a GLU projection, as in the S4D reference block.
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        h, n = d_model, d_state // 2
        log_dt = torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        # complex C stored as (H, N, 2) real: safetensors and optimisers see plain floats
        self.C = nn.Parameter(torch.randn(h, n, 2) * math.sqrt(0.5))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(h, n)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n, dtype=torch.float32).repeat(h, 1))
        self.D = nn.Parameter(torch.randn(h))
        self.out = nn.Linear(h, 2 * h)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dt*A, A~, C*B~), each (H, N) complex."""
        dt = torch.exp(self.log_dt)  # (H,)
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N)
        dtA = A * dt[:, None]
        CB = torch.view_as_complex(self.C) * (torch.exp(dtA) - 1.0) / A  # C * B~ with B = 1
        return dtA, torch.exp(dtA), CB

    def kernel(self, length: int) -> torch.Tensor:
        """The SSM convolution kernel K, (H, L) real."""
        dtA, _, CB = self._discrete()
        powers = torch.exp(dtA[:, :, None] * torch.arange(length, device=dtA.device))  # (H, N, L): A~^l
        return 2 * torch.einsum("hn,hnl->hl", CB, powers).real

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        return F.glu(self.out(F.gelu(y)), dim=-1)  # (..., H) -> (..., 2H) -> (..., H)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, H) -> y (B, L, H), by FFT convolution with the SSM kernel."""
        length = u.shape[1]
        k = self.kernel(length)  # (H, L)
        u_t = u.transpose(1, 2)  # (B, L, H) -> (B, H, L)
        n = 2 * length  # pad so circular convolution = causal linear convolution
        y = torch.fft.irfft(torch.fft.rfft(u_t, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :length]
        y = y + u_t * self.D[:, None]
        return self._output(y.transpose(1, 2))  # (B, H, L) -> (B, L, H)

    def step(self, u_t: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: u_t (B, H) -> y_t (B, H); state (B, H, N) complex."""
        _, dA, CB = self._discrete()
        if state is None:
            state = torch.zeros(u_t.shape[0], *dA.shape, dtype=dA.dtype, device=u_t.device)
        state = dA * state + u_t[:, :, None]  # s_t = A~ s_{t-1} + u_t (B~ is folded into C)
        y = 2 * torch.einsum("hn,bhn->bh", CB, state).real + self.D * u_t
        return self._output(y), state


class SelectiveSSM(nn.Module):
    """Mamba block (Gu & Dao 2023, Algorithm 2 and Figure 3) with a sequential scan.

    x, z = split(Linear(u));  x = SiLU(causal depthwise conv(x))
    delta = softplus(Linear(Linear(x)) ),  B_t = Linear_B(x_t),  C_t = Linear_C(x_t)   (selection)
    A = -exp(A_log) real diagonal, S4D-Real init a_n = -(n + 1)
    A~_t = exp(delta_t A),  B~_t x_t = delta_t B_t x_t  (the paper's simplified ZOH for B)
    h_t = A~_t h_{t-1} + B~_t x_t,  y_t = C_t h_t + D x_t;  out = Linear(y * SiLU(z))
    Because delta, B, C depend on the input, the system is time-varying and has no convolution
    form: the scan here is a Python loop over L (O(L) steps, fine for the short sequences of
    this workbench; the paper's fused parallel-scan kernel is CUDA-only).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        d_inner = expand * d_model
        self.d_inner, self.d_state, self.d_conv = d_inner, d_state, d_conv
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner)
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        # bias = softplus^-1(dt) with dt log-uniform in [dt_min, dt_max], so delta starts there
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model)

    def _selective(self, x: torch.Tensor):
        """delta (..., Di), B (..., N), C (..., N) from x (..., Di)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, H) -> (B, L, H)."""
        length = u.shape[1]
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, Di) each
        x = F.silu(self.conv(x.transpose(1, 2))[..., :length].transpose(1, 2))  # causal: keep first L
        delta, B, C = self._selective(x)
        A = -torch.exp(self.A_log)  # (Di, N)
        dA = torch.exp(delta[..., None] * A)  # (B, L, Di, N)
        dBx = delta[..., None] * B[:, :, None, :] * x[..., None]  # (B, L, Di, N)
        h = u.new_zeros(u.shape[0], self.d_inner, self.d_state)
        ys = []
        for t in range(length):  # sequential selective scan
            h = dA[:, t] * h + dBx[:, t]
            ys.append((h * C[:, t, None, :]).sum(-1))  # (B, Di)
        y = torch.stack(ys, dim=1) + x * self.D  # (B, L, Di)
        return self.out_proj(y * F.silu(z))

    def step(self, u_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """One step: u_t (B, H) -> y_t (B, H); state = (conv window (B, Di, d_conv-1), h (B, Di, N))."""
        b = u_t.shape[0]
        if state is None:
            state = (u_t.new_zeros(b, self.d_inner, self.d_conv - 1), u_t.new_zeros(b, self.d_inner, self.d_state))
        window, h = state
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (B, Di)
        window = torch.cat([window, x[:, :, None]], dim=-1)  # (B, Di, d_conv): x_{t-k+1..t}
        x = F.silu((window * self.conv.weight[:, 0, :]).sum(-1) + self.conv.bias)
        delta, B, C = self._selective(x)
        A = -torch.exp(self.A_log)
        h = torch.exp(delta[..., None] * A) * h + delta[..., None] * B[:, None, :] * x[..., None]
        y = (h * C[:, None, :]).sum(-1) + x * self.D
        return self.out_proj(y * F.silu(z)), (window[..., 1:], h)


class LongConv(nn.Module):
    """A long-convolution stand-in for an SSM: causal depthwise conv, kernel k.

    y_t = sum_{j<k} w_j u_{t-j} per channel, then GELU and a pointwise Linear. The naive sketch
    pads k-1 on both sides without cropping, which returns L + k - 1 steps and sees the future;
    here only the first L outputs are kept, so y_t depends on u_{<=t}. The GELU + Linear make a
    stack of these blocks non-linear (a bare conv is linear). Receptive field: k steps.
    """

    def __init__(self, d_model: int, kernel_size: int = 64):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, padding=kernel_size - 1)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, H) -> (B, L, H)."""
        length = u.shape[1]
        y = self.conv(u.transpose(1, 2))[..., :length].transpose(1, 2)  # (B, H, L+k-1) -> (B, L, H)
        return self.out(F.gelu(y))

    def step(self, u_t: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: u_t (B, H) -> y_t (B, H); state = last k-1 inputs (B, H, k-1)."""
        if state is None:
            state = u_t.new_zeros(u_t.shape[0], u_t.shape[1], self.kernel_size - 1)
        window = torch.cat([state, u_t[:, :, None]], dim=-1)  # (B, H, k)
        y = (window * self.conv.weight[:, 0, :]).sum(-1) + self.conv.bias
        return self.out(F.gelu(y)), window[..., 1:]
