"""Measuring Lookout against ground truth: MOT-format files and detection matching."""
