"""Training side of fer-edge: FER2013 loaders, the compact CNN, training, evaluation and reports."""
