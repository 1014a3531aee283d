"""The arithmetic of floors.py against hand counts (run: .venv/bin/pytest bench/profile/)."""

import floors

MACHINE = {"sgemm_2048_best_gflops": 80.0, "triad_best_gbs": 10.0}


def stage(name, ms, flops, nbytes, shape_flops=0.0, shape_ms=-1.0, min_ms=None):
    return {
        "stage": name,
        "how": "test",
        "engine": "gemm",
        "ms": ms,
        "min_ms": ms if min_ms is None else min_ms,
        "flops": flops,
        "bytes": nbytes,
        "shape_gemm_flops": shape_flops,
        "shape_gemm_min_ms": shape_ms,
    }


def test_direct_flops_counts_strided_outputs():
    # 64->128 3x3 stride 2 pad 1 on 32x32, batch 32: 16x16 outputs, 3 passes of 2 N F C K^2 Ho Wo.
    case = {"ndim": 2, "batch": 32, "in_channels": 64, "out_channels": 128, "input": [32, 32],
            "kernel": [3, 3], "stride": 2, "padding": 1}  # fmt: skip
    assert floors.direct_flops(case) == 3 * 2 * 32 * 128 * 64 * 9 * 16 * 16
    # 1D: one row; 'same' padding (k5, pad 2) keeps L = 500 outputs.
    case1 = {"ndim": 1, "batch": 16, "in_channels": 128, "out_channels": 256, "input": [1, 500],
             "kernel": [1, 5], "stride": 1, "padding": 2}  # fmt: skip
    assert floors.direct_flops(case1) == 3 * 2 * 16 * 256 * 128 * 5 * 500


def test_stage_floor_is_the_longer_of_flops_and_bytes():
    # 1 GFLOP on shapes that ran 2 GFLOP in 40 ms (50 GFLOP/s): 20 ms; 100 MB at 10 GB/s: 10 ms.
    s = stage("mixing fwd", 30.0, 1e9, 1e8, shape_flops=2e9, shape_ms=40.0)
    assert abs(floors.stage_floor(s, MACHINE) - 20.0) < 1e-9
    # Bytes-bound: 1 GB at 10 GB/s = 100 ms.
    s = stage("mixing fwd", 30.0, 1e9, 1e9, shape_flops=2e9, shape_ms=40.0)
    assert abs(floors.stage_floor(s, MACHINE) - 100.0) < 1e-9
    # No probe (loop mixing): the large-sgemm rate, 1.6 GFLOP at 80 GFLOP/s = 20 ms.
    s = stage("synthesis y", 30.0, 1.6e9, 0.0)
    assert abs(floors.stage_floor(s, MACHINE) - 20.0) < 1e-9


def test_pass_floor_never_above_its_measured_time():
    case = {
        "stages": [
            # analysis x: floor 8 ms (0.8 GFLOP at 100) but measured 5 ms: capped at 5.
            stage("analysis x", 5.0, 8e8, 0.0, shape_flops=1e9, shape_ms=10.0),
            # forward: mixing floor 10 ms + synthesis floor 2 ms against 30 ms measured.
            stage("mixing fwd", 20.0, 1e9, 0.0, shape_flops=1e9, shape_ms=10.0),
            stage("synthesis y", 10.0, 1.6e8, 0.0),
        ]
    }
    table = floors.pass_table(case, MACHINE)
    assert set(table) == {"analysis x", "fwd: mixing + synthesis y"}
    assert table["analysis x"] == (5.0, 5.0)
    assert table["fwd: mixing + synthesis y"][0] == 30.0
    assert abs(table["fwd: mixing + synthesis y"][1] - 12.0) < 1e-9


def test_combine_takes_the_fastest_run_whole_and_the_best_probes():
    def run(step_min, mix_ms, probe_ms, torch_min, sgemm, probe_flops=1e9):
        return {
            "runs": [
                {
                    "machine": {
                        "threads": 1,
                        "sgemm_2048_gflops": sgemm,
                        "sgemm_2048_best_gflops": sgemm,
                        "triad_gbs": 10.0,
                        "triad_best_gbs": 10.0,
                    },
                    "cases": [
                        {
                            "layer": "l",
                            "rate": 0.5,
                            "step_ms": {"med": step_min + 1, "min": step_min},
                            "torch_ms": {"med": torch_min + 1, "min": torch_min},
                            "load_before_torch": "4.00",
                            "stages": [
                                stage("mixing fwd", mix_ms, 1e9, 0.0, probe_flops, probe_ms),
                            ],
                        }
                    ],
                }
            ],
            "log": [],
        }

    merged = floors.combine(
        [run(50.0, 20.0, 12.0, 30.0, 60.0, 1e9), run(40.0, 15.0, 14.0, 35.0, 80.0, 2e9)]
    )
    m = merged["runs"][0]["machine"]
    case = merged["runs"][0]["cases"][0]
    assert case["step_ms"]["min"] == 40.0  # the faster run...
    assert case["stages"][0]["ms"] == 15.0  # ...whole
    assert case["stages"][0]["shape_gemm_min_ms"] == 12.0  # the best probe of either run,
    assert case["stages"][0]["shape_gemm_flops"] == 1e9  # with its own flop count
    assert case["torch_ms"]["min"] == 30.0  # torch's best
    assert m["sgemm_2048_best_gflops"] == 80.0
