"""``relocbench localize QUERY REFERENCE...``: find a clip in your own videos."""
from __future__ import annotations

import click

from ._common import force_option, print_table

#: Columns the result table fits in (an 80-column terminal).
TABLE_WIDTH = 80


@click.command("localize")
@click.argument("query", type=click.Path(dir_okay=False))
@click.argument("references", nargs=-1, required=False, type=click.Path())
@click.option("--index", "index_path", default=None, type=click.Path(dir_okay=False),
              help="Search the videos of this index (relocbench index) instead of REFERENCE...")
@click.option("--candidates", type=click.IntRange(min=1, max=1000), default=5, show_default=True,
              help="With --index: videos the first stage passes to the full matcher and the refinement.")
@click.option("--query-range", default=None, metavar="START:END",
              help="Part of QUERY to search for: seconds (12.5:18) or HH:MM:SS.mmm:HH:MM:SS.mmm.")
@click.option("--method", default="auto", show_default=True,
              help="auto (= window), window, framedp, or a finished run-baseline folder (trained model).")
@click.option("--backbone", default=None, help="Feature backbone [default: handcrafted; a run folder: the run's].")
@click.option("--weights", default=None, help="Backbone weights: auto, none or a file [default: auto].")
@click.option("--step-frames", type=click.IntRange(min=1), default=None,
              help="Frames per feature step, 1 to 4096 [default: 16; a run folder: the run's].")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Clips or frames per forward pass of the backbone (1 to 1024).")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Segments to report, 1 to 1000 (non-overlapping within a reference, ranked across all).")
@click.option("--grid", "grid_s", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True,
              help="Seconds per cell of the common time grid, 0.01 to 60 (training-free methods; with --index: "
                   "the full matcher's grid on the candidates).")
@click.option("--min-score", default="auto", show_default=True, metavar="SCORE|auto",
              help="Return no segment scoring below this (auto: the matcher's measured floor, none for a run "
                   "folder; -inf: no floor).")
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="Move each boundary to the reference frame that best aligns the query's frames.")
@click.option("--output-json", type=click.Path(dir_okay=False), default=None, help="Write the result here.")
@click.option("--srt", type=click.Path(dir_okay=False), default=None,
              help="Write subtitles marking the found segments (one file per reference when several).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG: query thumbnails, score curves and the found segments.")
@click.option("--clip-out", type=click.Path(file_okay=False), default=None,
              help="Cut the found segments into this folder as .mp4 files.")
@click.option("--no-cache", is_flag=True,
              help="Do not read or write the feature cache ($RELOCBENCH_CACHE); not with --index.")
@force_option
@click.option("--quiet", is_flag=True, help="No progress output.")
def localize(query, references, index_path, candidates, query_range, method, backbone, weights, step_frames, device,
             batch_size, top_k, grid_s, min_score, refine, output_json, srt, plot, clip_out, no_cache, force, quiet):
    """Find where QUERY (or a range of it) happens in REFERENCE videos or folders of videos.

    \b
    Examples:
      relocbench localize clip.mp4 long_video.mp4 --top-k 3 --srt long_video.srt
      relocbench localize lecture.mp4 recordings/ --query-range 00:12:05.000:00:12:20.500 \\
          --output-json found.json --plot found.png --clip-out found/
      relocbench localize clip.mp4 long_video.mp4 --method runs/cgbm-handcrafted
      relocbench localize clip.mp4 --index recordings.h5   (after: relocbench index recordings/ --out recordings.h5)
    """
    from ..localize import localize as run, write_clips, write_json, write_plot, write_srt
    from ..localize.core import check_bounds, expand_references, localize_inputs
    from ..localize.outputs import check_outputs, result_table

    # every size and every output checked before the work, and before any output is written
    check_bounds(top_k=top_k, batch_size=batch_size, step_frames=step_frames, grid_s=grid_s)
    if index_path is not None:
        from ..localize.index import coarse_paths, search_index

        if references:
            raise click.UsageError("give REFERENCE... or --index, not both")
        if no_cache:
            raise click.UsageError("--no-cache applies to REFERENCE... searches; a search of --index reads the "
                                   "index's features, not the cache")
        check_outputs([query, index_path, *coarse_paths(index_path)], [index_path], force=force,
                      output_json=output_json, srt=srt, plot=plot, clip_out=clip_out)
        res = search_index(query, index_path, query_range=query_range, method=method, backbone=backbone,
                           weights=weights, step_frames=step_frames, device=device, batch_size=batch_size,
                           top_k=top_k, candidates=candidates, min_score=_min_score(min_score), refine=refine,
                           grid_s=grid_s)
    else:
        if not references:
            raise click.UsageError("give one or more REFERENCE videos or folders, or --index INDEX")
        check_outputs(localize_inputs(query, references, method), expand_references(references), force=force,
                      output_json=output_json, srt=srt, plot=plot, clip_out=clip_out)
        res = run(query, list(references), query_range=query_range, method=method, backbone=backbone,
                  weights=weights, step_frames=step_frames, device=device, batch_size=batch_size, top_k=top_k,
                  grid_s=grid_s, cache=not no_cache, progress=not quiet, min_score=_min_score(min_score),
                  refine=refine)
    for s in res.skipped:
        click.echo(f"Skipped {s['reference']}: {s['reason']}", err=True)
    print_table(*result_table(res, width=TABLE_WIDTH))
    if not res.segments:
        every = res.references and all(r.skipped for r in res.references)
        if every:
            click.echo("No segment found (every reference was skipped).")
        else:
            from ..localize.floor import no_match_line

            click.echo(no_match_line(res))
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


def _min_score(text: str):
    """``auto`` or a number (``-inf`` allowed); anything else: one line naming the option."""
    from ..errors import ConfigError

    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value:
        raise ConfigError(f"--min-score must be a number or 'auto'. Got {text!r} instead.")
    return value
