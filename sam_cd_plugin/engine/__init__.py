"""Engine: the ``ChangeDetector`` API, device choice, training and evaluation loops."""
