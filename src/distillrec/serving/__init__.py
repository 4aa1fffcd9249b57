"""Shipping a student: bundle (export + verified load), ONNX towers, top-K index, HTTP service."""
