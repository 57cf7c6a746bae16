"""GPU delegate op coverage note for fp16 artifacts.

The list is the TFLite GPU delegate's documented operator set (OpenCL/OpenGL backends);
ops outside it run on the CPU, which splits the graph and costs a copy each way.
"""

from __future__ import annotations

SUPPORTED = {
    "ABS", "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CONCATENATION", "CONV_2D", "COS",
    "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "ELU", "EXP", "FLOOR",
    "FULLY_CONNECTED", "HARD_SWISH", "LEAKY_RELU", "LOG", "LOGISTIC", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "NEG", "PAD", "PRELU", "QUANTIZE", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
    "SIN", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQRT", "SQUARE",
    "SQUARED_DIFFERENCE", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
}


def coverage(ops: list[dict]) -> dict:
    """Which of the model's ops the GPU delegate does not take."""
    unsupported = sorted({o["op"] for o in ops if o["op"] not in SUPPORTED})
    return {"unsupported_ops": unsupported, "total_ops": len(ops),
            "ops_on_cpu": sum(o["op"] not in SUPPORTED for o in ops)}
