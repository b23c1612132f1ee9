"""Headless OpenGL rasteriser for synthetic hand crops (moderngl on an EGL context, Mesa llvmpipe).

Two draw calls (up to two skinned hand meshes, then a procedural background) write one RGBA
attachment: the shaded RGB image, and in alpha the per-pixel segmentation class (33 classes, see
``data.sample``), so one readback returns both. The camera is a pinhole given by its
intrinsics in pixels (OpenCV convention, (0, 0) the top-left pixel's centre), vertices come in
the camera optical frame (x right, y down, z forward; metres), so what the renderer draws
projects exactly where the labels say.

Measured here (2-core VM, llvmpipe): about 3 ms of CPU per 256 x 256 frame with one hand, half
of it the background's procedural noise; see ``hand-pose synth --bench``. A renderer owns a GL
context; make one per process (``get_renderer``). Mesa's llvmpipe rasterises on helper threads
that a ``fork()`` does not copy: a forked child of a process that has rendered hangs on its first
draw, so ``get_renderer`` refuses that case (use the "spawn" or "forkserver" start method).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

_VERTEX_SHADER = """
#version 330
uniform vec4 intrinsics;  // fx, fy, cx, cy (pixels)
uniform vec2 viewport;    // width, height (pixels)
uniform vec2 depth_range; // near, far (metres)
in vec3 in_position;      // camera frame, metres
in vec3 in_normal;
in vec3 in_albedo;
in vec3 in_rest;          // template position (metres): skin texture sticks to the hand
in float in_class;
out vec3 v_normal;
out vec3 v_albedo;
out vec3 v_rest;
out vec3 v_position;
flat out float v_class;
void main() {
    float z = in_position.z;
    float u = intrinsics.x * in_position.x / z + intrinsics.z;
    float v = intrinsics.y * in_position.y / z + intrinsics.w;
    // Pixel centres at integers; image row 0 is read back first, so y is not flipped.
    vec2 ndc = (vec2(u, v) + 0.5) / viewport * 2.0 - 1.0;
    float n = depth_range.x, f = depth_range.y;
    gl_Position = vec4(ndc * z, (z * (f + n) - 2.0 * f * n) / (f - n), z);
    v_normal = in_normal;
    v_albedo = in_albedo;
    v_rest = in_rest;
    v_position = in_position;
    v_class = in_class;
}
"""

_NOISE = """
float hash(vec3 p) {
    p = fract(p * 0.3183099 + 0.1);
    p *= 17.0;
    return fract(p.x * p.y * p.z * (p.x + p.y + p.z));
}
float value_noise(vec3 x) {
    vec3 i = floor(x);
    vec3 f = fract(x);
    f = f * f * (3.0 - 2.0 * f);
    return mix(mix(mix(hash(i), hash(i + vec3(1, 0, 0)), f.x),
                   mix(hash(i + vec3(0, 1, 0)), hash(i + vec3(1, 1, 0)), f.x), f.y),
               mix(mix(hash(i + vec3(0, 0, 1)), hash(i + vec3(1, 0, 1)), f.x),
                   mix(hash(i + vec3(0, 1, 1)), hash(i + vec3(1, 1, 1)), f.x), f.y), f.z);
}
float fbm(vec3 x) {
    return 0.5 * value_noise(x) + 0.3 * value_noise(2.03 * x) + 0.2 * value_noise(4.01 * x);
}
"""

_HAND_FRAGMENT_SHADER = """
#version 330
uniform vec3 light_direction;  // towards the light, camera frame
uniform vec3 light_color;
uniform vec3 ambient;
uniform float specular;
uniform vec4 skin_noise;       // offset xyz, amplitude
in vec3 v_normal;
in vec3 v_albedo;
in vec3 v_rest;
in vec3 v_position;
flat in float v_class;
layout(location = 0) out vec4 out_color;  // rgb: colour, a: segmentation class / 255
""" + _NOISE + """
void main() {
    vec3 n = normalize(v_normal);
    vec3 view = normalize(-v_position);
    if (dot(n, view) < 0.0) n = -n;
    float texture = fbm(v_rest * 900.0 + skin_noise.xyz) - 0.5;
    vec3 albedo = v_albedo * (1.0 + skin_noise.w * texture);
    float diffuse = max(dot(n, light_direction), 0.0);
    vec3 h = normalize(light_direction + view);
    float shine = specular * pow(max(dot(n, h), 0.0), 24.0);
    // A soft rim keeps the silhouette readable on dark backgrounds, as skin scatters light.
    float rim = 0.15 * pow(1.0 - max(dot(n, view), 0.0), 3.0);
    vec3 color = albedo * (ambient + diffuse * light_color + rim) + shine * light_color;
    out_color = vec4(clamp(color, 0.0, 1.0), v_class / 255.0);
}
"""

_BACKGROUND_VERTEX_SHADER = """
#version 330
in vec2 in_corner;
out vec2 v_uv;
void main() {
    v_uv = in_corner * 0.5 + 0.5;
    gl_Position = vec4(in_corner, 0.9999, 1.0);
}
"""

_BACKGROUND_FRAGMENT_SHADER = """
#version 330
uniform vec3 color_a;
uniform vec3 color_b;
uniform vec3 color_c;
uniform vec4 pattern;    // kind (0 noise, 1 stripes, 2 tiles, 3 cells), frequency, angle, mix
uniform vec3 noise_offset;
in vec2 v_uv;
layout(location = 0) out vec4 out_color;  // alpha 0: the background class
""" + _NOISE + """
void main() {
    vec2 p = v_uv;
    float c = cos(pattern.z), s = sin(pattern.z);
    vec2 q = vec2(c * p.x - s * p.y, s * p.x + c * p.y) * pattern.y;
    float n = fbm(vec3(q * 1.7, 0.0) + noise_offset);
    float t;
    if (pattern.x < 0.5) {
        t = n;
    } else if (pattern.x < 1.5) {
        t = smoothstep(0.3, 0.7, 0.5 + 0.5 * sin(6.2832 * q.x + 2.0 * n));
    } else if (pattern.x < 2.5) {
        vec2 cell = floor(q);
        t = mod(cell.x + cell.y, 2.0) * 0.8 + 0.2 * n;
    } else {
        t = value_noise(vec3(floor(q * 2.0), 3.0) + noise_offset);
    }
    vec3 base = mix(color_a, color_b, t);
    base = mix(base, color_c, pattern.w * v_uv.y);  // a gradient, like uneven light
    out_color = vec4(base, 0.0);
}
"""


@dataclass
class Lighting:
    """Shading of one frame: a directional light (direction towards the light, camera frame),
    ambient light, specular strength, and the skin texture's offset (3,) and amplitude."""

    direction: np.ndarray
    color: np.ndarray
    ambient: np.ndarray
    specular: float
    skin_noise_offset: np.ndarray
    skin_noise_amplitude: float


