"""``relocbench localize QUERY REFERENCE...``: find a clip in your own videos."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import force_option, print_table


@click.command("localize")
@click.argument("query", type=click.Path(dir_okay=False))
@click.argument("references", nargs=-1, required=True, type=click.Path())
@click.option("--query-range", default=None, metavar="START:END",
              help="Part of QUERY to search for: seconds (12.5:18) or HH:MM:SS.mmm:HH:MM:SS.mmm.")
@click.option("--method", default="auto", show_default=True,
              help="auto (= window), window, framedp, or a finished run-baseline folder (trained model).")
@click.option("--backbone", default=None, help="Feature backbone [default: handcrafted; a run folder: the run's].")
@click.option("--weights", default=None, help="Backbone weights: auto, none or a file [default: auto].")
@click.option("--step-frames", type=click.IntRange(min=1), default=None,
              help="Frames per feature step [default: 16; a run folder: the run's].")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Clips or frames per forward pass of the backbone.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Segments to report (non-overlapping within a reference, ranked across all).")
@click.option("--grid", "grid_s", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True,
              help="Seconds per cell of the common time grid (training-free methods).")
@click.option("--output-json", type=click.Path(dir_okay=False), default=None, help="Write the result here.")
@click.option("--srt", type=click.Path(dir_okay=False), default=None,
              help="Write subtitles marking the found segments (one file per reference when several).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG: query thumbnails, score curves and the found segments.")
@click.option("--clip-out", type=click.Path(file_okay=False), default=None,
              help="Cut the found segments into this folder as .mp4 files.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache ($RELOCBENCH_CACHE).")
@force_option
@click.option("--quiet", is_flag=True, help="No progress output.")
def localize(query, references, query_range, method, backbone, weights, step_frames, device, batch_size, top_k,
             grid_s, output_json, srt, plot, clip_out, no_cache, force, quiet):
    """Find where QUERY (or a range of it) happens in REFERENCE videos or folders of videos.

    \b
    Examples:
      relocbench localize clip.mp4 long_video.mp4 --top-k 3 --srt long_video.srt
      relocbench localize lecture.mp4 recordings/ --query-range 00:12:05.000:00:12:20.500 \\
          --output-json found.json --plot found.png --clip-out found/
      relocbench localize clip.mp4 long_video.mp4 --method runs/cgbm-handcrafted
    """
    from ..io import check_output
    from ..localize import localize as run, write_clips, write_json, write_plot, write_srt

    for path in (output_json, plot, clip_out):  # fail before the work, not after it
        if path:
            check_output(path, force)
    res = run(query, list(references), query_range=query_range, method=method, backbone=backbone, weights=weights,
              step_frames=step_frames, device=device, batch_size=batch_size, top_k=top_k, grid_s=grid_s,
              cache=not no_cache, progress=not quiet)
    for s in res.skipped:
        click.echo(f"Skipped {s['reference']}: {s['reason']}", err=True)
    rows = [[s.rank, s.reference, s.start_hms, s.end_hms, f"{s.score:.4f}"] for s in res.segments]
    q = res.query
    print_table(f"{Path(q['path']).name} [{q['start']:.2f}s, {q['end']:.2f}s) in {len(res.references)} reference(s)",
                ["rank", "reference", "start", "end", "score"], rows)
    if not res.segments:
        click.echo("No segment found (every reference was skipped).")
    if output_json:
        click.echo(f"Wrote {write_json(res, output_json, force=force)}")
    if srt:
        for p in write_srt(res, srt, force=force):
            click.echo(f"Wrote {p}")
    if plot:
        click.echo(f"Wrote {write_plot(res, plot, force=force)}")
    if clip_out:
        clips = write_clips(res, clip_out, force=force)
        click.echo(f"Wrote {len(clips)} clip(s) into {clip_out}")
