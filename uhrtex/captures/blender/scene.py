"""Render one capture with Blender Cycles. Runs INSIDE Blender's Python (bpy); imports nothing of uhrtex.

    .venv-blender/bin/python scene.py --job job.json          # bpy wheel in its own venv (make blender-venv)
    blender -b --python scene.py -- --job job.json             # or a Blender install

job.json (written by launch.py; any user head works the same way):
    obj                       OBJ, glTF or GLB with UVs (ours: y up, face +z; imported with Blender's Y-up -> Z-up conversion)
    mesh_to_world             optional 3 x 3: the file's axes and units -> ours (an asset's scale and up/forward axes)
    albedo, normal, specular  texture files (albedo sRGB; tangent-space OpenGL normal map; specular linear)
    materials                 optional {material: {albedo, normal, specular, gt, subsurface, uv_offset}}: one node material per
                              material slot of the file (OBJ `usemtl` groups, e.g. ICT's M_Face ...) instead of the three
                              files above; `gt` false: AOVs 0 and mask 0 there (drawn, not ground truth); textures
                              repeat, so tiles side by side in u (ICT's) read their own image
    camera                    OpenCV camera of uhrtex.captures.format (fx fy cx cy width height world_to_camera)
    environment               {"image": EXR path, "rotation_deg": about the vertical axis, "strength": exposure}
    clip                      optional [near, far] of the camera (world units)
    resolution, samples, seed, threads, roughness, ior, max_bounces, denoise, output (a .exr path)

Material: Principled BSDF with Base Color <- albedo, Normal <- Normal Map (tangent space) <- normal
texture, Specular IOR Level <- specular (red channel), fixed Roughness / IOR, and for skin a subsurface
weight with skin's red-first radii (Christensen-Burley; `SSS_RADIUS`, in mm, scaled to world units). World: Environment Texture with
Generated coordinates rotated about z by a Mapping node, Background strength = exposure.
Output: one multilayer EXR (float32): the Combined pass (linear radiance) and AOVs written from the
shader: `albedo` (linear colour of the albedo texture), `micronormal` (normal texture, decoded to
[-1, 1]), `specular`, `uv` (u, v, 0), `normal` (smooth geometry normal in camera axes: x right, y up,
z towards the viewer) and `mask` (1 on the head). The pixel filter is ~0 wide, so every AOV is the
value at the pixel centre, like the built-in rasterizer's. launch.py splits the EXR into the
ingest layout.
"""

import json
import math
import sys
from pathlib import Path

import bpy

AOVS = (("albedo", "COLOR"), ("micronormal", "COLOR"), ("specular", "VALUE"), ("uv", "COLOR"), ("normal", "COLOR"), ("mask", "VALUE"))
# our world (y up) -> Blender's (z up): (x, y, z) -> (x, -z, y); the OBJ importer applies the same
WORLD_TO_BLENDER = ((1, 0, 0, 0), (0, 0, -1, 0), (0, 1, 0, 0), (0, 0, 0, 1))
GL_FROM_CV = ((1, 0, 0, 0), (0, -1, 0, 0), (0, 0, -1, 0), (0, 0, 0, 1))


SSS_RADIUS_MM = (3.67, 1.37, 0.68)  # skin's mean free paths per R, G, B (Blender's own skin preset, Jensen et al. 2001)
MM_PER_UNIT = 100.0  # our world units: 1 = 10 cm


class SceneError(RuntimeError):
    pass


def _matmul(a, b):
    return [[sum(a[i][k] * b[k][j] for k in range(4)) for j in range(4)] for i in range(4)]


def _rigid_inverse(m):
    r = [[m[j][i] for j in range(3)] for i in range(3)]  # R^T
    t = [-sum(r[i][k] * m[k][3] for k in range(3)) for i in range(3)]
    return [r[0] + [t[0]], r[1] + [t[1]], r[2] + [t[2]], [0.0, 0.0, 0.0, 1.0]]


def reset_scene(job):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = int(job.get("samples", 16))
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = bool(job.get("denoise", False))
    scene.cycles.seed = int(job.get("seed", 0))
    scene.cycles.max_bounces = int(job.get("max_bounces", 6))
    # point-sample pixel centres so GT maps match a rasterizer (Cycles ignores the width of BOX filters)
    scene.cycles.pixel_filter_type = "GAUSSIAN"
    scene.cycles.filter_width = 0.01
    if job.get("threads"):
        scene.render.threads_mode = "FIXED"
        scene.render.threads = int(job["threads"])
    res = job["camera"]["width"], job["camera"]["height"]
    scene.render.resolution_x, scene.render.resolution_y = int(res[0]), int(res[1])
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    return scene


