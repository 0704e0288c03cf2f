r"""Give a single-time backbone `backbone(x, time, cond)` the second time input of SoFlow (arXiv 2512.15657, §3).

SoFlow's backbone $F_\theta(x, t, s)$ sees two times. The official backbones embed $t$ and the gap
$t - s$ with two timestep embedders whose outputs are added. [`SingleTimeAdapter`][soflow_toolkit.SingleTimeAdapter] does the same to
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
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from ._checks import check_choice, check_number
from ._gap_branch import AddGapHook, EmbedGapHook, GapBranch, GapState, probe, zero_last_linear
from .conditions import call_with_condition

__all__ = ["SingleTimeAdapter"]

ZeroInit = Literal["auto", "linear", "gate"]
OutputSelector = str | int | Callable[[Any], Tensor] | None
BackboneCall = Callable[[nn.Module, Tensor, Tensor, Any], Any]


def _default_call(
    backbone: nn.Module, x: Tensor, time: Tensor, cond: Any, guidance_scale: Tensor | None = None
) -> Any:
    """`backbone(x, time)`, `backbone(x, time, **cond)` for a dict, `backbone(x, time, cond)` otherwise
    (plus the keyword `guidance_scale` when given)."""
    return call_with_condition(backbone, x, time, cond=cond, guidance_scale=guidance_scale)


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
    [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper] (euler parametrization), the velocity read-out
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

    Examples:
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
        check_number(time_scale, "time_scale", low=0, low_open=True)
        check_choice(zero_init, "zero_init", ("auto", "linear", "gate"))
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
        self._state = GapState()
        modules[0].register_forward_pre_hook(EmbedGapHook(self._state, self.gap_embedding, names[0]))
        modules[-1].register_forward_hook(AddGapHook(self._state, names[-1]))

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
    ) -> tuple[GapBranch, str]:
        def fresh(use_gate: bool) -> GapBranch:
            stages = [gap_embedding] if gap_embedding is not None else [copy.deepcopy(m) for m in modules]
            return GapBranch(stages, use_gate)

        if zero_init in ("auto", "linear"):
            branch = fresh(use_gate=False)
            zeroed = zero_last_linear(branch.stages[-1])
            out = probe(branch, self.time_scale)
            verified = out is not None and not bool(out.any())
            if zeroed and (verified or (zero_init == "linear" and out is None)):
                return branch, "linear"
            if zero_init == "linear":
                raise ValueError(
                    "zero_init='linear' needs a gap embedding whose last layer is an nn.Linear producing its "
                    "output (a check on three gaps did not give zeros); use zero_init='gate' or 'auto'"
                )
        branch = fresh(use_gate=True)
        probe(branch, self.time_scale)
        return branch, "gate"

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        cond: Any = None,
        *,
        guidance_scale: Tensor | None = None,
        **cond_kwargs: Any,
    ) -> Tensor:
        r"""Evaluate $F_\theta(x, t, s, \text{cond})$ through the single-time backbone.

        Args:
            x: states `(B, *D)`.
            t: times `(B,)` in this toolkit's direction (0 = data, 1 = noise).
            s: target times `(B,)`.
            cond: the condition, passed on to `call`; keyword arguments (a dict condition unpacked
                by the wrapper) are gathered into a dict.
            guidance_scale: per-sample guidance scales `(B,)` of a model trained with a range of
                scales, passed on to the backbone as the keyword `guidance_scale` (to a custom `call`
                as well); None passes nothing.

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
            extra = {} if guidance_scale is None else {"guidance_scale": guidance_scale}
            result = (self.call or _default_call)(self.backbone, x, time, cond, **extra)
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
