"""Package layout of relocbench (the metadata and dependencies are in setup.cfg).

The repository keeps three top-level folders that install under other names:

* ``relocbench/`` -> ``relocbench`` (the library and the command);
* ``baselines/`` -> ``relocbench_baselines`` (the model zoo; ``baselines`` is another
  project's import name on PyPI);
* ``manifests/`` -> ``relocbench/_manifests`` (the committed dataset manifests, as package
  data; ``relocbench.manifest.resolve_manifest`` finds them there in a regular install).

Sub-packages are found automatically, so a new one needs no change here.
"""
from setuptools import find_packages, setup

ZOO = "relocbench_baselines"
MANIFESTS = "relocbench._manifests"

packages = (
    find_packages(include=["relocbench", "relocbench.*"])
    + [ZOO]
    + [f"{ZOO}.{p}" for p in find_packages("baselines")]
    + [MANIFESTS]
)

setup(
    packages=packages,
    package_dir={ZOO: "baselines", MANIFESTS: "manifests"},
    package_data={
        # the paper configs of every baseline family
        ZOO: ["*/configs/*.yaml"],
        # every file of every committed manifest: tables, manifest.json, STATS.md, figures
        MANIFESTS: ["*/*.parquet", "*/*.json", "*/*.md", "*/*.png"],
    },
    include_package_data=False,
    zip_safe=False,
)
