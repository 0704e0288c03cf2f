r"""FID in PyTorch, computed the way the published SoFlow numbers were (the ADM protocol).

The paper's FIDs come from the TensorFlow ADM evaluator: 50,000 samples, stored as uint8 `arr_0` of an
`.npz`, against a reference `.npz` (ImageNet 256: `VIRTUAL_imagenet256_labeled.npz`, whose stored
`mu`, `sigma` are used; CIFAR-10: the 50,000 training images), with the 2048 `pool_3` features of the
2015-12-05 TensorFlow Inception-v3. This subpackage does the same in PyTorch:

- :class:`FeatureStatistics`, :class:`StatisticsAccumulator`, :func:`feature_statistics`: mean and
  covariance of features, in float64, chunk by chunk;
- :func:`frechet_distance` (with :func:`sqrtm_psd`, :func:`trace_sqrt_product`): the Fréchet distance
  from symmetric eigendecompositions in float64;
- :func:`read_npz_batches`, :class:`NpzWriter`, :func:`read_statistics`, :func:`save_statistics`,
  :func:`npz_array_info`: the ADM `.npz` layout, streamed;
- :class:`InceptionFeatures`: torch-fidelity's port of the TensorFlow Inception (optional extra);
- :func:`npz_statistics`, :func:`fid_from_npz` and the command line
  `python -m soflow_toolkit.fid SAMPLES.npz REFERENCE.npz`;
- :func:`to_uint8`, :func:`class_labels`: the official sampling conventions.

Only torch is needed to import it; numpy is needed for `.npz` files, torch-fidelity (with torchvision)
for the Inception network: `pip install 'soflow-toolkit[fid]'`.
"""

from __future__ import annotations

from .conventions import class_labels, to_uint8
from .evaluate import fid_from_npz, npz_statistics
from .frechet import frechet_distance, sqrtm_psd, trace_sqrt_product
from .inception import INCEPTION_WEIGHTS_URL, InceptionFeatures
from .npz import NpzWriter, npz_array_info, read_npz_batches, read_statistics, save_statistics
from .statistics import FeatureExtractor, FeatureStatistics, StatisticsAccumulator, feature_statistics

__all__ = [
    "INCEPTION_WEIGHTS_URL",
    "FeatureExtractor",
    "FeatureStatistics",
    "InceptionFeatures",
    "NpzWriter",
    "StatisticsAccumulator",
    "class_labels",
    "feature_statistics",
    "fid_from_npz",
    "frechet_distance",
    "npz_array_info",
    "npz_statistics",
    "read_npz_batches",
    "read_statistics",
    "save_statistics",
    "sqrtm_psd",
    "to_uint8",
    "trace_sqrt_product",
]
