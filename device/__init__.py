"""fer-edge device side: the model contract, the int8 emotion classifier and the daemon (no TensorFlow)."""
