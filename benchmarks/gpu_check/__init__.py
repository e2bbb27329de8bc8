"""The GPU check: soda's real chain on the user's GPU machine, before a long job. One command, one table.

    bash benchmarks/gpu_check.sh                # on the GPU machine (wheels from tools/gpu_wheels.sh in .whl/)
    bash benchmarks/gpu_check.sh --cpu          # the same chain on CPU, tiny model (what CI runs)
    python -m benchmarks.gpu_check --cpu --out /tmp/gc   # without the wrapper (no wheels to install)

Modules: `shapes` (synthetic students: real shapes, random weights), `settings`, `phases`
(`axolotl train` with soda's plugin and the check's `probe_plugin`; soda's reference pass
against TRL's precompute; TRL-only reference-model phases in `trl_only`), `runner` (a process
and a timeout per phase), `table`, `standins` and `carry` (what the GPU machine lacks: stand-ins
or wheels), `gpu_view` (`--cpu` sees only what the GPU machine would). See docs/gpu_check.md.
"""
