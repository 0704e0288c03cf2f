r"""Give a single-time backbone `backbone(x, time, cond)` the second time input of SoFlow (arXiv 2512.15657, §3).

SoFlow's backbone $F_\theta(x, t, s)$ sees two times. The official backbones embed $t$ and the gap
$t - s$ with two timestep embedders whose outputs are added. :class:`SingleTimeAdapter` does the same to
an existing network that takes one time (for example one pretrained with flow matching): it copies the
network's own time-embedding module, feeds the copy with the gap $t - s$, and adds the copy's output to
that of the original embedding through a forward hook. The copy's output starts at exactly zero, so the
wrapped model starts out as the network it wraps.

**Time direction and velocity.** This toolkit runs time from data ($t = 0$) to noise ($t = 1$); on the
linear path $x_t = (1 - t)\,\text{data} + t\,\text{noise}$ the velocity is
$v = \mathrm dx_t/\mathrm dt = \text{noise} - \text{data}$, and with the euler parametrization the
backbone output at $s = t$ *is* the velocity, $v_\theta(x, t) = F_\theta(x, t, t)$.
Meta's `flow_matching`, torchcfm and rectified flow run time the other way: $\tau = 0$ is noise,
$x_\tau = \tau\,\text{data} + (1 - \tau)\,\text{noise}$, and their network predicts
$u(x, \tau) = \mathrm dx_\tau/\mathrm d\tau = \text{data} - \text{noise}$. With $\tau = 1 - t$ the
states coincide ($x_\tau = x_t$) and $u = \mathrm dx/\mathrm d\tau = -\mathrm dx/\mathrm dt$, so

$$v(x, t) = -u(x, 1 - t).$$

`reverse_time=True` applies exactly this: the backbone gets $(1 - t)\cdot\text{time\_scale}$ and its
output is negated. Models in this toolkit's direction (e.g. diffusers' flow-matching schedulers, where
$\sigma = 1$ is noise and the network predicts $\text{noise} - \text{data}$ at timestep
$1000\,\sigma$) need only `time_scale`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["SingleTimeAdapter"]

ZeroInit = Literal["auto", "linear", "gate"]
OutputSelector = str | int | Callable[[Any], Tensor] | None
BackboneCall = Callable[[nn.Module, Tensor, Tensor, Any], Any]


def _default_call(backbone: nn.Module, x: Tensor, time: Tensor, cond: Any) -> Any:
    """`backbone(x, time)`, `backbone(x, time, **cond)` for a dict, `backbone(x, time, cond)` otherwise."""
    if cond is None:
        return backbone(x, time)
    if isinstance(cond, dict):
        return backbone(x, time, **cond)
    return backbone(x, time, cond)


class _GapState:
    """The scaled gaps of the running forward and their embedding, set only inside the adapter's forward."""

    def __init__(self) -> None:
        self.gap: Tensor | None = None
        self.embedding: Tensor | None = None
        self.calls = 0


class _EmbedGapHook:
    """Forward pre-hook on the first time-embedding module: embeds the gaps in the format of its input.

    The gaps `(B,)` are reshaped like the module's time input (e.g. `time[:, None]` gives `(B, 1)`) and
    cast to its dtype before the copied branch embeds them. A callable object (not a closure), so that
    `copy.deepcopy` of the adapter gives the copy its own state; outside the adapter's forward (nothing
    pending) the backbone runs unchanged.
    """

    def __init__(self, state: _GapState, branch: nn.Module, name: str) -> None:
        self.state = state
        self.branch = [branch]  # a list, so that the branch is not registered twice in the module tree
        self.name = name

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        gap = self.state.gap
        if gap is None:
            return
        time_input = args[0] if args else None
        if not isinstance(time_input, Tensor) or time_input.numel() != gap.numel():
            got = tuple(time_input.shape) if isinstance(time_input, Tensor) else type(time_input).__name__
            raise ValueError(
                f"the time-embedding module {self.name!r} must take the time as its first positional input "
                f"with one value per sample ({gap.numel()} values); got {got}. Name the module that "
                "receives the time, or pass gap_embedding="
            )
        gap = gap.reshape(time_input.shape)
        gap = gap.to(time_input.dtype) if time_input.is_floating_point() else gap.round().to(time_input.dtype)
        self.state.embedding = self.branch[0](gap)


