"""Quantization beyond calibration: fake quantizers, quantization-aware training joined to the training run, and
what exporters read from the trained quantizers (QDQ ONNX int8, exact ``ap_fixed`` types for hls4ml).

``fake_quant``: the quantizers; ``modules``: Conv/Linear with input and weight quantizers, BatchNorm folded;
``qat``: inserting them (a training hook) and the deployable model; ``qdq``: the ONNX QDQ writer;
``fixed_point``: power-of-two quantizers as hls4ml layer precisions. Calibrated int8 and the accuracy-aware mixed
precision search live with the runtime they calibrate on (``runtimes/onnxruntime/calibration.py``,
``mixed_precision.py``).
"""
