"""The applications: `python -m tfqa` commands, `train_keras.py`, the web demo and the run report."""
