"""The paper's rendering path: Blender Cycles in a subprocess (scene.py runs inside Blender, launch.py here).

`render_capture(subject_seed, lighting, camera_seed, resolution, samples=64, ...)` mirrors the built-in
renderer's entry point (same asset, camera and lighting) so `make_captures renderer=blender` works.
"""

from uhrtex.captures.blender.launch import BlenderError, find_blender, render_capture, render_folder, split_passes

__all__ = ["BlenderError", "find_blender", "render_capture", "render_folder", "split_passes"]
