"""ONNX Runtime toolchain runner (protocol version 1, see workers/toolchains/__init__.py).

Runs inside the toolchain's own interpreter: imports only the standard library, numpy and onnxruntime
(lazily, inside functions) and its siblings in workers/toolchains (relative imports), never `registry`
or `workers`.

A "build" is ONNX Runtime's offline graph optimization: the model is loaded into a CPU session at the
spec's graph optimization level and the optimized graph is saved, in ORT format or as ONNX. Above
`extended` the result may hold hardware-specific optimizations (ONNX Runtime says so in a warning),
which is why the CPU device carries the ISA level.

    RUNNER --probe
    RUNNER build --model M.onnx --spec SPEC.json --out ENGINE --result R.json
    RUNNER run --engine ENGINE --inputs IN.npz --outputs OUT.npz --result R.json
    RUNNER bench --engine ENGINE --inputs IN.npz --result R.json [--iterations N] [--warmup W]

Modules: options (features, --probe, the spec's checks), build (optimize and save, the build's
metadata), proto (counting an ONNX file's nodes), session (run and bench), __main__ (command line).
"""
