"""``relocbench predict RUN_DIR``: a finished run's predictions on another split, manifest or features."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import force_option


@click.command("predict")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True, help="Split of the manifest to predict.")
@click.option("--manifest", default=None,
              help="Manifest (built-in name or folder) [default: the run's, when it is a built-in name].")
@click.option("--features", default=None,
              help="'synthetic', an HDF5 file or a folder of <video>.npy [default: the run's]; must match "
                   "the run's features (dimension; extraction settings for extract-features files).")
@click.option("--feature-preset", default=None, metavar="NAME",
              help="Time axis and layout of --features PATH: a shipped preset [default: the run's card].")
@click.option("--feature-card", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Time axis and layout of --features PATH: a feature card (YAML or JSON) [default: the run's card].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Predictions file [default: RUN_DIR/predictions-<split>.json].")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch, 1 to 1024 (default: torch's choice).")
@click.option("--skip-missing", is_flag=True, help="Skip pairs whose videos have no features (counted).")
@force_option
def predict(run_dir, split, manifest, features, feature_preset, feature_card, out, device, threads, skip_missing,
            force):
    """Write the predictions of the finished run in RUN_DIR (its best checkpoint) on a split.

    \b
    Examples:
      relocbench predict runs/cgbm --split val
      relocbench predict runs/cgbm-mine --split test --manifest my-manifest --features my-features.h5 \\
          --out my-predictions.json
      relocbench evaluate my-predictions.json --manifest my-manifest --split test
    """
    from ..localize.runs import check_features_file, predict_run

    if features is not None or feature_preset is not None or feature_card is not None:
        from ..features import check_declared
        check_features_file(features)  # a damaged HDF5 file: one line naming it, before anything opens it
        check_declared(features, preset=feature_preset, card=feature_card)
    res = predict_run(run_dir, split=split, manifest=manifest, features=features, out=out, force=force,
                      device=device, skip_missing=skip_missing, threads=threads, feature_preset=feature_preset,
                      feature_card=feature_card)
    missing = res.n_pairs - res.n_predicted
    click.echo(f"Predicted {res.n_predicted} of {res.n_pairs} pairs of {res.manifest} ({split}) with {res.features}"
               + (f"; {missing} skipped (videos without features)" if missing else ""))
    click.echo(f"Wrote {res.path}; score it with: relocbench evaluate {res.path} --manifest {res.manifest} "
               f"--split {split}")
