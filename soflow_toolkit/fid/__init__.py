r"""FID in PyTorch, computed the way the published SoFlow numbers were (the ADM protocol).

The paper's FIDs come from the TensorFlow ADM evaluator: 50,000 samples, stored as uint8 `arr_0` of an
`.npz`, against a reference `.npz` (ImageNet 256: `VIRTUAL_imagenet256_labeled.npz`, whose stored
`mu`, `sigma` are used; CIFAR-10: the 50,000 training images), with the 2048 `pool_3` features of the
2015-12-05 TensorFlow Inception-v3. This subpackage does the same in PyTorch:

- [`FeatureStatistics`][soflow_toolkit.fid.FeatureStatistics], [`StatisticsAccumulator`][soflow_toolkit.fid.StatisticsAccumulator], [`feature_statistics`][soflow_toolkit.fid.feature_statistics]: mean and
  covariance of features, in float64, chunk by chunk;
- [`frechet_distance`][soflow_toolkit.fid.frechet_distance] (with [`sqrtm_psd`][soflow_toolkit.fid.sqrtm_psd], [`trace_sqrt_product`][soflow_toolkit.fid.trace_sqrt_product]): the Fréchet distance
  from symmetric eigendecompositions in float64;
- [`read_npz_batches`][soflow_toolkit.fid.read_npz_batches], [`NpzWriter`][soflow_toolkit.fid.NpzWriter], [`read_statistics`][soflow_toolkit.fid.read_statistics], [`save_statistics`][soflow_toolkit.fid.save_statistics],
  [`npz_array_info`][soflow_toolkit.fid.npz_array_info]: the ADM `.npz` layout, streamed;
- [`InceptionFeatures`][soflow_toolkit.fid.InceptionFeatures]: torch-fidelity's port of the TensorFlow Inception (optional extra);
- [`npz_statistics`][soflow_toolkit.fid.npz_statistics], [`fid_from_npz`][soflow_toolkit.fid.fid_from_npz] and the command line
  `python -m soflow_toolkit.fid SAMPLES.npz REFERENCE.npz`;
- [`to_uint8`][soflow_toolkit.fid.to_uint8], [`class_labels`][soflow_toolkit.fid.class_labels]: the official sampling conventions.

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
