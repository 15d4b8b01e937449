"""Beam PTransforms, one module per pipeline stage."""
