"""Steps of the study workflow, one function per rule, each reading and writing files.

- :mod:`dmri_rcnn.study.data`: cropping, octant split, TFRecords, context/target split (data env);
- :mod:`dmri_rcnn.study.predict_rcnn`: predictions of trained models (TensorFlow env);
- :mod:`dmri_rcnn.study.predict_sh`: SH baseline predictions, order chosen on validation (evaluation env);
- :mod:`dmri_rcnn.study.metrics_and_figures`: metrics, summary tables, report figures (evaluation env);
- :mod:`dmri_rcnn.study.predict_dti`: the cross-shell DTI baseline (evaluation env);
- :mod:`dmri_rcnn.study.cross_shell`: the cross-shell study's plan, read from the config.

The science lives in :mod:`dmri_rcnn.core`, :mod:`dmri_rcnn.evaluation` and :mod:`dmri_rcnn.plot`; these
functions only load, call and save, so a rule's script is a few lines. This package imports nothing
itself, so each rule's environment only needs what its own submodule imports.
"""
