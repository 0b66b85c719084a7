"""The ``Segmenter`` port: a model on ONNX Runtime in process, or on an NVIDIA Triton server, and
a deterministic fake. Beside them, the rewrite of a model's ONNX graph into the uint8 form Triton
serves (``onnx_graph``) and the script that serves it on a local Triton (``triton_dev_server``).
"""
