"""``python -m eval run ...`` / ``python -m eval calibrate RESULTS``."""

from eval.cli import eval_group

if __name__ == "__main__":
    eval_group(prog_name="python -m eval")
