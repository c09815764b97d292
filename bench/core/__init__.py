"""What every other part stands on, without TensorFlow: config, data, records, statistics."""