def import_head(path, mesh_to_world=None):
    """The mesh objects of an OBJ/glTF/GLB, in Blender axes; other imported objects (glTF lights, cameras) never render."""
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"{path}: mesh file does not exist")
    before = set(bpy.data.objects)
    if path.suffix.lower() in (".glb", ".gltf"):  # glTF is y up: the importer applies the same Y-up -> Z-up
        bpy.ops.import_scene.gltf(filepath=str(path))
    else:
        bpy.ops.wm.obj_import(filepath=str(path), forward_axis="NEGATIVE_Z", up_axis="Y")
    new = [o for o in bpy.data.objects if o not in before]
    objs = [o for o in new if o.type == "MESH"]
    if not objs:
        raise SceneError(f"{path}: no mesh objects imported; is it a valid OBJ, glTF or GLB file?")
    for o in new:
        o.hide_render = o.type != "MESH"
    if mesh_to_world is not None:  # ours = M file and the import applied W2B to the file: place by W2B M W2B^-1
        import mathutils

        m = [list(r) + [0.0] for r in mesh_to_world] + [[0.0, 0.0, 0.0, 1.0]]
        w2b = mathutils.Matrix(WORLD_TO_BLENDER)
        place = w2b @ mathutils.Matrix(m) @ w2b.inverted()
        for o in new:
            if o.parent is None:
                o.matrix_world = place @ o.matrix_world
    for o in objs:
        if not o.data.uv_layers:
            raise SceneError(f"{path}: mesh '{o.name}' has no UVs; unwrap it and re-export with texture coordinates")
        o.data.polygons.foreach_set("use_smooth", [True] * len(o.data.polygons))
    return objs


def _image(path, colorspace):
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"{path}: texture file does not exist")
    img = bpy.data.images.load(str(path), check_existing=True)
    img.colorspace_settings.name = colorspace
    return img


