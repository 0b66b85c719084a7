"""Segmentation models behind the Segmenter port (see pipeline.ports)."""
