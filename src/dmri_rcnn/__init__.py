"""dMRI-RCNN: angular super-resolution of diffusion MRI with a 3D recurrent convolutional autoencoder.

Re-implementation on TensorFlow 2 / Keras 3 of Lyon, Armitage & Álvarez (MIDL 2022), able to load the
original's published TensorFlow checkpoints, plus the tools to reproduce the study.
"""

from dmri_rcnn.tensorflow_env import enable_onednn_by_default

__version__ = "0.1.0"

# Before anything imports TensorFlow: its fast oneDNN CPU kernels on every x86-64 CPU, not only on those
# with AVX-512 VNNI/BF16 or AMX (an explicit TF_ENABLE_ONEDNN_OPTS wins).
enable_onednn_by_default()
