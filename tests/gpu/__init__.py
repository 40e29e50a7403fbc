"""GPU suite: real TensorRT on real GPUs, driven through the embedded farm and the TensorRT runner.

Run with scripts/gpu-suite.sh on a GPU host (TRTFARM_TOOLCHAINS=tensorrt=/opt/trt86/bin/python,...).
Every test module is marked `gpu` and skipped when TRTFARM_TOOLCHAINS names no tensorrt interpreter.
Figures go to $GPU_RESULTS (default /tmp/gpu-results.json); docs/gpu-results.md records a run.
"""
