"""Package discovery for the stage folders: each top-level folder is one ``vitaledge.*``
package, and every subpackage below it is found, so a new one cannot be left out of the
wheel (``pyproject.toml`` holds everything else)."""

from setuptools import find_packages, setup

STAGES = {"vitaledge": "vitaledge", "vitaledge.train": "train",
          "vitaledge.convert": "convert", "vitaledge.device": "device",
          "vitaledge.firmware_sim": "firmware_sim"}

packages = [name for name in STAGES]
for name, folder in STAGES.items():
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

# the beat check's network weights (device/dsp/qrs_net.npz) ship with the device code
setup(package_dir=dict(STAGES), packages=packages,
      package_data={"vitaledge.device.dsp": ["qrs_net.npz"]})
