"""The batch contract between the input pipeline and the model, and the 1-D data mesh every step runs on."""
