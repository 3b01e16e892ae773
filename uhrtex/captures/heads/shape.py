"""A subject's posed ICT mesh: identity + expression shapes, then the eyeballs turned to the gaze."""

from __future__ import annotations

import torch

from uhrtex.captures.heads.subject import Subject, expression_weights, yaw_pitch_matrix
from uhrtex.head_model import CM_PER_UNIT, ict_model, render_mesh
from uhrtex.render.mesh import RenderMesh


def posed_vertices(s: Subject) -> torch.Tensor:
    """V×3 cm: the ICT model at the subject's weights, each eyeball rotated about its centre by the gaze."""
    m = ict_model()
    v = m.shape(identity=torch.tensor(s.identity), expression=expression_weights(s))
    rot = yaw_pitch_matrix(*s.gaze_deg)
    for side in ("left", "right"):
        part = m.part_vertices(f"eyeball_{side}")
        eye = v[part]
        centre = (eye.amax(0) + eye.amin(0)) / 2
        v[part] = (eye - centre) @ rot.T + centre
    return v


def posed_mesh(s: Subject) -> RenderMesh:
    """The subject's RenderMesh in world units (1 = 10 cm)."""
    return render_mesh(ict_model(), posed_vertices(s) / CM_PER_UNIT)