@dataclass
class Background:
    """A procedural background: three RGB colours in [0, 1], pattern kind (0 noise, 1 stripes,
    2 tiles, 3 cells), its frequency (cycles per image), angle (radians), gradient mix, and a
    noise offset (3,) that makes every background different."""

    colors: np.ndarray  # (3, 3)
    kind: int
    frequency: float
    angle: float
    gradient: float
    noise_offset: np.ndarray


@dataclass
class MeshDraw:
    """One hand to draw: (V, 3) camera-frame vertices (metres), (F, 3) faces, (V, 3) albedo in
    [0, 1], (V, 3) template positions (for the texture), (V,) segmentation class per vertex."""

    vertices: np.ndarray
    faces: np.ndarray
    albedo: np.ndarray
    rest: np.ndarray
    classes: np.ndarray


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted vertex normals (unnormalised; the shader normalises)."""
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    # bincount sums in input order (corner 0 of every face, then corner 1, then 2): the same
    # float64 sums as np.add.at per corner, about 6x faster.
    corners = faces.T.ravel()
    weights = np.tile(face_normals, (3, 1))
    return np.stack([np.bincount(corners, weights[:, c], minlength=len(vertices))
                     for c in range(3)], axis=1)


class Renderer:
    """Renders hand meshes over a procedural background into RGB + segmentation images.

    Args:
        max_vertices: capacity of the vertex buffer (all hands of one frame together).
        max_faces: capacity of the index buffer.
    """

    def __init__(self, max_vertices: int = 4096, max_faces: int = 8192) -> None:
        try:
            import moderngl
        except ImportError as error:
            raise ImportError("the synthetic renderer needs moderngl: pip install moderngl "
                              "glcontext (and Mesa's EGL: apt-get install libegl1 "
                              "libgl1-mesa-dri libegl-mesa0)") from error
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as error:  # moderngl raises a bare Exception when EGL is missing
            raise RuntimeError(f"cannot create a headless OpenGL (EGL) context: {error}. "
                               "Install Mesa's EGL: apt-get install libegl1 libgl1-mesa-dri "
                               "libegl-mesa0") from error
        self._moderngl = moderngl
        self.hand_program = self.ctx.program(vertex_shader=_VERTEX_SHADER,
                                             fragment_shader=_HAND_FRAGMENT_SHADER)
        self.background_program = self.ctx.program(vertex_shader=_BACKGROUND_VERTEX_SHADER,
                                                   fragment_shader=_BACKGROUND_FRAGMENT_SHADER)
        # Interleaved per-vertex floats: position 3, normal 3, albedo 3, rest 3, class 1.
        self._vertices = np.empty((max_vertices, 13), dtype="f4")
        self.vertex_buffer = self.ctx.buffer(reserve=max_vertices * 13 * 4, dynamic=True)
        self.index_buffer = self.ctx.buffer(reserve=max_faces * 3 * 4, dynamic=True)
        self.max_vertices, self.max_faces = max_vertices, max_faces
        self.hand_vao = self.ctx.vertex_array(
            self.hand_program,
            [(self.vertex_buffer, "3f 3f 3f 3f 1f",
              "in_position", "in_normal", "in_albedo", "in_rest", "in_class")],
            self.index_buffer, index_element_size=4,
        )
        corners = np.array([[-1, -1], [3, -1], [-1, 3]], dtype="f4")  # one covering triangle
        self.background_vao = self.ctx.vertex_array(
            self.background_program, [(self.ctx.buffer(corners.tobytes()), "2f", "in_corner")])
        self._framebuffers: dict[tuple[int, int], object] = {}

    def _framebuffer(self, width: int, height: int):
        key = (width, height)
        if key not in self._framebuffers:
            self._framebuffers[key] = self.ctx.framebuffer(
                color_attachments=[self.ctx.renderbuffer(key, 4, dtype="f1")],
                depth_attachment=self.ctx.depth_renderbuffer(key),
            )
        return self._framebuffers[key]

    def render(self, width: int, height: int, intrinsics: np.ndarray, meshes: list[MeshDraw],
               lighting: Lighting, background: Background,
               depth_range: tuple[float, float] = (0.05, 5.0)) -> tuple[np.ndarray, np.ndarray]:
        """Draw one frame.

        Args:
            intrinsics: (3, 3) camera matrix in pixels of this width x height image.
            meshes: hands in the camera optical frame (metres), all in front of the camera.

        Returns:
            image (H, W, 3) uint8 RGB and segmentation (H, W) uint8 (the meshes' classes,
            0 on the background).
        """
        num_vertices = sum(len(mesh.vertices) for mesh in meshes)
        num_faces = sum(len(mesh.faces) for mesh in meshes)
        if num_vertices > self.max_vertices or num_faces > self.max_faces:
            raise ValueError(f"render: {num_vertices} vertices / {num_faces} faces "
                             f"exceed the renderer's capacity ({self.max_vertices} / "
                             f"{self.max_faces}); make a Renderer with larger limits")
        index_data = []
        offset = 0
        for mesh in meshes:
            if not np.all(mesh.vertices[:, 2] > depth_range[0]):
                raise ValueError("render: every vertex must lie in front of the near plane "
                                 f"(z > {depth_range[0]} m)")
            # Columns written straight into the float32 staging array (no float64 concatenate).
            block = self._vertices[offset:offset + len(mesh.vertices)]
            block[:, 0:3] = mesh.vertices
            block[:, 3:6] = vertex_normals(mesh.vertices, mesh.faces)
            block[:, 6:9] = mesh.albedo
            block[:, 9:12] = mesh.rest
            block[:, 12] = mesh.classes
            index_data.append(mesh.faces + offset)
            offset += len(mesh.vertices)
        fbo = self._framebuffer(width, height)
        fbo.use()
        self.ctx.viewport = (0, 0, width, height)
        fbo.clear(depth=1.0)
        self.ctx.enable(self._moderngl.DEPTH_TEST)
        if meshes:
            indices = np.concatenate(index_data).astype("i4")
            self.vertex_buffer.write(self._vertices[:num_vertices])
            self.index_buffer.write(indices)
            k = np.asarray(intrinsics, dtype=np.float64)
            hp = self.hand_program
            hp["intrinsics"].value = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])
            hp["viewport"].value = (width, height)
            hp["depth_range"].value = depth_range
            direction = np.asarray(lighting.direction, dtype=np.float64)
            hp["light_direction"].value = tuple(direction / np.linalg.norm(direction))
            hp["light_color"].value = tuple(lighting.color)
            hp["ambient"].value = tuple(lighting.ambient)
            hp["specular"].value = float(lighting.specular)
            hp["skin_noise"].value = (*lighting.skin_noise_offset, lighting.skin_noise_amplitude)
            self.hand_vao.render(self._moderngl.TRIANGLES, vertices=indices.size)
        # The background goes last, at the far plane: the depth test skips its (costly,
        # procedural) shading wherever a hand already covers the pixel.
        bg = self.background_program
        bg["color_a"].value, bg["color_b"].value, bg["color_c"].value = map(
            tuple, np.asarray(background.colors, dtype=np.float64))
        bg["pattern"].value = (background.kind, background.frequency, background.angle,
                               background.gradient)
        bg["noise_offset"].value = tuple(background.noise_offset)
        self.background_vao.render(self._moderngl.TRIANGLES)
        rgba = np.frombuffer(fbo.read(components=4), dtype=np.uint8).reshape(height, width, 4)
        # OpenCV's channel split is ~10x faster than numpy copies of the strided views.
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB), cv2.extractChannel(rgba, 3)

    def release(self) -> None:
        self.ctx.release()


_RENDERERS: dict[int, Renderer] = {}


def get_renderer() -> Renderer:
    """This process's renderer (one GL context per process, made on first use).

    Raises RuntimeError in a process forked from one that already rendered: llvmpipe's
    rasteriser threads do not survive ``fork()``, so its first draw would hang forever.
    """
    pid = os.getpid()
    if pid not in _RENDERERS:
        if _RENDERERS:
            raise RuntimeError(
                "this process was forked from one that already holds an OpenGL context; Mesa's "
                "renderer cannot draw after fork() (it would hang). Start workers with the "
                "'spawn' or 'forkserver' method (DataLoader(multiprocessing_context=...), "
                "see data.stream.make_loader), or render only in the workers")
        _RENDERERS[pid] = Renderer()
    return _RENDERERS[pid]
