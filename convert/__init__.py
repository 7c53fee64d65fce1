"""Conversion of a trained Keras model to a full-integer int8 TFLite model for the device."""
