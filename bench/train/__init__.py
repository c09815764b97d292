"""Training one model: tf.data, fitting, checkpoints, the served model and its cost."""