def head_material(job, uv_name, gt=True, subsurface=0.0, uv_offset=(0.0, 0.0), name="uhrtex_head"):
    """One node material from job["albedo" / "normal" / "specular"]; `gt` false: every AOV and the mask are 0;
    `uv_offset`: the material's UV tile (ICT's sit side by side in u), subtracted before the lookup."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    N, L = nt.nodes.new, nt.links.new
    uvmap = N("ShaderNodeUVMap")
    uvmap.uv_map = uv_name
    lookup = uvmap.outputs["UV"]
    if any(uv_offset):
        shift = N("ShaderNodeVectorMath")
        shift.operation = "SUBTRACT"
        L(uvmap.outputs["UV"], shift.inputs[0])
        shift.inputs[1].default_value = (float(uv_offset[0]), float(uv_offset[1]), 0.0)
        lookup = shift.outputs["Vector"]
    tex = {}
    for key, cs in (("albedo", "sRGB"), ("normal", "Non-Color"), ("specular", "Non-Color")):
        t = N("ShaderNodeTexImage")
        t.image = _image(job[key], cs)
        t.interpolation = "Linear"
        t.extension = "EXTEND"  # = boundary_mode "clamp" of the built-in renderer
        L(lookup, t.inputs["Vector"])
        tex[key] = t
    bsdf = N("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = float(job.get("roughness", 0.45))
    bsdf.inputs["IOR"].default_value = float(job.get("ior", 1.5))
    nmap = N("ShaderNodeNormalMap")
    nmap.space = "TANGENT"
    nmap.uv_map = uv_name
    L(tex["albedo"].outputs["Color"], bsdf.inputs["Base Color"])
    L(tex["normal"].outputs["Color"], nmap.inputs["Color"])
    L(nmap.outputs["Normal"], bsdf.inputs["Normal"])
    spec = N("ShaderNodeSeparateColor")  # the first channel, as the built-in renderer reads an RGB specular map
    L(tex["specular"].outputs["Color"], spec.inputs["Color"])
    L(spec.outputs["Red"], bsdf.inputs["Specular IOR Level"])
    if subsurface > 0:
        bsdf.inputs["Subsurface Weight"].default_value = float(subsurface)
        bsdf.inputs["Subsurface Radius"].default_value = SSS_RADIUS_MM
        bsdf.inputs["Subsurface Scale"].default_value = 1.0 / MM_PER_UNIT
    out = N("ShaderNodeOutputMaterial")
    L(bsdf.outputs["BSDF"], out.inputs["Surface"])

    def aov(name, socket=None, value=None):
        a = N("ShaderNodeOutputAOV")
        a.aov_name = name
        if not gt:  # drawn, not ground truth: nothing in the GT passes
            a.inputs["Value"].default_value = 0.0
            a.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
            return
        if socket is not None:
            L(socket, a.inputs["Color" if name not in ("specular", "mask") else "Value"])
        else:
            a.inputs["Value"].default_value = value

    aov("albedo", tex["albedo"].outputs["Color"])
    decode = N("ShaderNodeVectorMath")  # encoded (n+1)/2 -> n, as the ingest layout wants
    decode.operation = "MULTIPLY_ADD"
    L(tex["normal"].outputs["Color"], decode.inputs[0])
    decode.inputs[1].default_value = (2.0, 2.0, 2.0)
    decode.inputs[2].default_value = (-1.0, -1.0, -1.0)
    aov("micronormal", decode.outputs["Vector"])
    aov("specular", spec.outputs["Red"])
    aov("uv", uvmap.outputs["UV"])
    geo = N("ShaderNodeNewGeometry")
    to_cam = N("ShaderNodeVectorTransform")
    to_cam.vector_type, to_cam.convert_from, to_cam.convert_to = "NORMAL", "WORLD", "CAMERA"
    L(geo.outputs["Normal"], to_cam.inputs["Vector"])
    flip_z = N("ShaderNodeVectorMath")  # Cycles' camera space looks down +z; ours has z towards the viewer
    flip_z.operation = "MULTIPLY"
    L(to_cam.outputs["Vector"], flip_z.inputs[0])
    flip_z.inputs[1].default_value = (1.0, 1.0, -1.0)
    aov("normal", flip_z.outputs["Vector"])
    aov("mask", value=1.0)
    return mat


def world(job):
    env = job["environment"]
    w = bpy.data.worlds.new("uhrtex_env")
    bpy.context.scene.world = w
    w.use_nodes = True
    nt = w.node_tree
    nt.nodes.clear()
    N, L = nt.nodes.new, nt.links.new
    coord, mapping, tex, bg, out = N("ShaderNodeTexCoord"), N("ShaderNodeMapping"), N("ShaderNodeTexEnvironment"), N("ShaderNodeBackground"), N("ShaderNodeOutputWorld")
    mapping.vector_type = "POINT"
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(float(env.get("rotation_deg", 0.0))))
    tex.image = _image(env["image"], "Linear Rec.709")
    tex.interpolation = "Linear"
    tex.projection = "EQUIRECTANGULAR"
    bg.inputs["Strength"].default_value = float(env.get("strength", 1.0))
    L(coord.outputs["Generated"], mapping.inputs["Vector"])
    L(mapping.outputs["Vector"], tex.inputs["Vector"])
    L(tex.outputs["Color"], bg.inputs["Color"])
    L(bg.outputs["Background"], out.inputs["Surface"])


def camera(job):
    c = job["camera"]
    fx, fy, cx, cy, W, H = (float(c[k]) for k in ("fx", "fy", "cx", "cy", "width", "height"))
    if abs(fx - fy) > 1e-6 * fx:
        raise SceneError(f"camera fx={fx} != fy={fy}: Blender cameras have square pixels")
    data = bpy.data.cameras.new("uhrtex_cam")
    data.sensor_fit = "VERTICAL"
    data.sensor_height = 24.0
    data.lens = fy * data.sensor_height / H
    size = max(W, H)
    data.shift_x, data.shift_y = (W / 2 - cx) / size, (cy - H / 2) / size
    data.clip_start, data.clip_end = job.get("clip", (0.05, 1000.0))
    obj = bpy.data.objects.new("uhrtex_cam", data)
    bpy.context.scene.collection.objects.link(obj)
    gl_w2c = _matmul(GL_FROM_CV, c["world_to_camera"])
    cam_to_world = _matmul(WORLD_TO_BLENDER, _rigid_inverse(gl_w2c))
    import mathutils

    obj.matrix_world = mathutils.Matrix(cam_to_world)
    bpy.context.scene.camera = obj


def render(job):
    scene = reset_scene(job)
    objs = import_head(job["obj"], job.get("mesh_to_world"))
    uv_name = objs[0].data.uv_layers[0].name
    if job.get("materials"):
        mats = {}
        for o in objs:
            for slot in o.material_slots:
                base = slot.material.name.split(".")[0] if slot.material else None
                spec = job["materials"].get(base)
                if spec is None:
                    raise SceneError(f"{job['obj']}: material slot {base!r} has no maps in the job")
                if base not in mats:
                    mats[base] = head_material({**job, **spec}, uv_name, bool(spec["gt"]), float(spec.get("subsurface", 0)),
                                               spec.get("uv_offset", (0.0, 0.0)), f"uhrtex_{base}")
                slot.material = mats[base]
    else:
        mat = head_material(job, uv_name)
        for o in objs:
            o.data.materials.clear()
            o.data.materials.append(mat)
    layer = scene.view_layers[0]
    for name, kind in AOVS:
        a = layer.aovs.add()
        a.name, a.type = name, kind
    world(job)
    camera(job)
    out = Path(job["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = scene.render.image_settings
    if hasattr(fmt, "media_type"):
        fmt.media_type = "MULTI_LAYER_IMAGE"
    fmt.file_format = "OPEN_EXR_MULTILAYER"
    fmt.color_depth = "32"
    fmt.exr_codec = "ZIP"
    scene.render.filepath = str(out)
    scene.render.use_file_extension = False
    bpy.ops.render.render(write_still=True)
    if not out.is_file():
        raise SceneError(f"{out}: Blender finished but wrote no file")
    return out


def main(argv):
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if len(argv) != 2 or argv[0] != "--job":
        print("usage: scene.py --job JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    try:
        out = render(job)
    except (SceneError, KeyError) as e:
        msg = f"missing job key {e}" if isinstance(e, KeyError) else str(e)
        print(f"uhrtex-blender-error: {msg}", file=sys.stderr)
        return 3
    print(f"uhrtex-blender-wrote: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
