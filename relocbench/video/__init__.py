"""Video inputs of the spatio-temporal baselines: the ``synthetic-sprites`` generator
(:mod:`relocbench.video.sprites`), frame readers for real videos (:mod:`relocbench.video.frames`)
and the ``spatiotemporal`` task adapter of the engine (:mod:`relocbench.video.task`)."""
from .sprites import SpritesConfig, SpriteVideos, build_sprites, open_sprites

__all__ = ["SpritesConfig", "SpriteVideos", "build_sprites", "open_sprites"]
