"""Inference on trained weights: the Model API, the video demo, person detection and the serving exports."""
