"""The ``vitaledge`` command: one Click group per stage, composed here."""

from __future__ import annotations

import logging

import click

from vitaledge import __version__
from vitaledge.convert.cli import convert_cmd
from vitaledge.demo import demo_cmd
from vitaledge.device.bench.baselines import BASELINES, DEFAULT_INPUTS
from vitaledge.device.bench.cli import bench_group
from vitaledge.device.cli import device_group
from vitaledge.device.data_cli import data_group
from vitaledge.device.fleet.cli import fleet_group
from vitaledge.firmware_sim.cli import firmware_group, synth_cmd
from vitaledge.train.cli import evaluate_cmd, train_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vitaledge")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """vitaledge: ECG and emotion models from training to the edge."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")


def _keras_baseline(*args, **kwargs):
    """Keras rows for the device bench: the root wires the stages, device never imports TF."""
    from vitaledge.train.keras_bench import keras_rows

    return keras_rows(*args, **kwargs)


BASELINES["keras"] = _keras_baseline


def _synthetic_beats(*args, **kwargs):
    """Beats of a simulated patient for a bench given no data (firmware_sim; imported lazily
    so that ``vitaledge device run`` loads no scipy)."""
    from vitaledge.firmware_sim.patients.ecg import synth_beats

    return synth_beats(*args, **kwargs)


DEFAULT_INPUTS["synthetic"] = _synthetic_beats
data_group.add_command(synth_cmd)

main.add_command(data_group)
main.add_command(train_group)
main.add_command(evaluate_cmd)
main.add_command(convert_cmd)
main.add_command(device_group)
main.add_command(bench_group)
main.add_command(firmware_group)
main.add_command(fleet_group)
main.add_command(demo_cmd)

if __name__ == "__main__":
    main()
