"""dMRI-RCNN: angular super-resolution of diffusion MRI with a 3D recurrent convolutional autoencoder.

Re-implementation on TensorFlow 2 / Keras 3 of Lyon, Armitage & Álvarez (MIDL 2022), able to load the
original's published TensorFlow checkpoints, plus the tools to reproduce the study.
"""

__version__ = "0.1.0"
