r"""Flow-matching checkpoints in SiT's layout as SoFlow's DiT: start SoFlow from a pretrained flow-matching model.

SiT (Ma et al., "SiT: Exploring Flow and Diffusion-based Generative Models with Scalable Interpolant
Transformers", ECCV 2024; MIT-licensed code `github.com/willisma/SiT`) is DiT's transformer trained
with flow matching, in DiT's parameter layout (`x_embedder.proj`, `t_embedder.mlp.{0,2}`,
`y_embedder.embedding_table`, `blocks.i.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}`,
`final_layer.{linear, adaLN_modulation.1}`, `pos_embed`). SoFlow's DiT
([`soflow_toolkit.models.DiT`][soflow_toolkit.models.DiT]) is the same network plus an embedder of
$t - s$. [`load_sit`][soflow_toolkit.sit.load_sit] builds it from such a checkpoint so that it *is*
the pretrained flow-matching model, ready for SoFlow fine-tuning:

**Time direction and sign, folded into the weights.** SiT's time $\tau$ runs the other way: $\tau = 0$
is noise, $\tau = 1$ data, $x_\tau = \tau\,\text{data} + (1 - \tau)\,\text{noise}$ (its `Linear` path;
`GVP`: $\sin(\pi\tau/2)$ and $\cos(\pi\tau/2)$), and the network predicts
$u = \mathrm dx_\tau/\mathrm d\tau = \text{data} - \text{noise}$. With $\tau = 1 - t$ the states
coincide and this toolkit's velocity is $v(x, t) = \mathrm dx/\mathrm dt = -u(x, 1 - t)$. Both changes
are exact in exact arithmetic:

- the time embedder must see $1 - t$: its sinusoidal features satisfy $\phi(1 - t) = R\,\phi(t)$, since
  $\cos((1-t)\omega) = \cos\omega\cos t\omega + \sin\omega\sin t\omega$ and
  $\sin((1-t)\omega) = \sin\omega\cos t\omega - \cos\omega\sin t\omega$ for each frequency $\omega$, so
  its first layer's weight $W$ becomes $W R$ (computed in float64);
- the output is negated: the final linear layer's weight and bias are multiplied by $-1$.

**The $t - s$ embedder starts at zero**: its first layer is a copy of SiT's time embedder's (features
of a time in $[0, 1]$), its last layer is zero. So $F_\theta(x, t, s, y) = -\,\mathrm{SiT}(x, 1 - t, y)$ for
every $s$: the velocity read-out $v_\theta(x, t) = F_\theta(x, t, t)$ is the pretrained velocity,
$f_\theta(x_t, t, s) = x_t + (s - t)\,v_\theta(x_t, t)$ is one Euler step of the pretrained flow, and
$f_\theta(x, t, t) = x$ as for every SoFlow model.

**Layout details.** With `learn_sigma=True` (SiT's default, and its released SiT-XL/2 256 weights) the
output has twice the input's channels and SiT keeps the first half: the final layer's rows are ordered
(patch row, patch column, channel) per token, and the rows of the first half are kept. A label table
with `num_classes + 1` rows (`class_dropout_prob > 0`, SiT's default) has the null class of
classifier-free guidance as its last row, as this package's DiT. SiT feeds its time embedder the raw
$\tau \in [0, 1]$, as SoFlow's DiT does. Only velocity-predicting SiT models (`--prediction velocity`,
the default) are flow-matching models in this sense.
"""

from __future__ import annotations

from .keys import SIT_NUM_HEADS, from_sit_state_dict, sit_key_map
from .load import load_sit, read_sit_checkpoint, sit_config

__all__ = [
    "SIT_NUM_HEADS",
    "from_sit_state_dict",
    "load_sit",
    "read_sit_checkpoint",
    "sit_config",
    "sit_key_map",
]
