"""Training-data processing: TFRecord files and the training input pipeline."""
