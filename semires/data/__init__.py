"""Data: REFER reader, index, RefShapes generator, label splits and data checks."""