class _AddGapHook:
    """Forward hook on the last time-embedding module: adds the gap embedding to its output."""

    def __init__(self, state: _GapState, name: str) -> None:
        self.state = state
        self.name = name

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        if self.state.gap is None:
            return None
        embedding, self.state.embedding = self.state.embedding, None
        self.state.calls += 1
        if embedding is None:
            raise RuntimeError(
                f"the time-embedding module {self.name!r} ran without the first named module before it; "
                "list the modules of time_embedding in the order the backbone calls them"
            )
        if not isinstance(output, Tensor):
            raise TypeError(
                f"the time-embedding module {self.name!r} must return a tensor; got {type(output).__name__}"
            )
        if output.shape != embedding.shape:
            raise ValueError(
                f"the gap embedding has shape {tuple(embedding.shape)} but the time-embedding module "
                f"{self.name!r} returned shape {tuple(output.shape)}; name the module whose output is the "
                "per-sample time embedding, or pass a matching gap_embedding"
            )
        return output + embedding.to(output.dtype)


class _GapBranch(nn.Module):
    """Modules applied in order to the `(B,)` gaps, optionally times a zero-initialised scalar gate."""

    gate: nn.Parameter | None

    def __init__(self, stages: Sequence[nn.Module], use_gate: bool) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.gate = nn.Parameter(torch.zeros(())) if use_gate else None

    def forward(self, gap: Tensor) -> Tensor:
        out = gap
        for stage in self.stages:
            # Like diffusers' UNets: the sinusoidal projection returns float32 while the MLP may be fp16.
            weight = next(stage.parameters(), None)
            if weight is not None and weight.is_floating_point() and out.is_floating_point():
                out = out.to(weight.dtype)
            out = stage(out)
        if self.gate is not None:
            out = out * self.gate.to(out.dtype)
        return out


def _zero_last_linear(module: nn.Module) -> bool:
    """Zero the weight and bias of the module's last leaf if it is an `nn.Linear`; report success."""
    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    if not leaves or not isinstance(leaves[-1], nn.Linear):
        return False
    last = leaves[-1]
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
    return True


