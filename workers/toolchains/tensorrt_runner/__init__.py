"""TensorRT toolchain runner: build, run, bench and merge timing caches inside a TensorRT interpreter.

Runs in the toolchain's own Python (3.10, tensorrt 8.6.0 .. 10.x, numpy) and imports only the standard
library, numpy and tensorrt -- both lazily, so `--help` works anywhere -- and its siblings in
workers/toolchains (relative imports: the package is `workers.toolchains.tensorrt_runner` in the worker
and tests, `toolchains.tensorrt_runner` in the runner process). Protocol (version 1) and how the worker
starts it: see workers/toolchains/__init__.py.

    RUNNER --probe
    RUNNER build --model M.onnx --spec SPEC.json --out ENGINE --result R.json
                 [--timing-cache-in F] [--timing-cache-out F] [--plugin LIB]...
                 [--calibration-cache F] [--verbose]
    RUNNER run   --engine ENGINE --inputs IN.npz --outputs OUT.npz --result R.json [--profile K] [--plugin LIB]...
    RUNNER bench --engine ENGINE --inputs IN.npz --result R.json [--iterations N] [--warmup W] [--profile K]
                 [--plugin LIB]...
    RUNNER merge --cache A --cache B [--cache ...] --out C --result R.json

Modules, one concern each:
    runtime      importing tensorrt, its version, the logger, plugin libraries
    options      the option table: feature detection (--probe) and applying a spec to the builder config
    network      network flags, the ONNX parser, inputs, optimization profiles, shared dimension names
    constraints  per-layer precision rules and I/O tensor types and formats (edits of the parsed network)
    calibration  the cache-only INT8 calibrator
    build        the build command: timing cache in/out, the builder, failure hints
    describe     what a plan is: header, I/O (types, formats), engine inspector, layer table (the metadata)
    cuda         the CUDA driver API through ctypes
    session      EngineSession and the run and bench commands (I/O cast and laid out: ../layouts.py)
    merge        combining timing caches
    probe        GPUs (NVML, else nvidia-smi) and --probe
    __main__     the command line and main()
"""
