"""The original dMRI-RCNN public API: ``io``, ``processing``, ``model`` and ``weights``."""
