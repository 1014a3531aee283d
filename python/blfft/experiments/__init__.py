"""The paper's experiments, on data that install offline (see :mod:`blfft.data`).

``python -m blfft.experiments <name> [--quick] [--out DIR] [--seed S] [--threads T]``

- ``accuracy_vs_rate``: accuracy against compression, fixed-rate and energy-based (Fig. 3);
- ``train_vs_inference``: training rate x inference rate (Fig. 5);
- ``noise_robustness``: Gaussian noise on the test inputs, models trained at 0/0.5/0.85 (Fig. 6);
- ``ucr_full_vs_half``: full spectrum against 50% compression on 30 UCR data sets (Fig. 8);
- ``time_memory``: time per epoch and memory against compression, and torch's convolutions
  (Fig. 7).

Each writes ``<name>.json`` (everything, with the run's settings), ``<name>.csv``, ``<name>.md``
and ``<name>.png`` into ``--out`` (default ``experiments/results/<name>``). ``--quick`` runs a
tiny version (seconds) for the tests. EXPERIMENTS.md has the results and the durations.
"""

from . import (
    accuracy_vs_rate,
    noise_robustness,
    time_memory,
    train_vs_inference,
    ucr_full_vs_half,
)

EXPERIMENTS = {
    m.NAME: m
    for m in (accuracy_vs_rate, train_vs_inference, noise_robustness, ucr_full_vs_half, time_memory)
}

__all__ = ["EXPERIMENTS"]
