"""``relocbench index VIDEOS... --out INDEX``: extract a collection's features once, to search it."""
from __future__ import annotations

import click

from ._common import force_option


@click.command("index")
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The index file to write (HDF5).")
@click.option("--backbone", default=None, help="Feature backbone [default: handcrafted].")
@click.option("--weights", default=None, help="Backbone weights: auto, none or a file [default: auto].")
@click.option("--step-frames", type=click.IntRange(min=1), default=None, help="Frames per feature step [default: 16].")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Clips or frames per forward pass of the backbone.")
@click.option("--resume", is_flag=True, help="Keep the videos an interrupted run (or this index) already holds.")
@click.option("--shard", default=None, metavar="K/N", help="Only the videos i with i % N == K (merge-features after).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Videos decoded at the same time.")
@force_option
@click.option("--quiet", is_flag=True, help="No progress output.")
def index(videos, out, backbone, weights, step_frames, device, batch_size, resume, shard, workers, force, quiet):
    """Extract the features of VIDEOS (files or folders) into INDEX, once, for
    `relocbench localize QUERY --index INDEX`; the first stage's matrix is written beside it
    (INDEX.coarse.npy and INDEX.coarse.json).

    \b
    Examples:
      relocbench index recordings/ --out recordings.h5
      relocbench index recordings/ --out recordings.h5 --resume      # after an interruption
      relocbench localize clip.mp4 --index recordings.h5 --top-k 3
    """
    from ..localize.index import build_index

    s = build_index(list(videos), out, backbone=backbone, weights=weights, step_frames=step_frames, device=device,
                    batch_size=batch_size, resume=resume, force=force, shard=shard, workers=workers, quiet=quiet)
    for source, message in s.failed:
        click.echo(f"Failed {source}: {message}", err=True)
    click.echo(f"Indexed {s.extracted} video(s), kept {s.resumed} from before, {len(s.failed)} failed, "
               f"into {s.out} ({s.seconds:.1f} s)")
