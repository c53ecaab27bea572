"""LiteRT (TFLite): litert-torch conversion (fp32, fp16 weights), ai-edge-quantizer int8 and ai-edge-litert's interpreter."""

from edgebench.components import Package
from edgebench.runtimes.base import Runtime

LITERT_TORCH = Package("litert-torch", "litert_torch", "TFLite conversion (fp32, fp16 weights, int8)", extra="litert")
AI_EDGE_LITERT = Package("ai-edge-litert", "ai_edge_litert", "LiteRT interpreter (XNNPACK)", extra="litert")

RUNTIME = Runtime(
    name="litert",
    summary="TFLite files from litert-torch, run by ai-edge-litert's interpreter with XNNPACK",
    needs=(LITERT_TORCH, AI_EDGE_LITERT),
)
