"""Run configs over a grid of overrides and seeds; print and write mean ± std tables (and a plot).

    python sweep.py --config configs/ee_cars196.yaml --grid expansion.n_points=2,4,8,16,32 \\
        --grid expansion.normalize=true,false --plot-x expansion.n_points --output runs/ee_fig4_5
    python sweep.py --config configs/roth_margin_cub200.yaml --seeds 0,1,2,3,4 --output runs/roth_margin

See `tfdml.training.sweep` for the run directories and the outputs.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from tfdml.training.sweep import main as sweep_main

    return sweep_main(argv)


if __name__ == "__main__":
    main()