def _probe(branch: _GapBranch, time_scale: float) -> Tensor | None:
    """The branch's output on gaps `[0, scale/2, scale]` shaped `(3,)` or `(3, 1)`, whichever it accepts.

    None when neither format runs (the branch takes another input format) or the parameters are on the
    meta device: nothing could be checked.
    """
    params = list(branch.parameters())
    if any(p.is_meta for p in params):
        return None
    device = params[0].device if params else torch.device("cpu")
    gaps = torch.tensor([0.0, 0.5, 1.0], device=device) * time_scale
    out: Any = None
    for shaped in (gaps, gaps[:, None]):
        try:
            with torch.no_grad():
                out = branch(shaped)
            break
        except (RuntimeError, ValueError, TypeError, IndexError):
            continue
    else:
        return None
    if not isinstance(out, Tensor):
        raise TypeError(f"the gap embedding must return a tensor; got {type(out).__name__}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            "the gap embedding is not finite for gaps in [0, time_scale] (e.g. a log-time Fourier embedding "
            "at gap 0); pass gap_embedding=<a module that is finite at 0>"
        )
    return out


def _select(result: Any, output: OutputSelector) -> Tensor:
    if output is None:
        selected = result
    elif isinstance(output, str):
        selected = getattr(result, output) if hasattr(result, output) else result[output]
    elif isinstance(output, int):
        selected = result[output]
    else:
        selected = output(result)
    if not isinstance(selected, Tensor):
        hint = " (pass output='sample' for diffusers models)" if output is None else ""
        raise TypeError(f"the selected backbone output must be a tensor; got {type(selected).__name__}{hint}")
    return selected


class SingleTimeAdapter(nn.Module):
    r"""Turn a single-time backbone `backbone(x, time, cond)` into a SoFlow backbone $F_\theta(x, t, s, \text{cond})$.

    The backbone is called with one time,
    $\text{time} = \text{time\_scale}\cdot(1 - t \text{ if reverse\_time else } t)$, while a copy of its
    time-embedding module, fed with the gap $g = \text{time\_scale}\cdot(t - s)$, is added to the output of
    the original embedding $E$:

    $$e(t, s) = E(\text{time}) + G(g), \qquad F_\theta(x, t, s) = \pm\,\text{backbone}(x, \text{time}, \text{cond}),$$

    with the minus sign when `reverse_time`. $G$ starts at exactly zero, so at initialisation
    $F_\theta(x, t, s) = \pm\,\text{backbone}(x, \text{time})$: wrapped in
    :class:`~soflow_toolkit.SolutionFlowWrapper` (euler parametrization), the velocity read-out
    $v_\theta(x, t) = F_\theta(x, t, t)$ is the backbone's own velocity in this toolkit's time direction,
    and $f_\theta(x_t, t, s) = x_t + (s - t)\,v_\theta(x_t, t)$ is one Euler step of the pretrained flow.

    How $G$ starts at zero (`zero_init`): `"linear"` zeroes the weight and bias of the copy's last
    layer, which must be an `nn.Linear` producing the output (ControlNet-style zero projection; the
    copy keeps the pretrained earlier layers); `"gate"` multiplies the copy's output by a scalar
    parameter initialised to 0; `"auto"` (default) uses `"linear"` when a check on gaps
    $\{0, \tfrac12, 1\}\cdot\text{time\_scale}$ gives exactly zero, else `"gate"`.

    Mechanism: a forward pre-hook on the first named module embeds the gaps, reshaped and cast like
    that module's time input (e.g. `(B, 1)` for a module called with `time[:, None]`), with $G$; a
    forward hook on the last named module adds the result to its output. The backbone keeps its
    parameter names (`backbone.*`; the copy is `gap_embedding.*`) and, called directly (outside this
    adapter), runs unchanged as the single-time model. The last named module must run exactly once per
    backbone forward and outside activation-checkpointed regions (a recomputation would not see the
    gap). `nn.DataParallel` (threads sharing one module) is not supported; use DDP.

    Args:
        backbone: the single-time network.
        time_embedding: dotted name of the backbone's submodule that maps its time input (one value
            per sample) to the per-sample time embedding, or several names the backbone applies in
            order, e.g. `("time_proj", "time_embedding")` for diffusers UNets. Copies of these modules,
            in order, map the gaps to the embedding.
        gap_embedding: instead of copies, a module mapping the scaled gaps (in the format of the first
            named module's time input) to a tensor of the embedding's shape; zero-initialised in the
            same way.
        time_scale: the backbone's time range: `1.0` for times in [0, 1], `1000.0` for diffusers-style
            timesteps in [0, 1000]. Positive.
        reverse_time: the backbone was trained with the opposite time direction ($\tau = 0$ noise,
            $\tau = 1$ data, velocity pointing to the data, as in Meta's `flow_matching` and
            torchcfm): feed $1 - t$ and negate the output.
        output: how to pick the tensor from the backbone's result: None (it is a tensor), an
            attribute or key name (`"sample"` for diffusers), an index (for tuples), or a callable.
        call: how to call the backbone, `call(backbone, x, time, cond) -> result`; default
            `backbone(x, time)`, `backbone(x, time, **cond)` (dict) or `backbone(x, time, cond)`.
        zero_init: `"auto"`, `"linear"` or `"gate"` (see above).

    Raises:
        ValueError: for a bad `time_scale` or `zero_init`, an unknown submodule name, `"linear"` when
            the copy's output does not start at zero, or a gap embedding that cannot be evaluated or is
            not finite at gap 0.
        TypeError: for a backbone that is not an `nn.Module`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> class Net(nn.Module):  # a single-time velocity model with its own time embedder
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.time_embed = nn.Sequential(nn.Linear(1, 16), nn.SiLU(), nn.Linear(16, 16))
        ...         self.body = nn.Linear(2 + 16, 2)
        ...     def forward(self, x, time):
        ...         return self.body(torch.cat([x, self.time_embed(time[:, None])], dim=1))
        >>> net = Net()
        >>> model = SolutionFlowWrapper(SingleTimeAdapter(net, time_embedding="time_embed"))
        >>> x, t = torch.randn(4, 2), torch.rand(4)
        >>> torch.equal(model.velocity(x, t), net(x, t))
        True
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        time_embedding: str | Sequence[str],
        gap_embedding: nn.Module | None = None,
        time_scale: float = 1.0,
        reverse_time: bool = False,
        output: OutputSelector = None,
        call: BackboneCall | None = None,
        zero_init: ZeroInit = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}")
        if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)):
            raise TypeError(f"time_scale must be a positive number; got {type(time_scale).__name__}")
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"time_scale must be a positive finite number; got {time_scale!r}")
        if zero_init not in ("auto", "linear", "gate"):
            raise ValueError(f"zero_init must be 'auto', 'linear' or 'gate'; got {zero_init!r}")
        names = (time_embedding,) if isinstance(time_embedding, str) else tuple(time_embedding)
        if not names or not all(isinstance(n, str) for n in names):
            raise TypeError(
                f"time_embedding must be a submodule name or a sequence of names; got {time_embedding!r}"
            )
        modules = [self._submodule(backbone, name) for name in names]
        if gap_embedding is not None and not isinstance(gap_embedding, nn.Module):
            raise TypeError(f"gap_embedding must be an nn.Module or None; got {type(gap_embedding).__name__}")

        self.backbone = backbone
        self.time_embedding = names
        self.time_scale = float(time_scale)
        self.reverse_time = bool(reverse_time)
        self.output = output
        self.call = call
        self.gap_embedding, self.zero_init = self._build_branch(modules, gap_embedding, zero_init)
        self._state = _GapState()
        modules[0].register_forward_pre_hook(_EmbedGapHook(self._state, self.gap_embedding, names[0]))
        modules[-1].register_forward_hook(_AddGapHook(self._state, names[-1]))

    @staticmethod
    def _submodule(backbone: nn.Module, name: str) -> nn.Module:
        try:
            return backbone.get_submodule(name)
        except AttributeError:
            candidates = [n for n, _ in backbone.named_modules() if "time" in n.lower() or "emb" in n.lower()]
            raise ValueError(
                f"the backbone {type(backbone).__name__} has no submodule {name!r}; modules whose name "
                f"mentions time or emb: {candidates[:10]}"
            ) from None

    def _build_branch(
        self, modules: list[nn.Module], gap_embedding: nn.Module | None, zero_init: ZeroInit
    ) -> tuple[_GapBranch, str]:
        def fresh(use_gate: bool) -> _GapBranch:
            stages = [gap_embedding] if gap_embedding is not None else [copy.deepcopy(m) for m in modules]
            return _GapBranch(stages, use_gate)

        if zero_init in ("auto", "linear"):
            branch = fresh(use_gate=False)
            zeroed = _zero_last_linear(branch.stages[-1])
            out = _probe(branch, self.time_scale)
            verified = out is not None and not bool(out.any())
            if zeroed and (verified or (zero_init == "linear" and out is None)):
                return branch, "linear"
            if zero_init == "linear":
                raise ValueError(
                    "zero_init='linear' needs a gap embedding whose last layer is an nn.Linear producing its "
                    "output (a check on three gaps did not give zeros); use zero_init='gate' or 'auto'"
                )
        branch = fresh(use_gate=True)
        _probe(branch, self.time_scale)
        return branch, "gate"

    def forward(self, x: Tensor, t: Tensor, s: Tensor, cond: Any = None, **cond_kwargs: Any) -> Tensor:
        r"""Evaluate $F_\theta(x, t, s, \text{cond})$ through the single-time backbone.

        Args:
            x: states `(B, *D)`.
            t: times `(B,)` in this toolkit's direction (0 = data, 1 = noise).
            s: target times `(B,)`.
            cond: the condition, passed on to `call`; keyword arguments (a dict condition unpacked
                by the wrapper) are gathered into a dict.

        Returns:
            The selected backbone output, negated when `reverse_time`.

        Raises:
            RuntimeError: if the backbone's forward did not call the time-embedding module exactly once.
            TypeError: if the selected output is not a tensor.
        """
        if cond_kwargs:
            if cond is not None:
                raise TypeError("pass the condition either positionally or as keyword arguments, not both")
            cond = cond_kwargs
        time = ((1 - t) if self.reverse_time else t) * self.time_scale
        self._state.gap = (t - s) * self.time_scale
        self._state.embedding = None
        self._state.calls = 0
        try:
            result = (self.call or _default_call)(self.backbone, x, time, cond)
        finally:
            self._state.gap = self._state.embedding = None
        if self._state.calls != 1:
            raise RuntimeError(
                f"the backbone's forward called the time-embedding module {self.time_embedding[-1]!r} "
                f"{self._state.calls} times; it must be called exactly once per forward (name the module "
                "that embeds the time, outside activation-checkpointed regions)"
            )
        out = _select(result, self.output)
        return -out if self.reverse_time else out

    def extra_repr(self) -> str:
        return (
            f"time_embedding={self.time_embedding!r}, time_scale={self.time_scale}, "
            f"reverse_time={self.reverse_time}, zero_init={self.zero_init!r}"
        )
