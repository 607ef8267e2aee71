"""Datasets: folder trees, manifests, BreakHis file names, splits and the tf.data pipeline."""
