"""Training Clipline's segmentation models (torch; never imported by pipeline or workers)."""
